"""Shared pieces of the dataset adapters: errors, the manifest frame, file and duplicate checks.

Every adapter turns one dataset, in the folder layout its publisher ships, into an *image
manifest* (:data:`xray_utils.data.manifests.IMAGE_COLUMNS`).  Adapters only read: they never move,
rename or convert a user's files.  All columns are strings, as when a manifest is read back
from CSV, so frames from different sources concatenate cleanly.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from xray_utils.data.manifests import IMAGE_COLUMNS, ManifestError

#: File name endings treated as images when a folder is walked.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".bmp", ".tif", ".tiff"})
README = "data/README.md"


class DatasetError(ManifestError):
    """A dataset folder is missing, incomplete or malformed; the message names the path and the fix."""


class MissingDatasetsError(DatasetError, FileNotFoundError):
    """One or more dataset folders needed by a run are absent (see :func:`require_datasets`)."""


class DuplicateImagesError(DatasetError):
    """The same image appears twice (same path, or same file content in two places)."""


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry knows about one source.

    ``name`` is both the ``source`` value in manifests and the folder name under the raw-data
    root (``data/raw/<name>/``); ``load(root, check_files=..., drop_missing=...)`` returns the
    image manifest; ``problems(root)`` returns a list of readiness problems (empty = ready),
    cheap enough to run before any training.
    """

    name: str
    title: str
    layout: str
    load: Callable[..., pd.DataFrame]
    problems: Callable[[Path], list[str]]
    readme_section: str
    xray_types: tuple[str, ...] = field(default_factory=tuple)


def readme_ref(section: str) -> str:
    """Pointer to a section of the data README, for error messages."""
    return f"{README} (section \"{section}\")"


def image_frame(n: int, **columns: Iterable | str) -> pd.DataFrame:
    """An image manifest of ``n`` rows; missing columns are empty strings, all values strings."""
    data = {}
    for col in IMAGE_COLUMNS:
        value = columns.get(col, "")
        if isinstance(value, str):
            data[col] = [value] * n
        else:
            values = list(value)
            if len(values) != n:
                raise ValueError(f"column {col!r} has {len(values)} values, expected {n}")
            data[col] = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                         for v in values]
    unknown = set(columns) - set(IMAGE_COLUMNS)
    if unknown:
        raise ValueError(f"unknown manifest column(s) {sorted(unknown)}; expected {IMAGE_COLUMNS}")
    return pd.DataFrame(data, columns=list(IMAGE_COLUMNS), dtype=object)


def require_folder(path: Path, what: str, section: str, layout: str) -> Path:
    """Return ``path`` if it is a folder, else raise :class:`DatasetError` saying what to put there."""
    if not path.is_dir():
        raise DatasetError(
            f"{what}: folder {path} not found. Expected layout: {layout}. "
            f"Download the dataset and place it there; see {readme_ref(section)}.")
    return path


def check_files_exist(df: pd.DataFrame, what: str, drop_missing: bool, hint: str) -> pd.DataFrame:
    """Fail (or drop, with a warning) when listed image files are absent.

    The error gives the count and the first five paths.  With ``drop_missing=True`` the rows
    are dropped, a warning reports the count, and ``df.attrs["missing_dropped"]`` holds it.
    """
    exists = np.fromiter((os.path.isfile(p) for p in df["path"]), dtype=bool, count=len(df))
    n_missing = int((~exists).sum())
    out = df
    if n_missing:
        examples = ", ".join(df.loc[~exists, "path"].head(5))
        if not drop_missing:
            raise DatasetError(
                f"{what}: {n_missing} of {len(df)} listed image(s) are missing, e.g. {examples}. "
                f"{hint} Or pass drop_missing=True to leave them out and go on.")
        warnings.warn(f"{what}: dropped {n_missing} of {len(df)} listed image(s) whose files are "
                      f"missing (e.g. {examples})", stacklevel=3)
        out = df[exists].reset_index(drop=True)
    out.attrs["missing_dropped"] = n_missing
    return out


def walk_images(folder: Path, skip_dirs: Callable[[str], bool] | None = None) -> list[Path]:
    """All image files below ``folder`` (sorted), ignoring hidden files such as macOS ``._*``."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames
                             if not d.startswith(".") and not (skip_dirs and skip_dirs(d)))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath) / name)
    return sorted(found)


def tokens(name: str) -> list[str]:
    """Lower-case alphanumeric words of a file or folder name (``XR_FOOT`` -> ``["xr", "foot"]``)."""
    return [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t]


def _file_digest(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def find_duplicates(df: pd.DataFrame, content: bool = False) -> list[list[int]]:
    """Groups of row positions that are the same image.

    Always: the same resolved path twice.  With ``content=True`` also: different paths whose
    files have identical bytes (e.g. one film shipped by two sources).  Files are first grouped
    by size, so only same-size files are hashed.
    """
    groups: list[list[int]] = []
    resolved = [os.path.realpath(p) for p in df["path"]]
    by_path: dict[str, list[int]] = {}
    for i, p in enumerate(resolved):
        by_path.setdefault(p, []).append(i)
    groups.extend(g for g in by_path.values() if len(g) > 1)
    if content:
        firsts = {p: g[0] for p, g in by_path.items()}
        by_size: dict[int, list[str]] = {}
        for p in firsts:
            if os.path.isfile(p):
                by_size.setdefault(os.path.getsize(p), []).append(p)
        for same_size in by_size.values():
            if len(same_size) < 2:
                continue
            by_hash: dict[str, list[int]] = {}
            for p in same_size:
                by_hash.setdefault(_file_digest(p), []).extend(by_path[p])
            groups.extend(sorted(g) for g in by_hash.values() if len(set(resolved[i] for i in g)) > 1)
    return groups


def check_duplicates(df: pd.DataFrame, content: bool = False, drop: bool = False,
                     what: str = "image manifest") -> pd.DataFrame:
    """Raise :class:`DuplicateImagesError` on duplicate images, or keep the first of each with ``drop``.

    The message lists up to five groups with their sources, e.g. a film present both in the
    generic folder and in ChestX-ray14.
    """
    groups = find_duplicates(df, content=content)
    if not groups:
        return df
    if drop:
        extra = sorted(i for g in groups for i in g[1:])
        warnings.warn(f"{what}: dropped {len(extra)} duplicate image row(s)", stacklevel=2)
        return df.drop(df.index[extra]).reset_index(drop=True)
    shown = []
    for g in groups[:5]:
        shown.append(" = ".join(f"{df['path'].iloc[i]} [{df['source'].iloc[i]}]" for i in g))
    raise DuplicateImagesError(
        f"{what}: {len(groups)} image(s) appear more than once ("
        + "; ".join(shown) + "). Remove the copies from one of the folders, or pass "
        "drop_duplicates=True to keep only the first occurrence.")


def prefixed(source: str, ids: Iterable[str]) -> list[str]:
    """Patient ids made unique across datasets: ``<source>:<id>``."""
    return [f"{source}:{i}" for i in ids]


def first_existing(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` that exists in ``folder`` (or ``None``)."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None
