"""Checks of what notebook 06 records in ``<run>/diagnose_demo.json`` (used by
tests/test_notebooks.py after the notebook ran, and by the browser tests)."""
from __future__ import annotations

import json
from pathlib import Path

RECORD_KEYS = {"file", "ok", "error", "is_xray", "xray_type", "type_probs", "findings", "heatmaps"}


def check_diagnose_record(path: str | Path) -> dict:
    """Assert that the films, the widget and the command line agree; return the record."""
    rec = json.loads(Path(path).read_text())
    films = rec["films"]
    assert rec["film_names"][:2] == ["RG1_UNCR.dcm", "RG3_UNCR.dcm"], "real DICOM films come first"
    assert all(set(d) == RECORD_KEYS and d["ok"] for d in films), films
    cli = rec["cli"]
    assert cli["returncode"] == 0, cli["stderr"]
    assert len(cli["records"]) == len(films)
    for line, d in zip(cli["records"], films):  # the command line and the notebook agree
        assert set(line) == RECORD_KEYS and line["ok"]
        assert abs(line["is_xray"] - d["is_xray"]) < 1e-4 and line["xray_type"] == d["xray_type"]
    picked, uploaded = rec["widget"]["picked"], rec["widget"]["uploaded"]
    for state in (picked, uploaded):
        assert state["ok"] and state["is_xray"] is not None
        assert (state["findings"] is None) == (state["xray_type"] is None
                                               or state["xray_type"] != "chest")
    assert Path(picked["file"]).name in picked["shown"]
    assert uploaded["file"] == "RG3_UNCR.dcm" and uploaded["shown"] == "RG3_UNCR.dcm (your upload)"
    assert uploaded["dropdown"] is None, "after an upload the dropdown must not name another image"
    assert abs(uploaded["is_xray"] - films[1]["is_xray"]) < 1e-4  # same film, same answer
    latency = rec["latency"]
    assert latency["diagnose_s"] > latency["forward_s"] > 0
    return rec
