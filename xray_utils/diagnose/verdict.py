"""One verdict, one wording: what the chain concluded about one image.

The command line (``python -m xray_utils diagnose``), notebook 06's widget and the app all say
it through these functions, so they can never tell a student different things:

* :func:`verdict_kind` -- ``"diagnosis"`` (a chest film with at least one finding at or above
  the threshold), ``"no_finding"`` (a chest film without one), ``"other_xray"`` (an X-ray of
  another type: no findings model for it), ``"refused"`` (not an X-ray) or ``"unreadable"``.
* :func:`findings_sentence` -- the findings in words.  Below the threshold a finding is never
  presented as found: "no finding reaches P = 0.5; most probable: Nodule 0.20, ...".
* :func:`verdict_line` -- one line (``Diagnosis.verdict()``); :func:`verdict_text` -- the same
  with its heading; :func:`verdict_html` -- the coloured block of the widget and the app.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from xray_utils.diagnose import rule as chain

if TYPE_CHECKING:  # pragma: no cover - typing only (diagnoser imports this module)
    from xray_utils.diagnose.diagnoser import Diagnosis

#: Findings named in a verdict (the most probable first).
TOP = 3

#: Kind -> (colour, background, heading) of the verdict block.
STYLES: Mapping[str, tuple[str, str, str]] = {
    "diagnosis": ("#05620a", "#e8f5e9", "Diagnosis"),
    "no_finding": ("#37474f", "#eceff1", "Chest film, no finding"),
    "other_xray": ("#0b4f8a", "#e3f0fb", "X-ray, no chest findings"),
    "refused": ("#8a4b00", "#fff3e0", "Refused: not an X-ray"),
    "unreadable": ("#a00000", "#fdecea", "This file cannot be read"),
}


def present_findings(d: Diagnosis,
                     threshold: float = chain.FINDING_THRESHOLD) -> list[tuple[str, float]]:
    """The findings called present (P >= ``threshold``), most probable first."""
    return [(f, p) for f, p in d.top_findings(len(d.findings or {})) if p >= threshold]


def verdict_kind(d: Diagnosis) -> str:
    """What the chain concluded: one of the keys of :data:`STYLES`."""
    if d.stage is None:
        return "unreadable"
    if d.stage == "not_xray":
        return "refused"
    if d.stage == "type_only":
        return "other_xray"
    return "diagnosis" if present_findings(d) else "no_finding"


def findings_sentence(d: Diagnosis, top: int = TOP) -> str:
    """The chest findings in words; empty when Module III did not run."""
    if d.findings is None:
        return ""
    t = f"{chain.FINDING_THRESHOLD:g}"
    present = present_findings(d)
    if not present:
        tops = ", ".join(f"{f} {p:.2f}" for f, p in d.top_findings(top))
        return f"no finding reaches P = {t}; most probable: {tops}"
    return f"findings with P >= {t}: " + ", ".join(f"{f} {p:.2f}" for f, p in present)


def verdict_line(d: Diagnosis, top: int = TOP) -> str:
    """One line a person reads: what the chain concluded (no heading, no markup)."""
    if d.stage is None:
        return f"cannot be read: {d.error}"
    if d.stage == "not_xray":
        return (f"not an X-ray (P(X-ray) = {d.is_xray:.2f} < {chain.XRAY_THRESHOLD:g}); "
                "the type and findings models were not run")
    p_type = d.type_probs[d.xray_type] if d.type_probs else float("nan")
    head = f"X-ray (P = {d.is_xray:.2f}), type {d.xray_type} (P = {p_type:.2f})"
    if d.stage == "type_only":
        return f"{head}; only chest films go on to the findings model"
    return f"{head}; {findings_sentence(d, top)}"


def verdict_text(d: Diagnosis, top: int = TOP) -> str:
    """Heading and line: what :func:`verdict_html` shows, without markup."""
    return f"{STYLES[verdict_kind(d)][2]}: {verdict_line(d, top)}"


def verdict_html(d: Diagnosis, name: str | None = None, top: int = TOP) -> str:
    """The verdict as a coloured block naming the image; each kind has its colour."""
    kind = verdict_kind(d)
    colour, background, _ = STYLES[kind]
    shown = html.escape(name or (Path(d.file).name if d.file else "image"))
    return (f"<div class='xray-verdict xray-verdict-{kind}' data-kind='{kind}' "
            f"style='color:{colour};background:{background};border-left:6px solid {colour};"
            f"padding:6px 10px;margin:4px 0;overflow-wrap:anywhere'>"
            f"<div style='font-size:90%'>image: <b>{shown}</b></div>"
            f"<b>{html.escape(verdict_text(d, top))}</b></div>")
