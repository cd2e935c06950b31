"""Training checkpoints: what one holds, writing it, finding and reading the one to resume, restoring it.

A checkpoint is a plain dict of tensors and primitives, so ``torch.load(weights_only=True)`` reads it (no pickled
Python objects): ``format`` and ``version``; ``config``, the run's settings (:func:`saved_config`) plus what the
data scan found (domain names and folders, image counts); the ``models``, ``optimizers`` and ``schedulers``
state dicts, the grad ``scaler``, the replay ``pools`` with their random state, the python, torch (and CUDA)
random states under ``rng``; and the position: ``epoch`` (0-based, the epoch being trained), ``batch_in_epoch``
(batches of it already trained), the global ``step``, ``elapsed_s`` and the ``skipped`` unreadable images.

Written by several ranks (``torchrun``), it also holds ``world_size`` and ``ranks``: for each rank in order, its
replay ``pools`` and ``rng`` (rank 0's are the top-level ones, stored once), so the same number of ranks resumes
bit for bit. One process writes ``world_size`` 1 and no ``ranks``; a checkpoint without them (older ones) is one
process's. Any checkpoint resumes with any number of ranks: rank ``r`` takes part ``r``; a rank the checkpoint
lacks takes a copy of rank ``r % world_size``'s pools with random streams of its own. Only rank 0 writes, after
gathering the other ranks' parts and checking that every rank holds the same weights.

The files: ``checkpoints/step_NNNNNN.pt``, written atomically (a temporary name, fsync, rename), and
``checkpoints/last.pt``, a hard link to the newest one (a copy where links are not possible); the newest ``keep``
step files are kept. ``--resume`` reads ``last.pt``; when its bytes cannot be read (truncated, garbage), it falls
back to the newest step file that reads, and says so.

A checkpoint is written only from a whole state: the loop marks the spans where the state is half changed (a
step between the optimizer updates and the counters, an epoch's end between the schedulers and the epoch
counter) with :meth:`Checkpointer.unsaveable`, and an interruption inside one saves nothing.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cyclegan_cli.atomic import atomic_path
from cyclegan_cli.errors import CycError, UsageError, WeightsError, first_line
from cyclegan_cli.models.run_folder import RunFolder
from cyclegan_cli.models.weights import CHECKPOINT_FORMAT
from cyclegan_cli.training import distributed
from cyclegan_cli.training.config import saved_config

if TYPE_CHECKING:
    from cyclegan_cli.training.state import TrainState

CHECKPOINT_VERSION = 1
MODEL_NAMES = ("G_AB", "G_BA", "D_A", "D_B")


class TrainingDiverged(CycError):
    """A loss or a weight became NaN or infinite: the run stops and the last good checkpoint is kept.

    Raised by the loop (a loss) and by :func:`save_checkpoint` (it never writes non-finite weights)."""

    exit_code = 1


# --- writing ------------------------------------------------------------------------------------------------


def rng_state() -> dict:
    """This process's python, torch (and CUDA) random states."""
    rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def rank_part(s: TrainState) -> dict:
    """What differs between ranks: the replay pools and the random states."""
    return {"pools": {"A": s.pool_A.state_dict(), "B": s.pool_B.state_dict()}, "rng": rng_state()}


def checkpoint_dict(s: TrainState, extra_config: dict, skipped: list[str], parts: list[dict] | None = None) -> dict:
    """The checkpoint of ``s``; ``parts``: every rank's :func:`rank_part` (rank 0's first) when several train."""
    own = parts[0] if parts else rank_part(s)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": {**saved_config(s.config), **extra_config},
        "models": {name: getattr(s, name).state_dict() for name in MODEL_NAMES},
        "optimizers": {"G": s.opt_G.state_dict(), "D": s.opt_D.state_dict()},
        "schedulers": {"G": s.sched_G.state_dict(), "D": s.sched_D.state_dict()},
        "scaler": s.scaler.state_dict(),
        "pools": own["pools"],
        "rng": own["rng"],
        "epoch": s.epoch,
        "batch_in_epoch": s.batch_in_epoch,
        "step": s.step,
        "elapsed_s": s.elapsed_s,
        "skipped": list(skipped),
        "world_size": len(parts) if parts else 1,
    }
    if parts:
        payload["ranks"] = [own, *parts[1:]]  # rank 0's tensors are the top-level ones: torch.save stores them once
    return payload


def _params_finite(s: TrainState) -> bool:
    return all(bool(torch.isfinite(p).all()) for name in MODEL_NAMES for p in getattr(s, name).parameters())


def _not_finite(s: TrainState, run_dir: Path) -> TrainingDiverged:
    return TrainingDiverged(
        f"the weights hold NaN or infinite values at step {s.step}: not saved; "
        f"the last good checkpoint in {RunFolder(run_dir).checkpoints} is kept (try a lower --lr)"
    )


def save_checkpoint(
    s: TrainState, run_dir: Path, extra_config: dict, skipped: list[str], keep: int, parts: list[dict] | None = None
) -> Path:
    """Write ``step_XXXXXX.pt`` atomically, point ``last.pt`` at it, keep the newest ``keep`` step files.
    ``parts``: every rank's :func:`rank_part` when several ranks train (rank 0 writes)."""
    if not _params_finite(s):
        raise _not_finite(s, run_dir)
    run = RunFolder(run_dir)
    path = run.step_checkpoint(s.step)
    payload = checkpoint_dict(s, extra_config, skipped, parts)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
    with atomic_path(run.last_checkpoint) as tmp:
        try:
            os.link(path, tmp)  # same bytes, no second copy
        except OSError:
            shutil.copyfile(path, tmp)
    for old in run.step_checkpoints()[: -max(1, keep)]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    return path


class Checkpointer:
    """Saves the run's state and remembers the newest checkpoint on disk (for the messages that name it).

    ``saved_step``: the step of the checkpoint already on disk (the one resumed from), None for a new run.
    ``ranks``: this process's place (:mod:`cyclegan_cli.training.distributed`); when several ranks train, every rank
    calls :meth:`save` at the same step, rank 0 gathers the others' parts and writes while they wait; ``warn``
    (rank 0) hears of unreadable images that only another rank met; ``on_save``, where set, is called before each
    checkpoint is written (the log ends its row there).
    """

    def __init__(
        self,
        run_dir: Path,
        extra_config: dict,
        skipped: dict[str, str],
        keep: int,
        path: Path | None,
        saved_step: int | None,
        elapsed_s: float,
        ranks: distributed.Ranks,
        warn: Callable[[str], None] | None = None,
    ):
        self.run_dir, self.extra_config, self.skipped, self.keep = run_dir, extra_config, skipped, keep
        self.path = path or RunFolder(run_dir).last_checkpoint  # the newest checkpoint
        self.step = saved_step  # its step; None: nothing written yet
        self.busy_with: str | None = None  # what is half done while the state must not be saved
        self.elapsed_before = elapsed_s  # training time of the run's earlier sessions
        self.started = time.perf_counter()
        self.ranks, self.warn = ranks, warn
        self.on_save: Callable[[], None] | None = None  # called before each checkpoint is written

    @property
    def saveable(self) -> bool:
        return self.busy_with is None

    @contextlib.contextmanager
    def unsaveable(self, what: str) -> Iterator[None]:
        """The block changes the state in more than one place: if it raises (Ctrl-C), the state is half changed
        and :meth:`save` refuses it, so the last checkpoint stays as it was; after the block it is whole again."""
        self.busy_with = what
        yield
        self.busy_with = None

    def save(self, s: TrainState) -> Path:
        """Write a checkpoint of ``s`` unless the newest one is already of this step; return the newest."""
        if not self.saveable:
            raise RuntimeError(f"the training state is half changed ({self.busy_with}): it cannot be saved")
        s.elapsed_s = self.elapsed_before + time.perf_counter() - self.started
        if self.step != s.step:
            if self.on_save is not None:  # metrics.csv's row ends at the checkpoint's step
                self.on_save()
            if self.ranks.alone:
                self.path = save_checkpoint(s, self.run_dir, self.extra_config, list(self.skipped), self.keep)
            else:
                self.path = self._save_together(s)
            self.step = s.step
        return self.path

    def _save_together(self, s: TrainState) -> Path:
        """Every rank: its part to rank 0; rank 0: check the weights agree, write; the others wait for it."""
        ranks = self.ranks
        if not _params_finite(s):  # the same weights on every rank: the same answer everywhere
            raise distributed.reported(ranks, _not_finite(s, self.run_dir))
        mine = {
            "part": rank_part(s),
            "skipped": dict(self.skipped),
            "fingerprint": distributed.fingerprint(getattr(s, name) for name in MODEL_NAMES),
        }
        gathered = distributed.gather(ranks, mine)

        def write() -> None:
            if gathered is None:
                return
            for rank, theirs in enumerate(gathered[1:], 1):
                if not torch.equal(theirs["fingerprint"], mine["fingerprint"]):
                    raise CycError(
                        f"rank {rank}'s weights differ from rank 0's at step {s.step}: the ranks no longer train "
                        f"one model (a bug; please report it); not saved, {self.kept_text()}"
                    )
                for path, reason in theirs["skipped"].items():
                    if path not in self.skipped:
                        self.skipped[path] = reason
                        if self.warn is not None:
                            self.warn(f"{reason} (skipped, on rank {rank})")
            parts = [theirs["part"] for theirs in gathered]
            save_checkpoint(s, self.run_dir, self.extra_config, list(self.skipped), self.keep, parts)

        distributed.agree(ranks, write)  # the other ranks wait here while rank 0 writes
        return RunFolder(self.run_dir).step_checkpoint(s.step)

    def kept_text(self) -> str:
        """What remains on disk, for a message about a run that stops without saving."""
        if self.step is None:
            return "no checkpoint was written"
        return f"the last good checkpoint {self.path} (step {self.step}) is kept"


# --- reading and resuming -----------------------------------------------------------------------------------


@dataclass
class Resume:
    """The checkpoint a resumed run continues from."""

    path: Path
    payload: dict

    @property
    def step(self) -> int:
        return self.payload["step"]

    @property
    def epoch(self) -> int:
        return self.payload["epoch"]


def _read(path: Path) -> dict:
    """A cyc training checkpoint from ``path``: WeightsError when its bytes do not load, UsageError when they load
    but are something else."""
    from cyclegan_cli.models.weights import torch_load  # one place that turns bad bytes into a one-line error

    payload = torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT or "optimizers" not in payload:
        raise UsageError(f"--resume: {path} is not a resumable cyc training checkpoint")
    return payload


def _reason(error: Exception, path: Path) -> str:
    """Why a file did not load, short: without its name and the low-level exception text in parentheses."""
    text = str(error).removeprefix(f"{path}: ")
    return text[: text.index(" (")] if text.endswith(")") and " (" in text else text


def load_checkpoint(run_dir: Path, warn: Callable[[str], None] | None = None) -> Resume:
    """The checkpoint to resume ``run_dir`` from: ``checkpoints/last.pt``, or where its bytes cannot be read, the
    newest ``step_*.pt`` that can (``warn`` gets a one-line note naming both). Its layout is checked here, so a
    damaged one is a one-line error naming the file, never a KeyError later."""
    run = RunFolder(run_dir)
    last = run.last_checkpoint
    if not run_dir.is_dir():
        raise UsageError(f"--resume: no run folder {run_dir} (check --name and --out)")
    if not last.is_file():
        raise UsageError(f"--resume: {run_dir} has no checkpoints/last.pt to resume from")
    try:
        return _whole(last)
    except (WeightsError, UsageError) as damaged:
        why = _reason(damaged, last)
    candidates = list(reversed(run.step_checkpoints()))  # newest first
    resume, passed_over = None, []
    for path in candidates:
        try:
            resume = _whole(path)
            break
        except (WeightsError, UsageError):
            passed_over.append(path)
    if resume is None:
        if candidates:
            tried = f"none of its {len(candidates)} checkpoints/step_*.pt files is whole either"
        else:
            tried = "there is no checkpoints/step_*.pt to fall back on"
        raise WeightsError(f"--resume: {last} is damaged ({why}) and {tried}: the run cannot be resumed")
    for path in passed_over:  # out of the way of --keep's rotation, which would count them as the newest
        path.rename(path.with_name(path.name + ".damaged"))
    if warn is not None:
        renamed = f" ({len(passed_over)} damaged newer step files renamed *.damaged)" if passed_over else ""
        warn(f"{last} is damaged ({why}); resuming from {resume.path.name} instead{renamed}")
    return resume


def read_checkpoint(path: Path) -> Resume:
    """The checkpoint at ``path``, checked whole (as :func:`load_checkpoint` found it, on another rank)."""
    return _whole(Path(path))


def _whole(path: Path) -> Resume:
    """A checkpoint whose bytes read and whose layout is complete, or WeightsError / UsageError."""
    payload = _read(path)
    check_layout(payload, path)
    return Resume(path, payload)


def check_layout(payload: dict, path: Path) -> None:
    """The parts of a checkpoint that resuming reads must be there, with the right kinds of values."""
    problems = []
    for key in ("config", "models", "optimizers", "schedulers", "pools", "rng"):
        if not isinstance(payload.get(key), dict):
            problems.append(f"no {key}" if key not in payload else f"{key} is {type(payload[key]).__name__}")
    for key in ("epoch", "batch_in_epoch", "step"):
        value = payload.get(key)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            problems.append(f"no {key}" if key not in payload else f"{key} is {value!r}")
    parts = payload.get("ranks")
    if parts is not None and not (
        isinstance(parts, list)
        and parts
        and all(
            isinstance(p, dict) and isinstance(p.get("pools"), dict) and isinstance(p.get("rng"), dict) for p in parts
        )
    ):
        problems.append("ranks is not a list of each rank's pools and random states")
    if problems:
        raise WeightsError(f"{path}: parts missing or wrong: {', '.join(problems)}")


def saved_world(payload: dict) -> int:
    """How many ranks wrote a checkpoint (1 for one process, and for checkpoints older than distributed runs)."""
    parts = payload.get("ranks")
    return len(parts) if isinstance(parts, list) and parts else 1


def restore_state(s: TrainState, ckpt: dict, source: Path | str = "the checkpoint", rank: int = 0) -> None:
    """Put a checkpoint's models, optimizers, schedulers, pools, random states and position into ``s``: for rank
    ``rank``, its own part of a checkpoint of several ranks; a rank the checkpoint lacks takes a copy of rank
    ``rank % world_size``'s pools, with random streams of its own."""
    from cyclegan_cli.training.data import derive_seed

    try:
        parts = ckpt.get("ranks") or [{"pools": ckpt["pools"], "rng": ckpt["rng"]}]
        part = parts[rank % len(parts)]
        for name in MODEL_NAMES:
            getattr(s, name).load_state_dict(ckpt["models"][name], strict=True)
        s.opt_G.load_state_dict(ckpt["optimizers"]["G"])
        s.opt_D.load_state_dict(ckpt["optimizers"]["D"])
        s.sched_G.load_state_dict(ckpt["schedulers"]["G"])
        s.sched_D.load_state_dict(ckpt["schedulers"]["D"])
        if ckpt.get("scaler"):
            s.scaler.load_state_dict(ckpt["scaler"])
        s.pool_A.load_state_dict(part["pools"]["A"], s.device, s.channels_last)
        s.pool_B.load_state_dict(part["pools"]["B"], s.device, s.channels_last)
        python_state = part["rng"]["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        torch.set_rng_state(part["rng"]["torch"])
        cuda = part["rng"].get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        s.epoch, s.batch_in_epoch, s.step = int(ckpt["epoch"]), int(ckpt["batch_in_epoch"]), int(ckpt["step"])
        s.elapsed_s = float(ckpt.get("elapsed_s", 0.0))
        if rank >= len(parts):  # a rank the checkpoint did not have: the pools' swaps its own from here
            s.pool_A.g.manual_seed(derive_seed(s.config.seed, 1, rank, s.step))
            s.pool_B.g.manual_seed(derive_seed(s.config.seed, 2, rank, s.step))
    except torch.cuda.OutOfMemoryError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        reason = first_line(exc, 200, named=True)
        raise WeightsError(f"--resume: {source}: cannot restore the training state from it ({reason})") from None
