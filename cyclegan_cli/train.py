"""``cyc train``: the canonical CycleGAN training loop, resumable bit for bit.

Read it top to bottom: :class:`TrainConfig` holds every setting; :func:`build_state` makes the models, optimizers,
schedulers and replay pools; :func:`train_step` is one iteration of the canonical algorithm (the generators'
step, then the discriminators'); :func:`train` is the loop around it: data, logging, samples, checkpoints.

The algorithm (Zhu et al. 2017 and the official implementation): LSGAN (MSE) adversarial losses, cycle L1 x
``lambda_cyc`` (10), identity L1 x ``lambda_id * lambda_cyc`` (5), discriminator loss (real + fake) / 2 on
images drawn from a replay pool of 50, Adam 2e-4 betas (0.5, 0.999) with one optimizer for both generators and
one for both discriminators, lr constant for ``epochs`` then linear decay over ``epochs_decay``, stepped per
epoch; weights initialised N(0, 0.02).

Names: ``G_AB`` translates A into B and ``D_B`` judges B images (real B vs G_AB's fakes); ``G_BA`` and ``D_A``
the other way. The losses logged: ``G_AB``/``G_BA`` adversarial, ``cyc_A`` = |G_BA(G_AB(A)) - A|,
``cyc_B``, ``idt_A`` = |G_BA(A) - A|, ``idt_B``, ``D_A``, ``D_B`` (weighted as they enter the sums).

A checkpoint is a plain dict of tensors and primitives (``torch.load(weights_only=True)`` reads it): models,
optimizers, schedulers, grad scaler, replay pools with their random state, the python and torch random states,
and the position in the data (epoch, batch within the epoch, global step). The data order and every sample's
crop and flip derive from ``(seed, epoch, index)`` (see :mod:`cyclegan_cli.data`), so N steps, a resume and
N more steps give on the CPU exactly the weights of 2N steps in one go.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.markup import escape
from torch import nn

from cyclegan_cli import data
from cyclegan_cli.atomic import atomic_path, atomic_write_bytes
from cyclegan_cli.errors import CycError, UsageError
from cyclegan_cli.framing import to_uint8_frames
from cyclegan_cli.models import NLayerDiscriminator, ResnetGenerator, init_weights
from cyclegan_cli.weights import CHECKPOINT_FORMAT, GeneratorInfo, save_generator

LOSS_NAMES = ("G_AB", "G_BA", "cyc_A", "cyc_B", "idt_A", "idt_B", "D_A", "D_B")
CHECKPOINT_VERSION = 1


class TrainingDiverged(CycError):
    """A loss became NaN or infinite: the run stops and the last good checkpoint is kept."""

    exit_code = 1


@dataclass
class TrainConfig:
    # data
    dataroot: str | None = None  # holds trainA/ + trainB/ (or train/A + train/B)
    a: str | None = None  # explicit domain folders (override DATAROOT's)
    b: str | None = None
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    batch_size: int = 1
    workers: int | None = None  # None: data.default_workers(device)
    # run folder
    name: str = "run"
    out: str = "runs"
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
    pool_size: int = 50
    seed: int = 0
    # logging and checkpoints
    save_every: int = 1000
    sample_every: int = 500
    log_every: int = 50
    keep: int = 3
    resume: bool = False
    # speed
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool | None = None  # None: on CUDA only (measured slower on CPUs, in fp32 and bf16 alike)
    # presentation and hooks (not saved)
    progress: bool = True
    tensorboard: bool = True
    on_step: Callable[[TrainState], None] | None = field(default=None, repr=False, compare=False)


# Settings a resumed run may change; everything else is fixed by the checkpoint (architecture, optimisation, data
# transforms, seed), because changing it would make the run something other than a continuation.
RESUME_MAY_CHANGE = frozenset(
    {"dataroot", "a", "b", "name", "out", "workers", "epochs", "epochs_decay", "max_steps", "save_every",
     "sample_every", "log_every", "keep", "resume", "device", "precision", "compile", "channels_last",
     "progress", "tensorboard", "on_step"}
)  # fmt: skip
NOT_SAVED = ("on_step", "resume", "progress")


def saved_config(config: TrainConfig) -> dict:
    return {k: v for k, v in asdict(config).items() if k not in NOT_SAVED}


# --- the models, optimizers and replay pools ----------------------------------------------------------------


class ImagePool:
    """The canonical replay buffer: until full, return what comes in; then half the time swap it with an old one."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.g = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach().split(1):
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif torch.rand((), generator=self.g) > 0.5:
                i = int(torch.randint(0, self.size, (1,), generator=self.g))
                out.append(self.images[i])
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out)

    def state_dict(self) -> dict:
        stacked = torch.cat(self.images).cpu() if self.images else torch.empty(0)
        return {"images": stacked, "rng": self.g.get_state()}

    def load_state_dict(self, state: dict, device: torch.device, channels_last: bool) -> None:
        images = state["images"].to(device)
        if channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        self.images = list(images.split(1)) if images.numel() else []
        self.g.set_state(state["rng"])


@dataclass
class TrainState:
    """Everything the step changes, plus where the loop is."""

    config: TrainConfig
    device: torch.device
    G_AB: nn.Module
    G_BA: nn.Module
    D_A: nn.Module
    D_B: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    sched_G: torch.optim.lr_scheduler.LRScheduler
    sched_D: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    pool_A: ImagePool  # fakes of domain A (from G_BA), judged by D_A
    pool_B: ImagePool
    amp_dtype: torch.dtype | None
    channels_last: bool
    forward: dict[str, Callable]  # the modules as the step calls them (compiled with --compile)
    epoch: int = 0  # 0-based; the epoch being trained
    batch_in_epoch: int = 0  # batches of this epoch already trained
    step: int = 0  # iterations done in all
    elapsed_s: float = 0.0  # training time over all sessions of the run

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


def lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """The canonical 'linear' policy: 1 for ``epochs`` epochs, then down by 1/(epochs_decay+1) each epoch."""
    return lambda epoch: 1.0 - max(0, epoch + 1 - config.epochs) / float(config.epochs_decay + 1)


def build_state(config: TrainConfig, device: str = "cpu", precision: str = "fp32") -> TrainState:
    """The models (initialised from ``config.seed``), optimizers, schedulers and pools, ready for :func:`train_step`."""
    dev = torch.device(device)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    G_AB = init_weights(ResnetGenerator(config.ngf, config.n_blocks))
    G_BA = init_weights(ResnetGenerator(config.ngf, config.n_blocks))
    D_A = init_weights(NLayerDiscriminator(config.ndf, config.n_layers_d))
    D_B = init_weights(NLayerDiscriminator(config.ndf, config.n_layers_d))
    channels_last = config.channels_last
    if channels_last is None:
        channels_last = dev.type == "cuda"
    models = [G_AB, G_BA, D_A, D_B]
    for model in models:
        model.to(dev)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
    fused = dev.type in ("cpu", "cuda") or None
    betas = (config.beta1, 0.999)
    opt_G = torch.optim.Adam([*G_AB.parameters(), *G_BA.parameters()], lr=config.lr, betas=betas, fused=fused)
    opt_D = torch.optim.Adam([*D_A.parameters(), *D_B.parameters()], lr=config.lr, betas=betas, fused=fused)
    sched_G = torch.optim.lr_scheduler.LambdaLR(opt_G, lr_factor(config))
    sched_D = torch.optim.lr_scheduler.LambdaLR(opt_D, lr_factor(config))
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    amp_dtype = None if precision == "fp32" else {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    forward = {"G_AB": G_AB, "G_BA": G_BA, "D_A": D_A, "D_B": D_B}
    if config.compile:
        # static shapes: a step has few (batch n and 2n, a last smaller batch), each compiled once
        forward = {name: torch.compile(model, dynamic=False) for name, model in forward.items()}
    return TrainState(
        config, dev, G_AB, G_BA, D_A, D_B, opt_G, opt_D, sched_G, sched_D, scaler,
        ImagePool(config.pool_size, data.derive_seed(config.seed, 1)),
        ImagePool(config.pool_size, data.derive_seed(config.seed, 2)),
        amp_dtype, channels_last, forward,
    )  # fmt: skip


def _set_requires_grad(models: tuple[nn.Module, ...], flag: bool) -> None:
    for model in models:
        for p in model.parameters():
            p.requires_grad_(flag)


def _gan_loss(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """LSGAN: mean squared distance of the patch scores to 1 (real) or 0 (fake)."""
    prediction = prediction.float()
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def train_step(s: TrainState, real_A: torch.Tensor, real_B: torch.Tensor) -> torch.Tensor:
    """One canonical iteration on a batch: the generators' step, then the discriminators'. Returns the 8 losses."""
    c, f = s.config, s.forward
    n = real_A.shape[0]

    # generators: fool the discriminators, cycle back, leave the target domain alone (identity)
    _set_requires_grad((s.D_A, s.D_B), False)  # the G step needs no gradient for D's weights
    with s.autocast():
        # (outputs in fp32 under autocast too: the networks always see one input dtype, compile once)
        fake_B = f["G_AB"](real_A).float()
        fake_A = f["G_BA"](real_B).float()
        rec_A = f["G_BA"](fake_B).float()
        rec_B = f["G_AB"](fake_A).float()
        loss_G_AB = _gan_loss(f["D_B"](fake_B), True)
        loss_G_BA = _gan_loss(f["D_A"](fake_A), True)
        loss_cyc_A = F.l1_loss(rec_A, real_A) * c.lambda_cyc
        loss_cyc_B = F.l1_loss(rec_B, real_B) * c.lambda_cyc
        if c.lambda_id > 0:
            loss_idt_A = F.l1_loss(f["G_BA"](real_A).float(), real_A) * (c.lambda_cyc * c.lambda_id)
            loss_idt_B = F.l1_loss(f["G_AB"](real_B).float(), real_B) * (c.lambda_cyc * c.lambda_id)
        else:
            loss_idt_A = loss_idt_B = torch.zeros((), device=s.device)
        loss_G = loss_G_AB + loss_G_BA + loss_cyc_A + loss_cyc_B + loss_idt_A + loss_idt_B
    s.opt_G.zero_grad(set_to_none=True)
    s.scaler.scale(loss_G).backward()
    s.scaler.step(s.opt_G)

    # discriminators: real -> 1, a fake from the replay pool -> 0, (real + fake) / 2 each
    _set_requires_grad((s.D_A, s.D_B), True)
    old_fake_B = s.pool_B.query(fake_B.detach())
    old_fake_A = s.pool_A.query(fake_A.detach())
    with s.autocast():
        pred_B = f["D_B"](torch.cat([real_B, old_fake_B]))
        loss_D_B = (_gan_loss(pred_B[:n], True) + _gan_loss(pred_B[n:], False)) * 0.5
        pred_A = f["D_A"](torch.cat([real_A, old_fake_A]))
        loss_D_A = (_gan_loss(pred_A[:n], True) + _gan_loss(pred_A[n:], False)) * 0.5
    s.opt_D.zero_grad(set_to_none=True)
    s.scaler.scale(loss_D_A + loss_D_B).backward()
    s.scaler.step(s.opt_D)
    s.scaler.update()
    losses = (loss_G_AB, loss_G_BA, loss_cyc_A, loss_cyc_B, loss_idt_A, loss_idt_B, loss_D_A, loss_D_B)
    return torch.stack([loss.detach().float() for loss in losses])


# --- checkpoints --------------------------------------------------------------------------------------------


def checkpoint_dict(s: TrainState, extra_config: dict, skipped: list[str]) -> dict:
    rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": {**saved_config(s.config), **extra_config},
        "models": {name: getattr(s, name).state_dict() for name in ("G_AB", "G_BA", "D_A", "D_B")},
        "optimizers": {"G": s.opt_G.state_dict(), "D": s.opt_D.state_dict()},
        "schedulers": {"G": s.sched_G.state_dict(), "D": s.sched_D.state_dict()},
        "scaler": s.scaler.state_dict(),
        "pools": {"A": s.pool_A.state_dict(), "B": s.pool_B.state_dict()},
        "rng": rng,
        "epoch": s.epoch,
        "batch_in_epoch": s.batch_in_epoch,
        "step": s.step,
        "elapsed_s": s.elapsed_s,
        "skipped": list(skipped),
    }


def restore_state(s: TrainState, ckpt: dict) -> None:
    """Put a checkpoint's models, optimizers, schedulers, pools, random states and position into ``s``."""
    for name in ("G_AB", "G_BA", "D_A", "D_B"):
        getattr(s, name).load_state_dict(ckpt["models"][name], strict=True)
    s.opt_G.load_state_dict(ckpt["optimizers"]["G"])
    s.opt_D.load_state_dict(ckpt["optimizers"]["D"])
    s.sched_G.load_state_dict(ckpt["schedulers"]["G"])
    s.sched_D.load_state_dict(ckpt["schedulers"]["D"])
    if ckpt.get("scaler"):
        s.scaler.load_state_dict(ckpt["scaler"])
    s.pool_A.load_state_dict(ckpt["pools"]["A"], s.device, s.channels_last)
    s.pool_B.load_state_dict(ckpt["pools"]["B"], s.device, s.channels_last)
    python_state = ckpt["rng"]["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    torch.set_rng_state(ckpt["rng"]["torch"])
    if "cuda" in ckpt["rng"] and torch.cuda.is_available() and len(ckpt["rng"]["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    s.epoch, s.batch_in_epoch, s.step = int(ckpt["epoch"]), int(ckpt["batch_in_epoch"]), int(ckpt["step"])
    s.elapsed_s = float(ckpt.get("elapsed_s", 0.0))


def _params_finite(s: TrainState) -> bool:
    return all(bool(torch.isfinite(p).all()) for m in (s.G_AB, s.G_BA, s.D_A, s.D_B) for p in m.parameters())


def save_checkpoint(s: TrainState, run_dir: Path, extra_config: dict, skipped: list[str], keep: int) -> Path:
    """Write ``step_XXXXXX.pt`` atomically, point ``last.pt`` at it, keep the newest ``keep`` step files."""
    if not _params_finite(s):
        raise TrainingDiverged(
            f"the weights hold NaN or infinite values at step {s.step}: not saved; "
            f"the last good checkpoint in {run_dir / 'checkpoints'} is kept (try a lower --lr)"
        )
    folder = run_dir / "checkpoints"
    path = folder / f"step_{s.step:06d}.pt"
    payload = checkpoint_dict(s, extra_config, skipped)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
    with atomic_path(folder / "last.pt") as tmp:
        try:
            os.link(path, tmp)  # same bytes, no second copy
        except OSError:
            shutil.copyfile(path, tmp)
    for old in sorted(folder.glob("step_*.pt"))[: -max(1, keep)]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    return path


def load_checkpoint(run_dir: Path) -> dict:
    from cyclegan_cli.weights import _torch_load  # one place that turns a bad file into a one-line error

    last = run_dir / "checkpoints" / "last.pt"
    if not run_dir.is_dir():
        raise UsageError(f"--resume: no run folder {run_dir} (check --name and --out)")
    if not last.is_file():
        raise UsageError(f"--resume: {run_dir} has no checkpoints/last.pt to resume from")
    ckpt = _torch_load(last)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "optimizers" not in ckpt:
        raise UsageError(f"--resume: {last} is not a resumable cyc training checkpoint")
    return ckpt


def merge_resume_config(config: TrainConfig, saved: dict, explicit: set[str] | None) -> TrainConfig:
    """The saved settings, with the ones the user gave again: those that may change replace the saved ones;
    a fixed one (architecture, optimisation, transforms, seed) that differs is a usage error."""
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
    return TrainConfig(**merged)


# --- logging: samples, metrics, progress --------------------------------------------------------------------


@torch.no_grad()
def save_samples(s: TrainState, fixed_A: torch.Tensor, fixed_B: torch.Tensor, path: Path) -> None:
    """One PNG: rows of real A | fake B | rec A, then rows of real B | fake A | rec B."""
    from PIL import Image

    with s.autocast():
        A, B = s.to_device(fixed_A), s.to_device(fixed_B)
        fake_B = s.G_AB(A)
        fake_A = s.G_BA(B)
        rec_A, rec_B = s.G_BA(fake_B), s.G_AB(fake_A)
    rows = [torch.cat([x.float() for x in triple], dim=-1) for triple in zip(A, fake_B, rec_A)]
    rows += [torch.cat([x.float() for x in triple], dim=-1) for triple in zip(B, fake_A, rec_B)]
    grid = torch.cat([F.pad(row, (2, 2, 2, 2), value=1.0) for row in rows], dim=-2)
    pixels = to_uint8_frames(grid[None], tuple(grid.shape[-2:]))[0]
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp)


def _fixed_images(files: list[Path], load_size: int, crop_size: int, count: int = 3) -> torch.Tensor:
    from cyclegan_cli.imageio import read_image

    images = []
    for path in files[:count]:
        with contextlib.suppress(CycError):
            images.append(data.center_transform(read_image(path)[0], load_size, crop_size))
    return torch.stack(images) if images else torch.zeros(1, 3, crop_size, crop_size)


class MetricsLog:
    """``metrics.csv`` (one row per ``log_every`` steps, the window's mean losses) and TensorBoard events."""

    COLUMNS = ("step", "epoch", "lr", *LOSS_NAMES, "steps_per_s")

    def __init__(self, run_dir: Path, resume_step: int | None, tensorboard: bool):
        self.path = run_dir / "metrics.csv"
        rows = []
        if resume_step is not None and self.path.is_file():  # drop rows past the checkpoint being resumed
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, self.COLUMNS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
        self.file = open(self.path, "a", newline="")
        self.writer = csv.DictWriter(self.file, self.COLUMNS, extrasaction="ignore")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass
            else:
                self.tb = SummaryWriter(str(run_dir), purge_step=resume_step)

    def write(self, step: int, epoch: int, lr: float, losses: dict[str, float], rate: float) -> None:
        self.writer.writerow({"step": step, "epoch": epoch, "lr": f"{lr:.6g}", "steps_per_s": f"{rate:.3f}",
                              **{k: f"{v:.6f}" for k, v in losses.items()}})  # fmt: skip
        self.file.flush()
        if self.tb is not None:
            for name, value in losses.items():
                self.tb.add_scalar(f"loss/{name}", value, step)
            self.tb.add_scalar("lr", lr, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


class CtrlC:
    """The first Ctrl-C asks the loop to stop after the current step (and save); a second one stops at once."""

    def __init__(self, console):
        self.requested = False
        self.console = console
        self.previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.console.print("[yellow]Ctrl-C: stopping after this step and saving a checkpoint (again: stop now)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _loss_text(losses: dict[str, float]) -> str:
    """The six losses in little room: G (adversarial) AB/BA, cyc A/B, D A/B."""
    return (
        f"G {losses['G_AB']:.3f}/{losses['G_BA']:.3f} cyc {losses['cyc_A']:.3f}/{losses['cyc_B']:.3f} "
        f"D {losses['D_A']:.3f}/{losses['D_B']:.3f}"
    )


def _progress(console, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        TextColumn("{task.fields[rate]} it/s"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )


# --- the run ------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # the run's global step at the end
    steps_run: int  # steps done in this session
    epoch: int  # epochs completed
    total_epochs: int
    seconds: float
    skipped: list[str]
    checkpoint: Path
    weights: list[Path]
    config: TrainConfig


def _check_config(c: TrainConfig) -> None:
    data.check_sizes(c.load_size, c.crop_size)
    positive = {"batch_size": c.batch_size, "save_every": c.save_every, "sample_every": c.sample_every,
                "log_every": c.log_every, "keep": c.keep, "ngf": c.ngf, "ndf": c.ndf, "n_layers_d": c.n_layers_d}  # fmt: skip
    for name, value in positive.items():
        if value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
    if c.epochs < 0 or c.epochs_decay < 0 or c.epochs + c.epochs_decay < 1:
        raise UsageError("--epochs plus --epochs-decay must be at least 1")
    if c.max_steps is not None and c.max_steps < 1:
        raise UsageError(f"--max-steps must be at least 1 (got {c.max_steps})")
    if c.n_blocks < 1 or c.pool_size < 0 or (c.workers is not None and c.workers < 0):
        raise UsageError("--n-blocks must be at least 1, --pool-size and --workers at least 0")
    if not (c.lr > 0 and math.isfinite(c.lr)):
        raise UsageError(f"--lr must be a positive number (got {c.lr})")


def train(config: TrainConfig, explicit: set[str] | None = None, console=None) -> TrainResult:
    """Train (or with ``config.resume``, continue) the run ``config.out/config.name``; see the module docstring.

    ``explicit``: the settings the user gave (the rest come from the checkpoint when resuming; None: all).
    """
    from rich.console import Console

    from cyclegan_cli.devices import has_cxx_compiler, resolve_device, resolve_precision

    console = console or Console(stderr=True, soft_wrap=True)

    # -- the run folder, and the checkpoint to continue from -------------------------------------------------
    run_dir = Path(config.out) / config.name
    ckpt = None
    if config.resume:
        ckpt = load_checkpoint(run_dir)
        config = merge_resume_config(config, ckpt["config"], explicit)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(
            f"{run_dir} already holds a run: continue it with --resume, or choose another --name (or --out)"
        )
    c = config
    _check_config(c)

    # -- data: find both domains and decode every image once, before any work ------------------------------------
    domains = data.scan_domains(c.dataroot, c.a, c.b)
    skipped = {str(path): reason for path, reason in domains.skipped}
    for path, reason in list(skipped.items())[:20]:
        console.print(f"[yellow]warning:[/] {escape(reason)} (skipped)", highlight=False)
    if len(skipped) > 20:
        console.print(f"[yellow]warning:[/] ... and {len(skipped) - 20} more unreadable images (skipped)")
    dataset = data.UnpairedDataset(domains.files_a, domains.files_b, c.load_size, c.crop_size, c.flip, c.seed)
    steps_per_epoch = data.batches_per_epoch(len(dataset), c.batch_size)
    total_epochs = c.epochs + c.epochs_decay

    # -- device, precision, models -------------------------------------------------------------------------------
    device = resolve_device(c.device)
    precision = resolve_precision(c.precision, device)
    if c.compile and device == "cpu" and not has_cxx_compiler():
        raise UsageError("--compile on a CPU needs a C++ compiler (g++ or clang++), and none is installed")
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    workers = data.default_workers(device) if c.workers is None else c.workers
    s = build_state(c, device, precision)
    if ckpt is not None:
        restore_state(s, ckpt)
        del ckpt  # the tensors now live in the models and optimizers
    extra_config = {
        "domain_a": domains.name_a,
        "domain_b": domains.name_b,
        "dir_a": str(domains.dir_a.resolve()),
        "dir_b": str(domains.dir_b.resolve()),
        "images_a": len(domains.files_a),
        "images_b": len(domains.files_b),
    }
    for key in ("dataroot", "a", "b"):  # absolute, so a resumed run finds its data from anywhere
        if getattr(c, key) is not None:
            setattr(c, key, str(Path(getattr(c, key)).resolve()))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "samples").mkdir(exist_ok=True)
    atomic_write_bytes(run_dir / "config.json", (json.dumps({**saved_config(c), **extra_config,
                       "resolved_device": device, "resolved_precision": precision, "workers": workers},
                       indent=2) + "\n").encode())  # fmt: skip
    fixed_A = _fixed_images(domains.files_a, c.load_size, c.crop_size)
    fixed_B = _fixed_images(domains.files_b, c.load_size, c.crop_size)
    metrics = MetricsLog(run_dir, s.step if c.resume else None, c.tensorboard)

    # -- the loop ------------------------------------------------------------------------------------------------
    total_steps = total_epochs * steps_per_epoch if c.max_steps is None else min(c.max_steps, total_epochs * steps_per_epoch)
    start_step, started = s.step, time.perf_counter()
    session_start_elapsed = s.elapsed_s
    last_saved = s.step if c.resume else -1
    checkpoint_path = run_dir / "checkpoints" / "last.pt"
    window: list[torch.Tensor] = []
    step_times: deque[float] = deque(maxlen=20)
    consistent = True  # False while a step is half done: nothing can be saved then
    progress = _progress(console, c.progress and console.is_terminal)

    def save() -> Path:
        nonlocal last_saved, checkpoint_path
        s.elapsed_s = session_start_elapsed + time.perf_counter() - started
        if last_saved != s.step:
            checkpoint_path = save_checkpoint(s, run_dir, extra_config, list(skipped), c.keep)
            last_saved = s.step
        return checkpoint_path

    def done() -> bool:
        return s.epoch >= total_epochs or (c.max_steps is not None and s.step >= c.max_steps)

    try:
        with CtrlC(console) as ctrl_c, progress:
            task = progress.add_task("train", total=total_steps, completed=s.step, epoch=f"{s.epoch + 1}/{total_epochs}",
                                     losses="", rate="-")  # fmt: skip
            while not done():
                loader = data.epoch_loader(dataset, c.batch_size, s.epoch, s.batch_in_epoch, workers,
                                           pin_memory=s.device.type == "cuda")  # fmt: skip
                for batch in loader:
                    # one step
                    t0 = time.perf_counter()
                    consistent = False
                    losses = train_step(s, s.to_device(batch["A"]), s.to_device(batch["B"]))
                    s.step += 1
                    s.batch_in_epoch += 1
                    consistent = True
                    values = losses.tolist()
                    step_times.append(time.perf_counter() - t0)

                    # a loss that is NaN or infinite ends the run; the last checkpoint stays as it was
                    if not all(math.isfinite(v) for v in values):
                        bad = ", ".join(f"{k}={v}" for k, v in zip(LOSS_NAMES, values) if not math.isfinite(v))
                        kept = f"the last good checkpoint {checkpoint_path} (step {last_saved}) is kept" if last_saved >= 0 else "no checkpoint was written"
                        raise TrainingDiverged(
                            f"training diverged at step {s.step} (epoch {s.epoch + 1}): {bad}; stopped, {kept}; "
                            f"try a lower --lr (now {c.lr:g}) or --precision fp32"
                        )  # fmt: skip
                    for line in batch["bad"]:  # images that became unreadable since the scan
                        path, _, reason = line.partition("\t")
                        if path not in skipped:
                            skipped[path] = reason
                            progress.console.print(f"[yellow]warning:[/] {escape(reason)} (skipped)", highlight=False)

                    # progress, metrics.csv / TensorBoard
                    rate = len(step_times) / sum(step_times)
                    named = dict(zip(LOSS_NAMES, values))
                    progress.update(task, completed=s.step, epoch=f"{s.epoch + 1}/{total_epochs}", rate=f"{rate:.2f}",
                                    losses=_loss_text(named))  # fmt: skip
                    window.append(losses)
                    if s.step % c.log_every == 0:
                        mean = torch.stack(window).mean(0).tolist()
                        metrics.write(s.step, s.epoch + 1, s.opt_G.param_groups[0]["lr"], dict(zip(LOSS_NAMES, mean)), rate)
                        window.clear()
                        if c.progress and progress.disable:  # not a terminal (a log file): one line instead of a bar
                            console.print(f"epoch {s.epoch + 1}/{total_epochs} step {s.step}/{total_steps} "
                                          f"{_loss_text(dict(zip(LOSS_NAMES, mean)))} {rate:.2f} it/s", highlight=False)  # fmt: skip
                    if c.on_step is not None:
                        c.on_step(s)
                    if ctrl_c.requested:
                        raise KeyboardInterrupt

                    # samples and checkpoints (at an epoch's end they are written below, once)
                    end_of_epoch = s.batch_in_epoch >= steps_per_epoch
                    if s.step % c.sample_every == 0 and not end_of_epoch:
                        save_samples(s, fixed_A, fixed_B, run_dir / "samples" / f"step_{s.step:06d}.png")
                    if s.step % c.save_every == 0 and not end_of_epoch:
                        save()
                    if done():
                        break

                # the end of an epoch: decay the learning rate, write samples and a checkpoint
                if s.batch_in_epoch >= steps_per_epoch:
                    s.sched_G.step()
                    s.sched_D.step()
                    s.epoch += 1
                    s.batch_in_epoch = 0
                    save_samples(s, fixed_A, fixed_B, run_dir / "samples" / f"step_{s.step:06d}.png")
                    save()
            save()
    except KeyboardInterrupt:
        if consistent:
            path = save()
            console.print(escape(f"Interrupted at step {s.step}: saved {path}; continue with --resume."))
        else:
            console.print(f"Interrupted in the middle of step {s.step + 1}: not saved; the last checkpoint is kept.")
        raise
    finally:
        metrics.close()

    # -- the end: the generators for sharing -----------------------------------------------------------------------
    weights = []
    for name, direction in (("G_AB", "AtoB"), ("G_BA", "BtoA")):
        info = GeneratorInfo(c.ngf, c.n_blocks, direction, domains.name_a, domains.name_b)
        save_generator(getattr(s, name), info, run_dir / f"{name}.safetensors")
        weights.append(run_dir / f"{name}.safetensors")
    return TrainResult(
        run_dir=run_dir,
        step=s.step,
        steps_run=s.step - start_step,
        epoch=s.epoch,
        total_epochs=total_epochs,
        seconds=time.perf_counter() - started,
        skipped=sorted(skipped),
        checkpoint=run_dir / "checkpoints" / "last.pt",
        weights=weights,
        config=c,
    )
