"""The interactive ``diagnose()`` demo of ``notebooks/06_diagnose_demo.ipynb`` and of the app.

* :func:`sample_images` -- the images offered in the demo: the two real DICOM films shipped in
  ``pydicom-data``, real films of the test split (when real data was mixed in), then a few
  test-split images of the generated data; every label says what the image really is.
* :func:`plot_diagnosis` -- one figure per diagnosis: the image (with the Grad-CAM overlay of a
  chosen finding), then Module I, II and III's probabilities as bar charts.
* :func:`picture_png` and :func:`plot_charts` -- the same as two pictures, for the widget: the
  film with its heatmap on its own (legible at phone width), the bar charts below it.
* :class:`DiagnoseDemo` -- the widgets (sample dropdown, file upload, finding dropdown) and
  their callbacks.  Every callback is an ordinary method, so a headless run (papermill, CI)
  calls them directly and gets the same figure and record an interactive user sees.

The verdict's wording is :mod:`xray_utils.diagnose.verdict`'s, shared with the command line.
"""
from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np

from xray_utils.config import paper
from xray_utils.config.paths import ProjectPaths
from xray_utils.data.imageio import ImageReadError
from xray_utils.data.manifests import ManifestError, read_task_manifest
from xray_utils.data.plots import as_text
from xray_utils.diagnose import rule as chain
from xray_utils.diagnose.diagnoser import Diagnoser, Diagnosis
from xray_utils.diagnose.uploads import FORMATS, MAX_UPLOAD_MIB, too_large  # noqa: F401
from xray_utils.diagnose.verdict import STYLES as VERDICT_STYLES  # noqa: F401 (re-exported)
from xray_utils.diagnose.verdict import present_findings, verdict_html, verdict_kind  # noqa: F401
from xray_utils.sources.demo import SAMPLE_DICOM_FILMS
from xray_utils.sources.demo import SOURCE as GENERATED

#: The film's picture in the widget: at least this long side, in px (small inputs are enlarged).
PICTURE_MIN_PX = 384

#: The sample DICOM films of ``pydicom-data`` (file name -> what it shows), from the one list in
#: :data:`xray_utils.sources.demo.SAMPLE_DICOM_FILMS`.
DICOM_FILMS: Mapping[str, str] = {file: f"real {what} (pydicom-data)"
                                  for file, what in SAMPLE_DICOM_FILMS.values()}


def dicom_film(name: str) -> Path:
    """Path of one of :data:`DICOM_FILMS` (shipped with the ``pydicom-data`` package)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found: install the pydicom-data package "
                                "(pip install pydicom-data).")
    return Path(path)


def sample_images(paths: ProjectPaths, per_kind: int = 2, seed: int = 0) -> dict[str, str]:
    """Dropdown label -> file: the DICOM films, real test films, then generated test images.

    Every label says what the image really is: a real film by its source and what it shows (an
    NIH chest film with its findings, a FracAtlas film by its body part), a generated one as a
    phantom of its type.  From the test split of the generated data: ``per_kind`` chest phantoms
    with findings and one without (Module III's manifest), ``per_kind`` phantoms of other types
    (Module II's), and one generated photograph (Module I's).  A manifest that does not exist
    yet is skipped (the DICOM films are always there).
    """
    choices = {f"{name} · {what}": str(dicom_film(name)) for name, what in DICOM_FILMS.items()}
    choices.update(dataset_test_films(paths, seed=seed))
    rng = np.random.default_rng(seed)

    def pick(task: str, keep, n: int, describe) -> None:
        try:
            df = read_task_manifest(paths.manifest(task))
        except ManifestError:
            return
        df = df[(df["split"] == "test") & (df["source"].astype(str) == GENERATED)
                & df["label"].map(keep)]
        if df.empty:
            return
        rows = df.iloc[np.sort(rng.choice(len(df), size=min(n, len(df)), replace=False))]
        for _, row in rows.iterrows():
            choices[f"{describe(row['label'])} · {Path(row['path']).name}"] = row["path"]

    pick("chest", lambda lab: lab != paper.NO_FINDING, per_kind,
         lambda lab: f"generated chest phantom, {lab.replace('|', ', ')}")
    pick("chest", lambda lab: lab == paper.NO_FINDING, 1,
         lambda lab: "generated chest phantom, no finding")
    try:
        types = read_task_manifest(paths.manifest("xray_type"))
        types = types[(types["split"] == "test") & (types["source"].astype(str) == GENERATED)]
        others = sorted(set(types["label"]) - {chain.CHEST})
    except ManifestError:
        others = []
    if others:  # per_kind different non-chest types, one image each
        for i in np.sort(rng.choice(len(others), size=min(per_kind, len(others)), replace=False)):
            pick("xray_type", lambda lab, t=others[i]: lab == t, 1,
                 lambda lab: f"generated {lab} phantom")
    pick("xray_or_not", lambda lab: lab == "not_xray", 1,
         lambda lab: "generated photograph (not an X-ray)")
    return choices


#: Short source name (``open-films/<name>``) -> how a dropdown label names it.
SOURCE_NAMES: Mapping[str, str] = {"nih_cxr14": "NIH ChestX-ray14", "fracatlas": "FracAtlas",
                                   "fraiwan_spine": "spine collection",
                                   "knee_kl": "knee collection", "flickr_flowers": "Flickr"}


def _source_name(source: str) -> str:
    """``open-films/nih_cxr14`` -> ``NIH ChestX-ray14``; other sources by their last part."""
    short = str(source).rsplit("/", 1)[-1]
    return SOURCE_NAMES.get(short, short)


def describe_film(task: str, label: str, xray_type: str | None = None) -> str:
    """What a manifest row's image is, in words (``xray_type``: its row in Module II's manifest).

    Module III's rows are chest films (with their findings), Module II's name the type, Module
    I's say "photograph" or, for an X-ray, its type when Module II's manifest knows it.
    """
    if task == "chest":
        return ("chest film, no finding" if label == paper.NO_FINDING
                else f"chest film, {label.replace('|', ', ')}")
    if task == "xray_type":
        return f"{label} film"
    if label == "not_xray":
        return "photograph (not an X-ray)"
    return f"{xray_type} film" if xray_type else "X-ray film"


def dataset_test_films(paths: ProjectPaths, per_task: int = 2, seed: int = 0) -> dict[str, str]:
    """Dropdown label -> file: test-split films that come from a dataset, not generated (any
    ``source`` but ``demo``: open films, public or paper datasets, a labelled folder).

    They are in the task manifests when real images were mixed into the data (the demo's shipped
    open films, ``-p EXTRA_DATA``, the public and full profiles); otherwise this is empty.
    ``per_task`` images from each task manifest, never an image twice; each label names the
    source and what the film shows (:func:`describe_film`).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    types: dict[str, str] = {}
    try:
        df = read_task_manifest(paths.manifest("xray_type"))
        types = dict(zip(df["path"].astype(str), df["label"].astype(str)))
    except ManifestError:
        pass
    for task in ("chest", "xray_type", "xray_or_not"):
        try:
            df = read_task_manifest(paths.manifest(task))
        except ManifestError:
            continue
        df = df[(df["split"] == "test") & (df["source"].astype(str) != GENERATED)
                & ~df["path"].isin(list(out.values()))]
        if df.empty:
            continue
        rows = df.iloc[np.sort(rng.choice(len(df), size=min(per_task, len(df)), replace=False))]
        for _, row in rows.iterrows():
            what = describe_film(task, str(row["label"]), types.get(str(row["path"])))
            out[f"real {_source_name(row['source'])} {what} · {Path(row['path']).name}"] = row["path"]
    return out


# --------------------------------------------------------------------------- figure


def _bars(ax: Any, names, values, highlight: set[str], threshold: float | None,
          title: str) -> None:
    names, values = list(names), np.asarray(list(values), dtype=float)
    pos = np.arange(len(names))[::-1]
    colours = ["C3" if n in highlight else "C0" for n in names]
    ax.barh(pos, values, color=colours, height=0.7)
    ax.set_yticks(pos, names, fontsize=7)
    ax.set_xlim(0, 1)
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=0.8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7)


def _not_run(ax: Any, title: str, why: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=8, color="0.4", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def heatmap_finding(d: Diagnosis, finding: str | None = None) -> str | None:
    """The finding whose heatmap is drawn: ``finding`` when explained, else the top explained one."""
    if not d.heatmaps:
        return None
    if finding in d.heatmaps:
        return finding
    return next((f for f, _ in d.top_findings(len(d.findings or {})) if f in d.heatmaps),
                next(iter(d.heatmaps)))


def picture_caption(d: Diagnosis, finding: str | None = None) -> str:
    """What the film's picture shows: the file and, for a heatmap, its finding and P."""
    name = Path(d.file).name if d.file else "image"
    finding = heatmap_finding(d, finding)
    if finding is None:
        return name
    return f"{name} · Grad-CAM: {finding} (P = {d.findings[finding]:.2f})"


def picture_array(d: Diagnosis, finding: str | None = None, alpha: float = 0.4) -> np.ndarray:
    """The film as diagnosed, with the heatmap of ``finding`` (default the top one) when explained."""
    finding = heatmap_finding(d, finding)
    if finding is not None:
        return d.overlay(finding, alpha=alpha)
    return np.asarray(d.image)


def picture_png(d: Diagnosis, finding: str | None = None, alpha: float = 0.4,
                min_px: int = PICTURE_MIN_PX) -> bytes:
    """:func:`picture_array` as PNG bytes, enlarged to a long side of at least ``min_px``."""
    from PIL import Image

    img = Image.fromarray(picture_array(d, finding, alpha))
    scale = min_px / max(img.size)
    if scale > 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)),
                         Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _charts(d: Diagnosis, ax1: Any, ax2: Any, ax3: Any) -> None:
    """Module I, II and III's probabilities (a module that did not run says why)."""
    _bars(ax1, ["X-ray", "not X-ray"], [d.is_xray, 1 - d.is_xray],
          {"X-ray" if d.stage != "not_xray" else "not X-ray"}, chain.XRAY_THRESHOLD,
          "Module I · X-ray or not")
    if d.type_probs is None:
        _not_run(ax2, "Module II · X-ray type", "not run:\nnot an X-ray")
    else:
        _bars(ax2, d.type_probs, d.type_probs.values(), {d.xray_type}, None,
              "Module II · X-ray type")
    if d.findings is None:
        _not_run(ax3, "Module III · chest findings",
                 "not run:\nnot an X-ray" if d.stage == "not_xray" else
                 f"not run:\n{d.xray_type} film, not chest")
    else:
        _bars(ax3, d.findings, d.findings.values(), {f for f, _ in present_findings(d)},
              chain.FINDING_THRESHOLD, "Module III · chest findings")


def plot_diagnosis(d: Diagnosis, finding: str | None = None, alpha: float = 0.4) -> plt.Figure:
    """Image (+ heatmap of ``finding``, default the top one) and the three modules' bar charts."""
    fig, axes = plt.subplots(1, 4, figsize=(13.5, 3.6),
                             gridspec_kw={"width_ratios": [1.3, 0.8, 1, 1]})
    ax_img = axes[0]
    name = Path(d.file).name if d.file else "image"
    if not d.ok:
        for ax in axes:
            ax.axis("off")
        # file names are text, never mathtext ($...$)
        ax_img.text(0, 0.5, as_text(f"{name}: cannot be read\n{d.error}"), fontsize=8, wrap=True)
        return fig
    if heatmap_finding(d, finding) is not None:
        ax_img.imshow(picture_array(d, finding, alpha))
    else:
        ax_img.imshow(d.image, cmap="gray", vmin=0, vmax=255)
    ax_img.set_title(as_text(picture_caption(d, finding).replace(" · ", "\n")), fontsize=9)
    ax_img.axis("off")
    _charts(d, *axes[1:])
    fig.suptitle(as_text(d.verdict()), fontsize=9)
    fig.tight_layout()
    return fig


def plot_charts(d: Diagnosis) -> plt.Figure:
    """The three modules' bar charts alone (the widget shows the film as its own picture)."""
    fig, axes = plt.subplots(1, 3, figsize=(9.5, 3.4), gridspec_kw={"width_ratios": [0.8, 1, 1]})
    if not d.ok:
        for ax in axes:
            ax.axis("off")
        axes[0].text(0, 0.5, as_text(f"cannot be read\n{d.error}"), fontsize=8, wrap=True)
        return fig
    _charts(d, *axes)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- widgets


def _uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """``FileUpload.value`` (ipywidgets 8: tuple of dicts; 7: dict of dicts) -> (name, bytes)."""
    if isinstance(value, Mapping):
        return [(name, bytes(v["content"])) for name, v in value.items()]
    return [(v["name"], bytes(v["content"])) for v in (value or ())]


class DiagnoseDemo:
    """Pick an image (or upload one), see the chain's verdict, probabilities and heatmaps.

    ``demo.widget`` is the box to display.  The preselected image (the dropdown's first entry,
    or ``start``) is diagnosed at once, so the widget never starts blank.  ``demo.show(path)``,
    ``demo.show_upload()`` and ``demo.select_finding(name)`` are the callbacks (also called by
    the widgets' events); after each, ``demo.result`` is the :class:`Diagnosis`, ``demo.figure``
    the bar charts, ``demo.picture`` the film's picture (PNG) and ``demo.shown`` the name of
    what is shown (the uploaded file's name for an upload: the dropdown is then cleared).

    ipykernel runs widget events on threads, beside a running cell: one lock serialises every
    callback, so the verdict, the picture and the charts always describe the same image, and the
    last action wins.  While an action waits or runs, a line says "diagnosing <name> ...".
    """

    def __init__(self, diagnoser: Diagnoser, choices: Mapping[str, str],
                 heatmaps: int = len(paper.FINDINGS), start: str | None = None,
                 max_upload_mib: float = MAX_UPLOAD_MIB) -> None:
        import ipywidgets as w

        self.diagnoser = diagnoser
        self.heatmaps = heatmaps
        self.max_upload_mib = max_upload_mib
        self.choices = dict(choices)
        self.result: Diagnosis | None = None
        self.figure: plt.Figure | None = None
        self.picture: bytes | None = None
        self.shown: str | None = None
        self._updating = False
        self._lock = threading.RLock()
        self._count_lock = threading.Lock()
        self._waiting: list[str] = []
        self.sample = w.Dropdown(options=list(self.choices.items()), description="image",
                                 layout=w.Layout(width="100%", max_width="720px"))
        self.upload = w.FileUpload(accept="image/*,.dcm,.dicom", multiple=False,
                                   description="your image")
        self.upload_note = w.HTML(
            f"<span class='xray-upload-note'>or upload your own: {FORMATS}, "
            f"up to {max_upload_mib:g} MiB</span>")
        self.status = w.HTML()
        self.finding = w.Dropdown(options=[], description="heatmap of",
                                  layout=w.Layout(width="100%", max_width="460px"))
        self.verdict = w.HTML()
        self.caption = w.HTML()
        self.picture_widget = w.Image(format="png", layout=w.Layout(
            width="100%", max_width="480px", height="auto", object_fit="contain"))
        self.picture_widget.add_class("xray-picture")
        self.output = w.Output(layout=w.Layout(width="100%", max_width="960px"))
        self.widget = w.VBox(
            [self.sample, w.HBox([self.upload, self.upload_note],
                                 layout=w.Layout(flex_flow="row wrap", align_items="center")),
             self.status, self.verdict, self.finding,
             w.VBox([self.caption, self.picture_widget]), self.output],
            layout=w.Layout(width="100%", max_width="980px"))
        self.sample.observe(lambda change: self._picked(change["new"]), names="value")
        self.upload.observe(lambda change: self.show_upload(), names="value")
        self.finding.observe(lambda change: self.select_finding(change["new"]), names="value")
        if start is not None and start not in self.choices:
            raise KeyError(f"{start!r} is not one of the images offered: {list(self.choices)}")
        first = start or next(iter(self.choices), None)
        if first is not None:
            if self.sample.value == self.choices[first]:
                self._picked(self.choices[first])
            else:
                self.sample.value = self.choices[first]  # its event diagnoses it

    # ------------------------------------------------------------------ state and busy line

    def _busy(self, what: str):
        """Context manager: the "diagnosing ..." line shows while this action waits or runs."""
        import contextlib

        @contextlib.contextmanager
        def busy():
            with self._count_lock:
                self._waiting.append(what)
                self._set_status()
            try:
                yield
            finally:
                with self._count_lock:
                    self._waiting.remove(what)
                    self._set_status()
        return busy()

    def _set_status(self) -> None:
        import html

        self.status.value = ("" if not self._waiting else
                             f"<div class='xray-busy' style='color:#555'>diagnosing "
                             f"{html.escape(self._waiting[-1])} …</div>")

    @property
    def busy(self) -> bool:
        """Whether an action is waiting or running."""
        return bool(self._waiting)

    def _label_of(self, path: str) -> str:
        return next((k for k, v in self.choices.items() if v == path), Path(str(path)).name)

    # ------------------------------------------------------------------ callbacks

    def _picked(self, path: str | None) -> Diagnosis | None:
        """The dropdown's callback: diagnose the sample and clear any earlier upload."""
        if path is None or self._updating:
            return None
        label = self._label_of(path)
        with self._busy(label), self._lock:
            if self._updating or self.sample.value != path:
                return None  # a later action changed the dropdown meanwhile: it shows that
            if self.upload.value:
                self._updating = True
                try:
                    self.upload.value = ()
                finally:
                    self._updating = False
            return self.show(path, shown=label)

    def show(self, source: str | os.PathLike | np.ndarray, name: str | None = None,
             shown: str | None = None) -> Diagnosis:
        """Diagnose one file or array and redraw everything (``shown``: what the label names)."""
        what = shown or name or (Path(source).name if not isinstance(source, np.ndarray)
                                 else "image")
        with self._busy(what), self._lock:
            result = self.diagnoser.diagnose([source], heatmaps=self.heatmaps)[0]
            if name is not None:
                result.file = name
            return self._display(result, shown)

    def show_upload(self) -> Diagnosis | None:
        """Diagnose the uploaded file (a clear message when it is too large or not an image)."""
        if self._updating or not self.upload.value:
            return None
        with self._busy("your upload"), self._lock:
            if self._updating:
                return None
            files = _uploaded_files(self.upload.value)
            if not files:
                return None
            name, data = files[-1]
            # The dropdown no longer names what is shown: clear it.  The upload is cleared too
            # once read, so neither the kernel nor a saved notebook's widget state keeps the
            # file's bytes; the verdict line names the uploaded file.
            self._updating = True
            try:
                self.sample.value = None
                self.upload.value = ()
            finally:
                self._updating = False
            shown = f"{name} (your upload)"
            with self._busy(shown):
                refused = too_large(name, len(data), self.max_upload_mib)
                if refused:
                    return self._display(Diagnosis(file=name, ok=False, error=refused), shown)
                try:
                    gray = self.diagnoser.read_bytes(data, name)
                except ImageReadError as exc:
                    return self._display(Diagnosis(file=name, ok=False, error=str(exc)), shown)
                return self.show(gray, name=name, shown=shown)

    def simulate_upload(self, path: str | os.PathLike) -> Diagnosis | None:
        """Put a file into the upload widget as a browser would (headless runs and tests).

        Setting the widget's value fires the same event as a real upload, so this runs
        :meth:`show_upload` through the widget.
        """
        import mimetypes
        from datetime import datetime, timezone

        path = Path(path)
        data = path.read_bytes()
        self.upload.value = ({
            "name": path.name, "size": len(data), "content": memoryview(data),
            "type": mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            "last_modified": datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)},)
        return self.result

    def select_finding(self, finding: str | None) -> bytes | None:
        """Redraw the film's picture with the heatmap of ``finding``."""
        if finding is None or self._updating:
            return None
        with self._lock:
            if self.result is None or self._updating or self.finding.value != finding:
                return None
            return self._draw_picture(finding)

    # ------------------------------------------------------------------ drawing (under the lock)

    def _display(self, result: Diagnosis, shown: str | None = None) -> Diagnosis:
        self.result = result
        self.shown = shown or (Path(result.file).name if result.file else "image")
        options = [(f"{f} ({p:.2f})", f) for f, p in result.top_findings(len(paper.FINDINGS))
                   if result.heatmaps and f in result.heatmaps]
        self._updating = True  # the finding dropdown's own events must not redraw meanwhile
        try:
            self.finding.options = options
            self.finding.value = options[0][1] if options else None
        finally:
            self._updating = False
        self.finding.disabled = not options
        self._draw_picture(self.finding.value)
        self._draw_charts()
        # last, so that a page showing the new verdict already has the new pictures
        self.verdict.value = verdict_html(result, self.shown)
        return result

    def _draw_picture(self, finding: str | None) -> bytes | None:
        import html

        d = self.result
        if not d.ok or d.image is None:
            self.picture = None
            self.picture_widget.value = b""
            self.picture_widget.layout.display = "none"
            self.caption.value = ""
            return None
        self.picture = picture_png(d, finding)
        self.picture_widget.value = self.picture
        self.picture_widget.layout.display = None
        self.caption.value = (f"<div class='xray-caption' style='font-size:90%'>"
                              f"{html.escape(picture_caption(d, finding))}</div>")
        return self.picture

    def _draw_charts(self) -> plt.Figure:
        if self.figure is not None:
            plt.close(self.figure)
        self.figure = plot_charts(self.result)
        # set the Output widget's outputs directly rather than capturing a display() into it:
        # the capture (and clear_output(wait=True)) depends on message routing that headless
        # runners (papermill/nbclient) can leave waiting forever
        self.output.outputs = ()
        self.output.append_display_data(self.figure)
        plt.close(self.figure)  # shown through the Output widget, not again by the backend
        return self.figure

    def record(self) -> dict[str, Any]:
        """The JSON record of the current result (as ``diagnose --json`` prints it)."""
        if self.result is None:
            raise RuntimeError("nothing diagnosed yet: pick an image first")
        return self.result.to_json()
