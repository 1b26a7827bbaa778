"""Where things live: one helper for every folder the notebooks and tools use.

Defaults are relative to the repository root (never to the working folder), and each can be
overridden by a notebook parameter or an environment variable:

=================  ===========================  ==========================
folder             default                      environment variable
=================  ===========================  ==========================
data root          ``<repo>/data``              ``XRAY_DATA_DIR``
run folder         ``<repo>/runs/<profile>``    ``XRAY_RUN_DIR``
figures            ``<repo>/figures/<profile>`` ``XRAY_FIGURES_DIR``
=================  ===========================  ==========================
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The repository root (the folder holding ``notebooks/`` and ``xray_utils/``).
REPO_ROOT = Path(os.environ.get("XRAY_REPO_ROOT", Path(__file__).resolve().parents[2]))
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


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


def _pick(explicit: str | os.PathLike | None, env: str, default: Path) -> Path:
    if explicit not in (None, ""):
        return Path(explicit).expanduser().resolve()
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser().resolve()
    return default


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
        data_dir=_pick(data_dir, "XRAY_DATA_DIR", REPO_ROOT / "data"),
        run_dir=_pick(run_dir, "XRAY_RUN_DIR", REPO_ROOT / "runs" / profile),
        figures_dir=_pick(figures_dir, "XRAY_FIGURES_DIR", REPO_ROOT / "figures" / profile),
    )
