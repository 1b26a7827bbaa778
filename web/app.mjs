// The diagnosis page: loads the three ONNX models, reads each chosen image on the device and runs
// the chain of xray_utils.diagnose (X-ray or not -> type -> chest findings + Grad-CAM).
import * as ort from "./ort/ort.wasm.min.mjs";
import {
  argmax, blankReason, gradcam, jet, resizeGray, rgbaToGray, stage, topFindings,
} from "./xray.mjs";

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
// one thread: several need cross-origin isolation, which a plain static host does not give
ort.env.wasm.numThreads = 1;

const TASKS = ["xray_or_not", "xray_type", "chest"];
const $ = (id) => document.getElementById(id);
const page = { config: null, sessions: {}, results: [], queue: Promise.resolve(), loadMs: null };
window.xrayPage = page;

class PageError extends Error {}

const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 1 : 0)} MiB`;

function setState(state, message) {
  document.body.dataset.state = state;
  if (message !== undefined) $("status").textContent = message;
}

async function fetchBytes(url, onChunk) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const reader = response.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
    onChunk(value.length);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

async function loadModels() {
  const t0 = performance.now();
  const response = await fetch("models.json");
  if (!response.ok) throw new Error(`models.json: HTTP ${response.status}`);
  const config = await response.json();
  const total = TASKS.reduce((s, t) => s + config.models[t].bytes, 0);
  let loaded = 0;
  const bar = $("load-bar");
  for (const task of TASKS) {
    $("load-label").textContent = `Loading the models (${mib(total)} in all, kept by the browser)…`;
    const bytes = await fetchBytes(config.models[task].file, (n) => {
      loaded += n;
      bar.value = Math.min(100, (100 * loaded) / total);
    });
    page.sessions[task] = await ort.InferenceSession.create(bytes, {
      executionProviders: ["wasm"], graphOptimizationLevel: "all",
    });
  }
  page.config = config;
  page.loadMs = performance.now() - t0;
  bar.value = 100;
  $("load-label").textContent = `Models ready (${mib(total)}, loaded in ${(page.loadMs / 1000).toFixed(1)} s).`;
  $("limit").textContent = mib(config.limits.max_file_bytes);
  $("file").disabled = false;
  setState("ready", "Ready: choose or drop an image.");
}

// ------------------------------------------------------------------ reading a file on the device

function startsWith(bytes, sig, at = 0) {
  return sig.every((b, i) => bytes[at + i] === b);
}

const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG = [0xff, 0xd8, 0xff];

async function sniff(file) {
  const head = new Uint8Array(await file.slice(0, 132).arrayBuffer());
  const tail = new Uint8Array(await file.slice(Math.max(0, file.size - 4096)).arrayBuffer());
  const name = file.name;
  const lower = name.toLowerCase();
  if (startsWith(head, PNG)) {
    if (head[24] === 16) {
      throw new PageError(`${name}: a 16-bit PNG; this page reads 8-bit images only. Save it as an `
        + "8-bit PNG, or use python -m xray_utils diagnose, which windows 16-bit films.");
    }
    const iend = [0x49, 0x45, 0x4e, 0x44];
    let found = false;
    for (let i = tail.length - 4; i >= 0 && !found; i--) found = startsWith(tail, iend, i);
    if (!found) throw new PageError(`${name}: the PNG file is truncated or corrupt (it has no end); `
      + "fetch or export it again.");
    return "PNG";
  }
  if (startsWith(head, JPEG)) {
    let found = false;
    for (let i = tail.length - 2; i >= 0 && !found; i--) found = tail[i] === 0xff && tail[i + 1] === 0xd9;
    if (!found) throw new PageError(`${name}: the JPEG file is truncated or corrupt (it has no end); `
      + "fetch or export it again.");
    return "JPEG";
  }
  const dicom = head.length >= 132 && startsWith(head, [0x44, 0x49, 0x43, 0x4d], 128);
  if (dicom || /\.(dcm|dicom|dic)$/.test(lower)) {
    throw new PageError(`${name}: a DICOM file. This page reads PNG and JPEG only: save the film as `
      + "PNG (any DICOM viewer can), or use python -m xray_utils diagnose, which reads DICOM.");
  }
  throw new PageError(`${name}: not a PNG or JPEG image (unsupported format). Save it as PNG or `
    + "JPEG and choose it again.");
}

async function readGray(file) {
  const limits = page.config.limits;
  const name = file.name;
  if (file.size === 0) throw new PageError(`${name}: the file is empty (0 bytes); fetch it again.`);
  if (file.size > limits.max_file_bytes) {
    throw new PageError(`${name}: the file is ${mib(file.size)}, more than the `
      + `${mib(limits.max_file_bytes)} this page accepts. Shrink or crop the image (or use `
      + "python -m xray_utils diagnose on a computer).");
  }
  const format = await sniff(file);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {
      colorSpaceConversion: "none", premultiplyAlpha: "default", imageOrientation: "from-image",
    });
  } catch (err) {
    throw new PageError(`${name}: the ${format} file cannot be decoded (it is corrupt); fetch or `
      + "export it again.");
  }
  const { width, height } = bitmap;
  if (width * height > limits.max_pixels) {
    bitmap.close();
    throw new PageError(`${name}: ${width} x ${height} pixels, more than the `
      + `${limits.max_pixels.toLocaleString("en")} accepted; downscale it first.`);
  }
  if (Math.min(width, height) < limits.min_side) {
    bitmap.close();
    throw new PageError(`${name}: the image is only ${width} x ${height} pixels; at least `
      + `${limits.min_side} px on each side are needed.`);
  }
  if (Math.max(width, height) > limits.max_aspect * Math.min(width, height)) {
    bitmap.close();
    throw new PageError(`${name}: ${width} x ${height} pixels, a strip more than `
      + `${limits.max_aspect} times longer than wide; crop it to the region of interest.`);
  }
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#000"; // transparent pixels read as black, as xray_utils.data.imageio does
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const gray = rgbaToGray(rgba, width, height);
  const blank = blankReason(gray, width, height, page.config.blank_std);
  if (blank) throw new PageError(`${name}: ${blank}`);
  return { gray, width, height };
}

// ------------------------------------------------------------------ the chain

async function probs(task, image, memo) {
  const size = page.config.models[task].image_size;
  if (!memo.has(size)) memo.set(size, resizeGray(image.gray, image.width, image.height, size));
  const small = memo.get(size);
  const input = new ort.Tensor("float32", Float32Array.from(small), [1, 1, size, size]);
  return page.sessions[task].run({ gray: input });
}

async function diagnoseImage(image) {
  const cfg = page.config;
  const memo = new Map();
  const r = { ok: true, error: null, is_xray: null, xray_type: null, type_probs: null,
              findings: null, heatmaps: null };
  const p1 = (await probs("xray_or_not", image, memo)).probs.data;
  r.is_xray = p1[cfg.models.xray_or_not.classes.indexOf(cfg.xray_class)];
  if (stage(r.is_xray, null, cfg) === "not_xray") return { ...r, stage: "not_xray" };
  const p2 = (await probs("xray_type", image, memo)).probs.data;
  const types = cfg.models.xray_type.classes;
  r.xray_type = types[argmax(p2)];
  r.type_probs = Object.fromEntries(types.map((t, i) => [t, p2[i]]));
  r.stage = stage(r.is_xray, r.xray_type, cfg);
  if (r.stage !== "chest") return r;
  const out = await probs("chest", image, memo);
  const findings = cfg.models.chest.classes;
  const p3 = out.probs.data;
  r.findings = Object.fromEntries(findings.map((f, i) => [f, p3[i]]));
  const [channels, h, w] = out.features.dims.slice(1);
  const size = cfg.models.chest.image_size;
  r.heatmaps = {};
  for (const [name, , i] of topFindings(Array.from(p3), findings, cfg.top_k)) {
    r.heatmaps[name] = gradcam(out.features.data, channels, h, w, cfg.gradcam.weights[i], size);
  }
  return r;
}

// ------------------------------------------------------------------ showing a result

const pct = (p) => p.toFixed(2);

function filmCanvas(image, heat, heatSize) {
  const scale = Math.min(1, 320 / Math.max(image.width, image.height));
  const w = Math.max(1, Math.round(image.width * scale));
  const h = Math.max(1, Math.round(image.height * scale));
  const full = document.createElement("canvas");
  full.width = image.width;
  full.height = image.height;
  const fctx = full.getContext("2d");
  const data = fctx.createImageData(image.width, image.height);
  for (let i = 0; i < image.gray.length; i++) {
    data.data.set([image.gray[i], image.gray[i], image.gray[i], 255], 4 * i);
  }
  fctx.putImageData(data, 0, 0);
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(full, 0, 0, w, h);
  if (heat) {
    const hc = document.createElement("canvas");
    hc.width = heatSize;
    hc.height = heatSize;
    const hctx = hc.getContext("2d");
    const hd = hctx.createImageData(heatSize, heatSize);
    for (let i = 0; i < heat.length; i++) hd.data.set([...jet(heat[i]), 255], 4 * i);
    hctx.putImageData(hd, 0, 0);
    ctx.globalAlpha = 0.4;
    ctx.drawImage(hc, 0, 0, w, h);
  }
  return canvas;
}

function element(tag, props = {}, children = []) {
  const el = Object.assign(document.createElement(tag), props);
  for (const c of children) el.append(c);
  return el;
}

function probTable(caption, entries) {
  const rows = entries.sort((a, b) => b[1] - a[1])
    .map(([k, v]) => element("tr", {}, [element("td", { textContent: k }),
                                         element("td", { textContent: pct(v) })]));
  return element("details", {}, [element("summary", { textContent: caption }),
    element("table", {}, [element("thead", {}, [element("tr", {}, [
      element("th", { textContent: "class", scope: "col" }),
      element("th", { textContent: "probability", scope: "col" })])]),
    element("tbody", {}, rows)])]);
}

// The verdict in the words of xray_utils.diagnose.verdict (the command line, widget and app).
function verdictKind(r) {
  if (!r.ok) return "unreadable";
  if (r.stage === "not_xray") return "refused";
  if (r.stage === "type_only") return "other_xray";
  const t = page.config.finding_threshold;
  return Object.values(r.findings).some((p) => p >= t) ? "diagnosis" : "no_finding";
}

function show(file, image, r) {
  const cfg = page.config;
  const kind = verdictKind(r);
  const heading = cfg.headings[kind];
  const card = element("li", { className: `card ${kind}` });
  card.append(element("h3", { textContent: file.name }));
  if (!r.ok) {
    card.append(element("p", { className: "refusal", role: "alert", textContent: `${heading}: ${r.error}` }));
    $("results").prepend(card);
    return;
  }
  const figure = element("figure", {}, [filmCanvas(image, null, 0),
    element("figcaption", { textContent: `${image.width} x ${image.height} px, read on this device` })]);
  card.append(figure);
  if (r.stage === "not_xray") {
    card.append(element("p", { className: "refusal", textContent: `${heading}: not an X-ray `
      + `(P(X-ray) = ${pct(r.is_xray)} < ${cfg.xray_threshold}); the type and findings models were not run.` }));
  } else {
    const pType = r.type_probs[r.xray_type];
    const head = `X-ray (P = ${pct(r.is_xray)}), type ${r.xray_type} (P = ${pct(pType)})`;
    const line = r.stage === "type_only" ? `${head}; only chest films go on to the findings model.`
      : `${head}.`;
    card.append(element("p", { className: "verdict", textContent: `${heading}: ${line}` }));
    card.append(probTable("All X-ray types", Object.entries(r.type_probs)));
  }
  if (r.stage === "chest") {
    const t = cfg.finding_threshold;
    const findings = Object.entries(r.findings);
    const present = findings.filter(([, p]) => p >= t).sort((a, b) => b[1] - a[1]);
    const tops = topFindings(findings.map(([, p]) => p), findings.map(([f]) => f), cfg.top_k);
    const list = (xs) => xs.map(([f, p]) => `${f} ${pct(p)}`).join(", ");
    card.append(element("p", { className: "findings", textContent: present.length
      ? `Findings with P >= ${t}: ${list(present)}.`
      : `No finding reaches P = ${t}; most probable: ${list(tops)}.` }));
    card.append(probTable("All 14 findings", findings));
    const maps = element("div", { className: "heatmaps" });
    for (const [name, p] of tops) {
      maps.append(element("figure", {}, [filmCanvas(image, r.heatmaps[name], cfg.models.chest.image_size),
        element("figcaption", { textContent: `Grad-CAM: ${name} (P = ${pct(p)})` })]));
    }
    card.append(maps);
  }
  $("results").prepend(card);
}

// ------------------------------------------------------------------ events

async function handle(file) {
  const t0 = performance.now();
  let image = null;
  let r;
  try {
    image = await readGray(file);
    r = await diagnoseImage(image);
  } catch (err) {
    const msg = err instanceof PageError ? err.message : `${file.name}: cannot be used (${err.message || err}).`;
    r = { ok: false, error: msg };
  }
  r.file = file.name;
  r.ms = performance.now() - t0;
  page.results.push(r);
  show(file, image, r);
  $("clear").disabled = false;
  return r;
}

function enqueue(files) {
  for (const file of files) {
    page.queue = page.queue.then(async () => {
      setState("busy", `Reading ${file.name}…`);
      const r = await handle(file);
      setState("ready", r.ok ? `${file.name}: done.` : r.error);
    });
  }
}

$("file").addEventListener("change", (event) => {
  enqueue(Array.from(event.target.files));
  event.target.value = ""; // the same file can be chosen again
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (!$("file").disabled) enqueue(Array.from(e.dataTransfer.files));
});
$("clear").addEventListener("click", () => {
  $("results").replaceChildren();
  $("clear").disabled = true;
  $("file").focus();
});

loadModels().catch((err) => {
  setState("error", `The models could not be loaded (${err.message || err}). Reload the page; `
    + "if it persists, rebuild the site with python -m xray_utils export-web.");
  $("load-label").textContent = "Loading failed.";
});
