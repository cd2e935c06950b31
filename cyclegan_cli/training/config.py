"""The settings of a training run, without torch: :class:`TrainConfig`, their checks, and what a resumed run keeps.

``cyc train`` takes its options' defaults from the fields here (one copy of each), so ``cyc train --help`` needs no
torch. A resumed run is a continuation of the one in its checkpoint: it keeps the settings that shape what the run
learns (architecture, optimisation, data transforms, seed) and may change only those in :data:`RESUME_MAY_CHANGE`
(how long it trains, where, how fast, what it logs). :func:`merge_resume_config` applies that rule, after
:func:`check_saved_config` has checked the checkpoint's settings; :func:`nothing_to_train` says when a resumed run
has no step left.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cyclegan_cli.errors import UsageError, WeightsError
from cyclegan_cli.models.run_folder import RUNS_DIR

GAN_MODES = ("lsgan", "vanilla")
# Settings added after the first runs were saved, with the value those runs trained with: a checkpoint without
# one resumes with that value, and a resume that asks for another is refused like any other fixed setting.
ADDED_LATER = {"gan_mode": "lsgan"}


DEFAULT_TIMEOUT_S = 30 * 60.0  # --dist-timeout's default: gloo's, for NCCL too (PyTorch's is 10 min there)


@dataclass
class TrainConfig:
    """Every setting of a run (a resumed run may change only those in :data:`RESUME_MAY_CHANGE`)."""

    # data
    dataroot: str | None = None  # holds trainA/ + trainB/ (or train/A + train/B)
    a: str | None = None  # explicit domain folders (override DATAROOT's)
    b: str | None = None
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    batch_size: int = 1
    workers: int | None = None  # None: training_data.default_workers(device, local_world)
    # run folder
    name: str = "run"
    out: str = RUNS_DIR
    # models
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_layers_d: int = 3
    # optimisation
    epochs: int = 100
    epochs_decay: int = 100
    max_steps: int | None = None
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_cyc: float = 10.0
    lambda_id: float = 0.5
    gan_mode: str = "lsgan"  # the adversarial loss: lsgan (the paper's, squared error) or vanilla (BCE)
    pool_size: int = 50
    seed: int = 0
    # logging and checkpoints
    save_every: int = 1000
    sample_every: int = 500
    log_every: int = 50
    keep: int = 3
    # quality on held-out images (testA/, testB/): steps between evaluations; None: once an epoch (off for a run
    # shorter than one); 0: off
    eval_every: int | None = None
    eval_images: int = 200  # held-out images a domain, at most
    resume: bool = False
    # speed
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool | None = None  # None: on CUDA only (measured slower on CPUs, in fp32 and bf16 alike)
    # presentation and hooks (not saved)
    progress: bool = True
    tensorboard: bool = True
    dist_timeout: float | None = None  # seconds a rank waits at a collective under torchrun (None: PyTorch's)
    on_step: Callable[[Any], None] | None = field(default=None, repr=False, compare=False)  # gets the TrainState

    @property
    def total_epochs(self) -> int:
        """The run's length: the epochs at the initial learning rate, then those of its decay."""
        return self.epochs + self.epochs_decay


# Settings a resumed run may change; everything else is fixed by the checkpoint (architecture, optimisation, data
# transforms, seed), because changing it would make the run something other than a continuation.
RESUME_MAY_CHANGE = frozenset(
    {
        "dataroot",
        "a",
        "b",
        "name",
        "out",
        "workers",
        "epochs",
        "epochs_decay",
        "max_steps",
        "save_every",
        "sample_every",
        "log_every",
        "keep",
        "eval_every",
        "eval_images",
        "resume",
        "device",
        "precision",
        "compile",
        "channels_last",
        "progress",
        "tensorboard",
        "on_step",
        "dist_timeout",
    }
)
NOT_SAVED = ("on_step", "resume", "progress", "dist_timeout")


def saved_config(config: TrainConfig) -> dict:
    """The settings that ``config.json`` and checkpoints record (not the hook and the presentation flags)."""
    return {k: v for k, v in asdict(config).items() if k not in NOT_SAVED}


def check_config(c: TrainConfig) -> None:
    """Settings no run can train with are a usage error before any work (the API's calls meet these checks too,
    not only the command line's ranges)."""
    if c.crop_size < 4 or c.crop_size % 4:
        raise UsageError(
            f"--crop-size {c.crop_size}: must be a positive multiple of 4 (the generator downsamples twice)"
        )
    if c.load_size < c.crop_size:
        raise UsageError(f"--load-size {c.load_size} is smaller than --crop-size {c.crop_size}")
    positive = {
        "batch_size": c.batch_size,
        "save_every": c.save_every,
        "sample_every": c.sample_every,
        "log_every": c.log_every,
        "keep": c.keep,
        "ngf": c.ngf,
        "ndf": c.ndf,
        "n_layers_d": c.n_layers_d,
    }
    for name, value in positive.items():
        if value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
    if c.epochs < 0 or c.epochs_decay < 0 or c.total_epochs < 1:
        raise UsageError("--epochs plus --epochs-decay must be at least 1")
    if c.max_steps is not None and c.max_steps < 1:
        raise UsageError(f"--max-steps must be at least 1 (got {c.max_steps})")
    if c.n_blocks < 1 or c.pool_size < 0 or (c.workers is not None and c.workers < 0):
        raise UsageError("--n-blocks must be at least 1, --pool-size and --workers at least 0")
    if not (c.lr > 0 and math.isfinite(c.lr)):
        raise UsageError(f"--lr must be a positive number (got {c.lr})")
    if c.eval_every is not None and c.eval_every < 0:
        raise UsageError(f"--eval-every must be at least 0 (0: off; got {c.eval_every})")
    if c.eval_images < 2:
        raise UsageError(f"--eval-images must be at least 2 (KID compares sets of images; got {c.eval_images})")
    if c.gan_mode not in GAN_MODES:
        raise UsageError(f"--gan-mode {c.gan_mode}: use {' or '.join(GAN_MODES)}")
    if c.dist_timeout is not None and not (c.dist_timeout > 0 and math.isfinite(c.dist_timeout)):
        raise UsageError(f"--dist-timeout must be a positive number of seconds (got {c.dist_timeout})")


# --- resuming -------------------------------------------------------------------------------------------------


def _fits(value, annotation: str) -> bool | None:
    """Whether ``value`` is of the field type ``annotation`` ("int", "str | None", ...); None: a type not saved."""
    kinds = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "None": lambda v: v is None,
    }
    names = [name.strip() for name in annotation.split("|")]
    if not all(name in kinds for name in names):
        return None
    return any(kinds[name](value) for name in names)


def check_saved_config(config: TrainConfig, saved: dict, source: Path | str) -> None:
    """A checkpoint's settings must hold every fixed setting, and every setting it holds must have its type."""
    problems = []
    for f in fields(config):
        if f.name in NOT_SAVED:
            continue
        if f.name not in saved:
            if f.name not in RESUME_MAY_CHANGE:  # a setting that may change falls back to the one given
                problems.append(f"no {f.name}")
            continue
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if _fits(saved[f.name], annotation) is False:
            problems.append(f"{f.name} is {saved[f.name]!r}, not {annotation}")
    if problems:
        raise WeightsError(f"--resume: {source} holds damaged settings: {'; '.join(problems)}")


def merge_resume_config(
    config: TrainConfig, saved: dict, explicit: set[str] | None, source: Path | str = "the checkpoint"
) -> TrainConfig:
    """The saved settings, with the ones the user gave again: those that may change replace the saved ones;
    a fixed one (architecture, optimisation, transforms, seed) that differs is a usage error."""
    saved = {**ADDED_LATER, **saved}
    check_saved_config(config, saved, source)
    explicit = {f.name for f in fields(config)} if explicit is None else set(explicit)
    merged = {}
    for f in fields(config):
        given = getattr(config, f.name)
        if f.name not in saved or f.name in NOT_SAVED or f.name in ("name", "out"):  # where the run was found
            merged[f.name] = given
        elif f.name in explicit and f.name in RESUME_MAY_CHANGE:
            merged[f.name] = given
        elif f.name in explicit and given != saved[f.name]:
            option = "--" + f.name.replace("_", "-")
            raise UsageError(
                f"--resume: {option} {given} differs from the run's {saved[f.name]}; a resumed run keeps its "
                "architecture, optimisation and data settings (start a new run with another --name to change them)"
            )
        else:
            merged[f.name] = saved[f.name]
    merged["resume"] = True
    return replace(config, **merged)


def nothing_to_train(config: TrainConfig, step: int, epoch: int) -> str | None:
    """Why a run resumed at ``step`` in ``epoch`` (0-based) has no step left to train (a one-line note), or None
    when it has."""
    if epoch >= config.total_epochs:
        return (
            f"nothing to train: the run is at step {step}, all {config.total_epochs} epochs done "
            f"(--epochs {config.epochs} + --epochs-decay {config.epochs_decay}; raise either to continue)"
        )
    if config.max_steps is not None and step >= config.max_steps:
        return (
            f"nothing to train: the run is at step {step}, --max-steps {config.max_steps} "
            "(raise --max-steps to continue)"
        )
    return None
