"""The interactive ``diagnose()`` demo of ``notebooks/06_diagnose_demo.ipynb`` (ipywidgets).

* :func:`sample_images` -- the images offered in the demo: the two real DICOM films shipped in
  ``pydicom-data``, real films of the test split (when real data was mixed in), then a few
  test-split images of the demo task manifests.
* :func:`verdict_html` -- the verdict as one coloured block: a diagnosis, a refusal ("not an
  X-ray", "no findings model for this type") and an unreadable file each look different
  (shared with the app of ``python -m xray_utils app``).
* :func:`plot_diagnosis` -- one figure per diagnosis: the image (with the Grad-CAM overlay of a
  chosen finding), then Module I, II and III's probabilities as bar charts.
* :class:`DiagnoseDemo` -- the widgets (sample dropdown, file upload, finding dropdown) and
  their callbacks.  Every callback is an ordinary method, so a headless run (papermill, CI)
  calls them directly and gets the same figure and record an interactive user sees.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np

from xray_utils.config import paper
from xray_utils.config.paths import ProjectPaths
from xray_utils.data.imageio import ImageReadError, read_gray_bytes
from xray_utils.data.manifests import ManifestError, read_task_manifest
from xray_utils.diagnose import rule as chain
from xray_utils.diagnose.diagnoser import Diagnoser, Diagnosis
from xray_utils.sources.demo import SAMPLE_DICOM_FILMS

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
    """Dropdown label -> file: the DICOM films, real test films, then demo test images.

    From the test split: ``per_kind`` chest films with findings and one without (Module III's
    manifest), ``per_kind`` radiographs of other types (Module II's), and one photograph
    (Module I's).  A manifest that does not exist yet is skipped (the films are always there).
    """
    choices = {f"{name} · {what}": str(dicom_film(name)) for name, what in DICOM_FILMS.items()}
    choices.update(dataset_test_films(paths, seed=seed))
    rng = np.random.default_rng(seed)

    def pick(task: str, keep, n: int, describe) -> None:
        try:
            df = read_task_manifest(paths.manifest(task))
        except ManifestError:
            return
        df = df[(df["split"] == "test") & df["label"].map(keep)]
        if df.empty:
            return
        rows = df.iloc[np.sort(rng.choice(len(df), size=min(n, len(df)), replace=False))]
        for _, row in rows.iterrows():
            choices[f"{describe(row['label'])} · {Path(row['path']).name}"] = row["path"]

    pick("chest", lambda lab: lab != paper.NO_FINDING, per_kind,
         lambda lab: f"demo chest, {lab.replace('|', ', ')}")
    pick("chest", lambda lab: lab == paper.NO_FINDING, 1, lambda lab: "demo chest, no finding")
    try:
        types = read_task_manifest(paths.manifest("xray_type"))
        others = sorted(set(types.loc[types["split"] == "test", "label"]) - {chain.CHEST})
    except ManifestError:
        others = []
    if others:  # per_kind different non-chest types, one image each
        for i in np.sort(rng.choice(len(others), size=min(per_kind, len(others)), replace=False)):
            pick("xray_type", lambda lab, t=others[i]: lab == t, 1,
                 lambda lab: f"demo X-ray, {lab}")
    pick("xray_or_not", lambda lab: lab == "not_xray", 1, lambda lab: "photograph (not an X-ray)")
    return choices


def dataset_test_films(paths: ProjectPaths, per_task: int = 2, seed: int = 0) -> dict[str, str]:
    """Dropdown label -> file: test-split films that come from a dataset, not generated (any
    ``source`` but ``demo``: open films, public or paper datasets, a labelled folder).

    They are in the task manifests only when real images were mixed into the data (``-p
    EXTRA_DATA``, the public and full profiles); otherwise this is empty.  ``per_task`` images
    from each task manifest, never an image twice.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for task in ("chest", "xray_type", "xray_or_not"):
        try:
            df = read_task_manifest(paths.manifest(task))
        except ManifestError:
            continue
        df = df[(df["split"] == "test") & (df["source"].astype(str) != "demo")
                & ~df["path"].isin(list(out.values()))]
        if df.empty:
            continue
        rows = df.iloc[np.sort(rng.choice(len(df), size=min(per_task, len(df)), replace=False))]
        for _, row in rows.iterrows():
            label = str(row["label"]).replace("|", ", ")
            out[f"real {row['source']}, {label} · {Path(row['path']).name}"] = row["path"]
    return out


# --------------------------------------------------------------------------- verdict

#: Stage -> (colour, background, heading) of the verdict block.
VERDICT_STYLES: Mapping[str | None, tuple[str, str, str]] = {
    "chest": ("#05620a", "#e8f5e9", "Diagnosis"),
    "type_only": ("#0b4f8a", "#e3f0fb", "X-ray, no chest findings"),
    "not_xray": ("#8a4b00", "#fff3e0", "Refused: not an X-ray"),
    None: ("#a00000", "#fdecea", "This file cannot be read"),
}


def verdict_kind(d: Diagnosis) -> str:
    """``"diagnosis"``, ``"other_xray"``, ``"refused"`` or ``"unreadable"`` (the block's class)."""
    return {"chest": "diagnosis", "type_only": "other_xray", "not_xray": "refused",
            None: "unreadable"}[d.stage]


def verdict_text(d: Diagnosis) -> str:
    """Heading and explanation in words (what :func:`verdict_html` shows, without markup)."""
    colour, background, heading = VERDICT_STYLES[d.stage]
    if d.stage is None:
        return f"{heading}: {d.error}"
    if d.stage == "not_xray":
        return (f"{heading} (P(X-ray) = {d.is_xray:.2f} < {chain.XRAY_THRESHOLD:g}); "
                "the type and findings models were not run.")
    if d.stage == "type_only":
        return (f"{heading}: {d.verdict()}; only chest films go on to the findings model.")
    return f"{heading}: {d.verdict()}"


def verdict_html(d: Diagnosis, name: str | None = None) -> str:
    """The verdict as a coloured block naming the image; each kind has its colour and wording."""
    import html

    colour, background, _ = VERDICT_STYLES[d.stage]
    shown = html.escape(name or (Path(d.file).name if d.file else "image"))
    return (f"<div class='xray-verdict xray-verdict-{verdict_kind(d)}' "
            f"data-kind='{verdict_kind(d)}' style='color:{colour};background:{background};"
            f"border-left:6px solid {colour};padding:6px 10px;margin:4px 0'>"
            f"<div style='font-size:90%'>image: <b>{shown}</b></div>"
            f"<b>{html.escape(verdict_text(d))}</b></div>")


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


def plot_diagnosis(d: Diagnosis, finding: str | None = None, alpha: float = 0.4) -> plt.Figure:
    """Image (+ heatmap of ``finding``, default the top one) and the three modules' bar charts."""
    fig, axes = plt.subplots(1, 4, figsize=(13.5, 3.6),
                             gridspec_kw={"width_ratios": [1.3, 0.8, 1, 1]})
    ax_img, ax1, ax2, ax3 = axes
    name = Path(d.file).name if d.file else "image"
    if not d.ok:
        for ax in axes:
            ax.axis("off")
        ax_img.text(0, 0.5, f"{name}: cannot be read\n{d.error}", fontsize=8, wrap=True)
        return fig
    if d.heatmaps:
        finding = finding if finding in d.heatmaps else d.top_findings(1)[0][0]
        if finding not in d.heatmaps:
            finding = next(iter(d.heatmaps))
        ax_img.imshow(d.overlay(finding, alpha=alpha))
        ax_img.set_title(f"{name}\nGrad-CAM: {finding} (P = {d.findings[finding]:.2f})",
                         fontsize=9)
    else:
        ax_img.imshow(d.image, cmap="gray", vmin=0, vmax=255)
        ax_img.set_title(name, fontsize=9)
    ax_img.axis("off")
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
        present = {f for f, p in d.findings.items() if p >= chain.FINDING_THRESHOLD}
        _bars(ax3, d.findings, d.findings.values(), present, chain.FINDING_THRESHOLD,
              "Module III · chest findings")
    fig.suptitle(d.verdict(), fontsize=9)
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
    the figure and ``demo.shown`` the name of what is shown (the uploaded file's name for an
    upload: the dropdown is then cleared).
    """

    def __init__(self, diagnoser: Diagnoser, choices: Mapping[str, str],
                 heatmaps: int = len(paper.FINDINGS), start: str | None = None) -> None:
        import ipywidgets as w

        self.diagnoser = diagnoser
        self.heatmaps = heatmaps
        self.choices = dict(choices)
        self.result: Diagnosis | None = None
        self.figure: plt.Figure | None = None
        self.shown: str | None = None
        self._updating = False
        self.sample = w.Dropdown(options=list(self.choices.items()), description="image",
                                 layout=w.Layout(width="60%"))
        self.upload = w.FileUpload(accept="image/*,.dcm,.dicom", multiple=False,
                                   description="your image")
        self.finding = w.Dropdown(options=[], description="heatmap of",
                                  layout=w.Layout(width="45%"))
        self.verdict = w.HTML()
        self.output = w.Output()
        self.widget = w.VBox([w.HBox([self.sample, self.upload]), self.verdict, self.finding,
                              self.output])
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

    def _label_of(self, path: str) -> str:
        return next((k for k, v in self.choices.items() if v == path), Path(str(path)).name)

    def _picked(self, path: str | None) -> Diagnosis | None:
        """The dropdown's callback: diagnose the sample and clear any earlier upload."""
        if path is None or self._updating:
            return None
        if self.upload.value:
            self._updating = True
            try:
                self.upload.value = ()
            finally:
                self._updating = False
        return self.show(path, shown=self._label_of(path))

    def show(self, source: str | os.PathLike | np.ndarray, name: str | None = None,
             shown: str | None = None) -> Diagnosis:
        """Diagnose one file or array and redraw everything (``shown``: what the label names)."""
        result = self.diagnoser.diagnose([source], heatmaps=self.heatmaps)[0]
        if name is not None:
            result.file = name
        return self._display(result, shown)

    def show_upload(self) -> Diagnosis | None:
        """Diagnose the uploaded file (a clear message when it is not a readable image)."""
        if self._updating:
            return None
        files = _uploaded_files(self.upload.value)
        if not files:
            return None
        name, data = files[-1]
        # The dropdown no longer names what is shown: clear it.  The upload is cleared too once
        # read, so neither the kernel nor a saved notebook's widget state keeps the file's bytes;
        # the verdict line names the uploaded file.
        self._updating = True
        try:
            self.sample.value = None
            self.upload.value = ()
        finally:
            self._updating = False
        shown = f"{name} (your upload)"
        try:
            gray = read_gray_bytes(data, name)
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

    def select_finding(self, finding: str | None) -> plt.Figure | None:
        """Redraw with the heatmap of ``finding``."""
        if self.result is None or finding is None or self._updating:
            return None
        return self._draw(finding)

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
        self._draw(self.finding.value)
        # last, so that a page showing the new verdict already has the new figure
        self.verdict.value = verdict_html(result, self.shown)
        return result

    def _draw(self, finding: str | None) -> plt.Figure:
        if self.figure is not None:
            plt.close(self.figure)
        self.figure = plot_diagnosis(self.result, finding)
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
