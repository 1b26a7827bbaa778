"""Where things live: one helper for every folder the notebooks and tools use.

Defaults are relative to the repository root (never to the working folder), and each can be
overridden by a notebook parameter or an environment variable.  Every environment variable the
package reads is read here (or through a function here):

=================  ===============================  ==========================
what               default                          environment variable
=================  ===============================  ==========================
repository root    the folder above ``xray_utils``  ``XRAY_REPO_ROOT``
data root          ``<repo>/data``                  ``XRAY_DATA_DIR``
run folder         ``<repo>/runs/<profile>``        ``XRAY_RUN_DIR``
figures            ``<repo>/figures/<profile>``     ``XRAY_FIGURES_DIR``
downloads          ``<data>/downloads``             ``XRAY_DOWNLOADS_DIR``
offline mode       off                              ``XRAY_OFFLINE`` (1/true/yes/on)
download mirror    none (the publishers' URLs)      ``XRAY_PUBLIC_MIRROR``
download deadline  4 hours per file                 ``XRAY_DOWNLOAD_DEADLINE`` (seconds)
labelled folder    none                             ``XRAY_REAL_SAMPLES``
reference folder   none                             ``XRAY_SHARED_DIR``
app checkpoints    the demo run's checkpoints       ``XRAY_APP_CHECKPOINTS``
app device         ``auto``                         ``XRAY_APP_DEVICE``
=================  ===============================  ==========================

The two ``XRAY_APP_*`` variables are set by ``python -m xray_utils app`` for the page it serves.

The last two name a labelled folder of films (:func:`labelled_folder_dir`; without
``XRAY_REAL_SAMPLES`` it is ``real-samples`` inside ``XRAY_SHARED_DIR``): optional inputs of
the transfer score and the bench, never needed to run the tutorial.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The repository root (the folder holding ``notebooks/`` and ``xray_utils/``).
REPO_ROOT = Path(os.environ.get("XRAY_REPO_ROOT", Path(__file__).resolve().parents[2]))
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
#: The real films shipped with the repository (``data/open-films``: images, manifest, licences).
OPEN_FILMS_DIR = REPO_ROOT / "data" / "open-films"

DATA_ENV = "XRAY_DATA_DIR"
RUN_ENV = "XRAY_RUN_DIR"
FIGURES_ENV = "XRAY_FIGURES_DIR"
DOWNLOADS_ENV = "XRAY_DOWNLOADS_DIR"
OFFLINE_ENV = "XRAY_OFFLINE"
MIRROR_ENV = "XRAY_PUBLIC_MIRROR"
DEADLINE_ENV = "XRAY_DOWNLOAD_DEADLINE"
APP_CHECKPOINTS_ENV = "XRAY_APP_CHECKPOINTS"
APP_DEVICE_ENV = "XRAY_APP_DEVICE"
#: Default overall time limit of one download, in seconds (a 4 GB archive at 2 MB/s fits).
DEFAULT_DEADLINE_S = 4 * 3600.0
LABELLED_FOLDER_ENV = "XRAY_REAL_SAMPLES"
SHARED_ENV = "XRAY_SHARED_DIR"
#: Name of the labelled folder inside ``$XRAY_SHARED_DIR``.
LABELLED_FOLDER_NAME = "real-samples"


#: Checkpoint layout, one place: ``<checkpoints>/<task>/best.json`` + ``best.safetensors`` (the
#: best model, self-describing) and ``last.pt`` (the full training state, for resuming).
CHECKPOINT_STEM = "best"
LAST_STATE = "last.pt"


def checkpoint_files(checkpoints_dir: str | os.PathLike, task: str) -> tuple[Path, Path]:
    """``(<dir>/<task>/best.json, <dir>/<task>/best.safetensors)`` of a checkpoints folder."""
    stem = Path(checkpoints_dir) / task / CHECKPOINT_STEM
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


def best_checkpoint(checkpoints_dir: str | os.PathLike, task: str) -> Path:
    """``<dir>/<task>/best.json``: what :func:`xray_utils.models.load_checkpoint` takes."""
    return checkpoint_files(checkpoints_dir, task)[0]


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a record shows it: relative to the repository when inside it (figures and
    metrics.json are committed, so they never carry the machine's absolute folders)."""
    path = Path(path)
    try:
        return path.resolve().relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return str(path)


def _pick(explicit: str | os.PathLike | None, env: str, default: Path) -> Path:
    if explicit not in (None, ""):
        return Path(explicit).expanduser().resolve()
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser().resolve()
    return default


def downloads_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The downloads folder: ``cache_dir``, else ``$XRAY_DOWNLOADS_DIR``, else ``<data>/downloads``."""
    return _pick(cache_dir, DOWNLOADS_ENV, project_paths().data_dir / "downloads")


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether ``$XRAY_OFFLINE`` is set to 1/true/yes/on."""
    if offline is not None:
        return bool(offline)
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def download_mirror(mirror: str | None = None) -> str:
    """``mirror`` if given, else ``$XRAY_PUBLIC_MIRROR`` (``""``: the publishers' URLs)."""
    return mirror if mirror is not None else os.environ.get(MIRROR_ENV, "")


def download_deadline(deadline: float | None = None) -> float | None:
    """Seconds one download may take: ``deadline`` if given, else ``$XRAY_DOWNLOAD_DEADLINE``,
    else :data:`DEFAULT_DEADLINE_S`; ``None`` (no deadline) for 0 or less."""
    if deadline is None:
        text = os.environ.get(DEADLINE_ENV, "").strip()
        try:
            deadline = float(text) if text else DEFAULT_DEADLINE_S
        except ValueError:
            raise ValueError(f"{DEADLINE_ENV}={text!r} is not a number of seconds") from None
    return float(deadline) if deadline > 0 else None


def app_checkpoints_override() -> Path | None:
    """``$XRAY_APP_CHECKPOINTS`` (the app page's checkpoints folder), or None when unset."""
    chosen = os.environ.get(APP_CHECKPOINTS_ENV)
    return Path(chosen).expanduser() if chosen else None


def app_device(device: str | None = None) -> str:
    """The app page's device: ``device``, else ``$XRAY_APP_DEVICE``, else ``"auto"``."""
    return device or os.environ.get(APP_DEVICE_ENV) or "auto"


def labelled_folder_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The labelled folder of films and photographs (a folder with ``labels.csv``), or None.

    ``explicit`` if given, else ``$XRAY_REAL_SAMPLES``, else ``real-samples`` inside
    ``$XRAY_SHARED_DIR``; None when none of them is set or the folder has no ``labels.csv``.
    """
    if explicit not in (None, ""):
        cand: Path | None = Path(explicit).expanduser()
    elif os.environ.get(LABELLED_FOLDER_ENV):
        cand = Path(os.environ[LABELLED_FOLDER_ENV]).expanduser()
    elif os.environ.get(SHARED_ENV):
        cand = Path(os.environ[SHARED_ENV]).expanduser() / LABELLED_FOLDER_NAME
    else:
        cand = None
    return cand if cand is not None and (cand / "labels.csv").is_file() else None


@dataclass(frozen=True)
class ProjectPaths:
    """All folders of one profile's run.  Build it with :func:`project_paths`."""

    profile: str
    data_dir: Path
    run_dir: Path
    figures_dir: Path

    @property
    def demo_dir(self) -> Path:
        """The generated demo dataset (images + manifests)."""
        return self.data_dir / "demo"

    @property
    def raw_dir(self) -> Path:
        """Where users put the real datasets (see ``data/README.md``)."""
        return self.data_dir / "raw"

    @property
    def cache_dir(self) -> Path:
        """Preprocessing caches (decoded, resized 8-bit images)."""
        return self.data_dir / "cache"

    @property
    def manifests_dir(self) -> Path:
        """The three task manifests of this profile."""
        return self.run_dir / "manifests"

    @property
    def checkpoints_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def predictions_dir(self) -> Path:
        return self.run_dir / "predictions"

    @property
    def notebooks_out_dir(self) -> Path:
        """Executed copies of the notebooks written by the runner."""
        return self.run_dir / "notebooks"

    def checkpoint_dir(self, task: str) -> Path:
        return self.checkpoints_dir / task

    def best_checkpoint(self, task: str) -> Path:
        """``<run>/checkpoints/<task>/best.json`` (weights beside it in ``best.safetensors``)."""
        return best_checkpoint(self.checkpoints_dir, task)

    def last_state(self, task: str) -> Path:
        """``<run>/checkpoints/<task>/last.pt``: the training state a rerun resumes from."""
        return self.checkpoint_dir(task) / LAST_STATE

    def manifest(self, task: str) -> Path:
        return self.manifests_dir / f"{task}.csv"

    def ensure(self) -> "ProjectPaths":
        """Create the writable folders and return self."""
        for d in (self.run_dir, self.figures_dir, self.manifests_dir, self.checkpoints_dir,
                  self.predictions_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self


def project_paths(profile: str = "demo", data_dir: str | os.PathLike | None = None,
                  run_dir: str | os.PathLike | None = None,
                  figures_dir: str | os.PathLike | None = None) -> ProjectPaths:
    """Folders for ``profile``; explicit arguments beat environment variables beat defaults."""
    return ProjectPaths(
        profile=profile,
        data_dir=_pick(data_dir, DATA_ENV, REPO_ROOT / "data"),
        run_dir=_pick(run_dir, RUN_ENV, REPO_ROOT / "runs" / profile),
        figures_dir=_pick(figures_dir, FIGURES_ENV, REPO_ROOT / "figures" / profile),
    )
