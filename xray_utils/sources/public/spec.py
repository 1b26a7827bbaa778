"""What every public adapter shares: the errors, the dataset and file records, the row builder.

The public datasets' adapters (:mod:`~xray_utils.sources.public.chestmnist`, ``mednist``,
``fracatlas``, ``imagenette``) each define a :class:`PublicDataset` ``SPEC``, their ``FILES``
(:class:`PublicFile`) and a function that turns the extracted files into image-manifest rows;
:mod:`xray_utils.sources.public` holds the registry, the downloads and the manifest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from xray_utils.data.manifests import IMAGE_COLUMNS
from xray_utils.sources.download import DownloadError

#: Sub-folder of the downloads folder that holds everything of this module.
SUBDIR = "public"

class PublicDataError(DownloadError):
    """A public file is missing, unreachable, corrupt or laid out unexpectedly (message says which)."""

class PublicDataMissing(PublicDataError):
    """Files are not in the cache and cannot be downloaded now (offline or no network)."""

class ChecksumMismatch(PublicDataError):
    """A downloaded or cached file does not match its checksum."""

@dataclass(frozen=True)
class PublicDataset:
    """One open dataset: what it is, its licence, and how to cite it."""

    name: str
    title: str
    licence: str
    licence_url: str
    citation: str
    homepage: str
    used_for: str
    notes: str = ""

@dataclass(frozen=True)
class PublicFile:
    """One downloadable file of a :class:`PublicDataset`.

    ``checksums`` holds the published value(s) as ``"<alg>:<hex>"`` (any one must match; two
    when the publisher's copies disagree); empty means none is published, and the first
    download's sha256 is recorded and enforced from then on.  ``size`` is in bytes; when
    ``size_exact`` is False it is an estimate for the reader, never used to judge a file.
    """

    name: str
    dataset: str
    url: str
    filename: str
    size: int
    size_exact: bool
    size_source: str
    checksums: tuple[str, ...]
    checksum_source: str
    layout: str

    @property
    def checksum_published(self) -> bool:
        return bool(self.checksums)

    def size_text(self) -> str:
        """``"401.6 MB"`` (exact) or ``"about 59 MB"`` (estimate); MB = 10**6 bytes."""
        mb = self.size / 1e6
        return f"{mb:,.1f} MB" if self.size_exact else f"about {mb:,.0f} MB"


def frame(path: Sequence[str] | pd.Series, **columns: Any) -> pd.DataFrame:
    """An image manifest (all columns, all strings) from ``path`` and the given columns."""
    n = len(path)
    data = {"path": list(path)}
    for col in IMAGE_COLUMNS[1:]:
        value = columns.get(col, "")
        data[col] = [value] * n if isinstance(value, str) else [str(v) for v in value]
    return pd.DataFrame(data, columns=list(IMAGE_COLUMNS), dtype=object)
