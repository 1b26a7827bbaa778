"""Git's clean filter for the notebooks: what is committed is a chapter without its outputs.

``make setup`` registers it (``git config filter.nbclean.clean ...``) and ``.gitattributes``
applies it to ``notebooks/**/*.ipynb``, so running a chapter in JupyterLab (whose autosave writes
outputs, execution counts, kernel versions and widget state into the file) shows no change in
``git diff`` and adds none to a commit: git compares the cleaned file with the committed one
(``git status`` may list the file by its changed size until a ``git add``; ``make lab`` runs
copies instead, which leaves it clean).  The file on disk keeps its outputs.

Reads a notebook on stdin, writes it cleaned to stdout (``python tools/nbclean.py < in > out``):
code cells lose their outputs and execution counts, cells keep only their ``tags``, the notebook
keeps only its ``kernelspec`` (under the display name the committed notebooks give the kernel),
``title`` and the language's name, written as the committed notebooks are (JSON, indent 1, keys
sorted, a final newline).  Input that is not a notebook
passes through unchanged, so the filter never loses a file.
"""
from __future__ import annotations

import json
import sys
from typing import Any

#: Cell metadata kept (when not empty); everything else (execution times, collapsed, scrolled, ...) goes.
CELL_KEYS = ("tags",)
#: Notebook metadata kept; ``language_info`` is cut to its ``name``.
NOTEBOOK_KEYS = ("kernelspec", "title")
#: Kernel name -> the display name the committed notebooks give it (JupyterLab writes its own,
#: e.g. "Python 3 (ipykernel)", depending on how the kernel was installed).
KERNEL_DISPLAY_NAMES = {"python3": "Python 3"}


def clean(nb: dict[str, Any]) -> dict[str, Any]:
    """The notebook without outputs, execution counts and run-time metadata."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items()
                            if k in CELL_KEYS and v}
    meta = nb.get("metadata", {})
    kept = {k: v for k, v in meta.items() if k in NOTEBOOK_KEYS}
    spec = kept.get("kernelspec")
    if isinstance(spec, dict) and spec.get("name") in KERNEL_DISPLAY_NAMES:
        kept["kernelspec"] = {**spec, "display_name": KERNEL_DISPLAY_NAMES[spec["name"]]}
    if "language_info" in meta and "name" in meta["language_info"]:
        kept["language_info"] = {"name": meta["language_info"]["name"]}
    nb["metadata"] = kept
    return nb


def clean_text(text: str) -> str:
    """:func:`clean` on a notebook's text; text that is not a notebook comes back unchanged."""
    try:
        nb = json.loads(text)
    except ValueError:
        return text
    if not isinstance(nb, dict) or "cells" not in nb:
        return text
    return json.dumps(clean(nb), indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    data = sys.stdin.buffer.read().decode("utf-8")
    sys.stdout.buffer.write(clean_text(data).encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
