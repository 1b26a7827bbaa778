// The page's arithmetic, kept free of the page so that tests can call each function directly.
// Each function replicates one Python function of xray_utils; the tests compare them value by value.

// RGBA pixels (already composited on black) -> 8-bit luma, as Pillow's convert("L") (ITU-R 601,
// fixed point: L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16); xray_utils.data.imageio.pil_to_gray.
export function rgbaToGray(rgba, width, height) {
  const out = new Uint8Array(width * height);
  for (let i = 0, j = 0; i < out.length; i++, j += 4) {
    out[i] = (rgba[j] * 19595 + rgba[j + 1] * 38470 + rgba[j + 2] * 7471 + 0x8000) >>> 16;
  }
  return out;
}

// Pillow's resampling coefficients for the bilinear filter (Resample.c, precompute_coeffs):
// antialiased when shrinking (the filter's support grows with the scale), normalised, then
// rounded to fixed point with 22 fractional bits (normalize_coeffs_8bpc).
const PRECISION_BITS = 32 - 8 - 2;

function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      let t = (x + xmin - center + 0.5) * ss;
      if (t < 0) t = -t;
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += w[x];
    }
    for (let x = 0; x < ksize; x++) {
      let v = x < xmax ? (ww !== 0.0 ? w[x] / ww : w[x]) : 0.0;
      v = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS))
        : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
      kk[xx * ksize + x] = v;
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v) {
  // v is at most 255.5 * 2^22 in magnitude: exact in a double
  if (v >= 256 * (1 << PRECISION_BITS)) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / (1 << PRECISION_BITS));
}

// One pass of Pillow's resampling along the rows (horizontal) or the columns (vertical) of an
// 8-bit image, rounded to 8 bit (ImagingResampleHorizontal_8bpc / ImagingResampleVertical_8bpc).
function pass(src, width, height, size, horizontal) {
  const n = horizontal ? width : height;
  const { ksize, bounds, kk } = coefficients(n, size);
  const outW = horizontal ? size : width;
  const outH = horizontal ? height : size;
  const out = new Uint8Array(outW * outH);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const o = horizontal ? x : y;
      const min = bounds[o * 2];
      const taps = bounds[o * 2 + 1];
      let s = half;
      if (horizontal) {
        const base = y * width + min;
        for (let t = 0; t < taps; t++) s += src[base + t] * kk[o * ksize + t];
      } else {
        for (let t = 0; t < taps; t++) s += src[(min + t) * width + x] * kk[o * ksize + t];
      }
      out[y * outW + x] = clip8(s);
    }
  }
  return out;
}

// Resize 8-bit gray (width x height) to size x size exactly as xray_utils.data.imageio.resize_gray
// (Pillow's Image.resize(..., BILINEAR)): two passes, each rounded to 8 bit.  Pillow runs the
// horizontal pass first, except when the height shrinks by more than twice what the width
// shrinks ((height - size) > 2 (width - size) > ...), where it runs the vertical pass first; the
// order changes the rounding, so it is followed here.
export function resizeGray(src, width, height, size) {
  const needH = width !== size;
  const needV = height !== size;
  if (!needH && !needV) return Uint8Array.from(src);
  if (!needH) return pass(src, width, height, size, false);
  if (!needV) return pass(src, width, height, size, true);
  const verticalFirst = height - size > 0 && height - size > 2 * (width - size);
  if (verticalFirst) return pass(pass(src, width, height, size, false), width, size, size, true);
  return pass(pass(src, width, height, size, true), size, height, size, false);
}

// Grad-CAM of one finding from the chest model's last-block maps, without gradients, as
// xray_utils.explain.gradcam.cams_from_features: the head is ReLU -> global average pool ->
// linear, so alpha_k = W_ck * (fraction of cells where A_k > 0) / (h w) and
// cam = ReLU(sum_k alpha_k A_k); then bilinear upsampling (half-pixel centres, as
// torch.nn.functional.interpolate(align_corners=False)) and min-max scaling (flat -> zeros).
export function gradcam(features, channels, h, w, weights, outSize) {
  const cells = h * w;
  const raw = new Float64Array(cells);
  for (let k = 0; k < channels; k++) {
    const off = k * cells;
    let pos = 0;
    for (let i = 0; i < cells; i++) if (features[off + i] > 0) pos++;
    const alpha = weights[k] * (pos / cells) / cells;
    if (alpha === 0) continue;
    for (let i = 0; i < cells; i++) raw[i] += alpha * features[off + i];
  }
  for (let i = 0; i < cells; i++) if (raw[i] < 0) raw[i] = 0;
  const up = upsampleBilinear(raw, h, w, outSize, outSize);
  return normalize(up);
}

export function upsampleBilinear(src, h, w, outH, outW) {
  if (h === outH && w === outW) return Float64Array.from(src);
  const out = new Float64Array(outH * outW);
  const sy = h / outH;
  const sx = w / outW;
  for (let y = 0; y < outH; y++) {
    let fy = (y + 0.5) * sy - 0.5;
    if (fy < 0) fy = 0;
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, h - 1);
    const ly = fy - y0;
    for (let x = 0; x < outW; x++) {
      let fx = (x + 0.5) * sx - 0.5;
      if (fx < 0) fx = 0;
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, w - 1);
      const lx = fx - x0;
      out[y * outW + x] = (1 - ly) * ((1 - lx) * src[y0 * w + x0] + lx * src[y0 * w + x1])
        + ly * ((1 - lx) * src[y1 * w + x0] + lx * src[y1 * w + x1]);
    }
  }
  return out;
}

export function normalize(map) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of map) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const span = hi - lo;
  const out = new Float32Array(map.length);
  if (!(span > 1e-12)) return out;
  for (let i = 0; i < map.length; i++) out[i] = (map[i] - lo) / span;
  return out;
}

// xray_utils.diagnose.rule.blank_reason: an image whose grey values hardly vary (standard
// deviation of a sample of at most about 512 px a side under minStd) is refused before the models.
export function blankReason(gray, width, height, minStd) {
  const step = Math.max(1, Math.ceil(Math.max(width, height) / 512));
  let n = 0;
  let sum = 0;
  let sum2 = 0;
  for (let y = 0; y < height; y += step) {
    for (let x = 0; x < width; x += step) {
      const v = gray[y * width + x];
      n++;
      sum += v;
      sum2 += v * v;
    }
  }
  const mean = n ? sum / n : 0;
  const spread = n ? Math.sqrt(Math.max(0, sum2 / n - mean * mean)) : 0;
  if (spread >= minStd) return null;
  return `blank or unreadable image: its grey values hardly vary (mean ${mean.toFixed(0)}, standard `
    + `deviation ${spread.toFixed(2)} of 255, under ${minStd}); there is nothing to diagnose. `
    + "Check that the file holds the film itself.";
}

// The chain's decision rule (xray_utils.diagnose.rule): "not_xray", "type_only" or "chest".
export function stage(pXray, xrayType, config) {
  if (!(pXray >= config.xray_threshold)) return "not_xray";
  return xrayType === config.chest_type ? "chest" : "type_only";
}

export function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

// The k most probable findings, most probable first (ties keep the class order, as a stable sort).
export function topFindings(probs, classes, k) {
  return classes.map((name, i) => [name, probs[i], i])
    .sort((a, b) => b[1] - a[1] || a[2] - b[2]).slice(0, k);
}

// "Jet"-like colour of v in [0, 1] for the heatmap overlay.
export function jet(v) {
  const f = (x) => Math.round(255 * Math.min(1, Math.max(0, x)));
  return [f(1.5 - Math.abs(4 * v - 3)), f(1.5 - Math.abs(4 * v - 2)), f(1.5 - Math.abs(4 * v - 1))];
}
