"""A training run's folder: the one place that knows its layout, and which run is the latest.

::

    runs/                         RUNS_DIR: cyc train --out's default, and every --runs-dir's
      <name>/                     one run (cyc train --name)
        config.json               its settings
        checkpoints/last.pt       the newest checkpoint (a hard link to the newest step file)
        checkpoints/step_NNNNNN.pt  the newest --keep step files
        G_AB.safetensors          the generators, written when training ends (G_BA.safetensors too)
        samples/step_NNNNNN.png   the labelled sample grids
        metrics.csv               mean losses and held-out scores
        export/                   what cyc export writes (names in :mod:`cyclegan_cli.models.artifacts`)
        pairs.npz                 cyc distill's frames and its teacher's outputs (a distillation run only)

Imports nothing but the errors; the training settings (no torch) read :data:`RUNS_DIR` from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cyclegan_cli.errors import UsageError

RUNS_DIR = "runs"


@dataclass(frozen=True)
class RunFolder:
    """The files of the run at ``path``."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:06d}.pt"

    def step_checkpoints(self) -> list[Path]:
        """The ``step_*.pt`` files, oldest first (by the step in the name)."""

        def step_of(path: Path) -> int:
            digits = path.stem.removeprefix("step_")
            return int(digits) if digits.isdigit() else -1

        return sorted(self.checkpoints.glob("step_*.pt"), key=lambda p: (step_of(p), p.name))

    def generator(self, key: str) -> Path:
        """The generator ``key`` (G_AB or G_BA) as the run wrote it when training ended."""
        return self.path / f"{key}.safetensors"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    def sample(self, step: int) -> Path:
        return self.samples / f"step_{step:06d}.png"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def export(self) -> Path:
        return self.path / "export"

    @property
    def pairs(self) -> Path:
        return self.path / "pairs.npz"

    @classmethod
    def holding(cls, source: str | Path) -> RunFolder | None:
        """The run a weights source belongs to: the folder itself, a checkpoint's run, the run of a generator
        written beside its ``config.json``; None for a file outside any run."""
        source = Path(source)
        if source.is_dir():
            return cls(source)
        if source.parent.name == "checkpoints":
            return cls(source.parent.parent)
        if cls(source.parent).config.is_file():
            return cls(source.parent)
        return None


def latest_run(runs_dir: str | Path) -> RunFolder:
    """The run under ``runs_dir`` whose ``checkpoints/last.pt`` is newest."""
    runs = Path(runs_dir)
    last = RunFolder(Path("*")).last_checkpoint.as_posix()  # */checkpoints/last.pt
    candidates = sorted(runs.glob(last), key=lambda p: p.stat().st_mtime) if runs.is_dir() else []
    if not candidates:
        raise UsageError(
            f"no trained run under {runs}/ (no {last}): train one with 'cyc train', or name weights with --checkpoint"
        )
    return RunFolder(candidates[-1].parent.parent)
