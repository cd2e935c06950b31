"""``cyc train``: the training loop, resumable bit for bit.

Read :func:`_train` top to bottom: it is the loop. Around it: :func:`open_run` and :func:`setup` prepare a run (the
run folder, the checkpoint to continue from, the data, the device, the state, ``config.json``); :mod:`cyclegan_cli.training.log`
shows and records progress (the bar, ``metrics.csv``, TensorBoard); :class:`CtrlC` turns Ctrl-C into a clean stop;
:func:`train` is the entry point (it joins and leaves the other ranks). The settings and what a resumed run keeps
are in :mod:`cyclegan_cli.training.config`; the state and the canonical step that the loop repeats, in
:mod:`cyclegan_cli.training.state`; checkpoints (what one holds, writing them, finding the one to resume, a damaged
``last.pt``) in :mod:`cyclegan_cli.training.checkpoints`; training as several processes under ``torchrun`` (the gradient
all-reduce, the agreement of the ranks, their failures) in :mod:`cyclegan_cli.training.distributed`, whose functions the
loop calls the same way for one process (a :class:`~cyclegan_cli.training.distributed.Ranks` of one, which runs exactly as
one process always did).

Exact resume: a checkpoint holds everything the step changes and where the loop is (epoch, batch within the
epoch, global step). The data order and every sample's crop and flip derive from ``(seed, epoch, index)`` (see
:mod:`cyclegan_cli.training.data`), so N steps, a resume and N more steps give on the CPU exactly the weights of 2N steps
in one go. A resumed run that has no step left (at ``--max-steps``, or all epochs done) trains nothing, touches
nothing and says so.

Stopping: the first Ctrl-C lets the current step finish, saves a checkpoint and exits with 130; a second one stops
at once, and saves too unless it lands inside a step (then the last checkpoint is kept). An epoch's end (both
schedulers and the epoch counter) is applied whole before a second Ctrl-C takes effect, so a checkpoint never
holds a half-advanced schedule. With several ranks, a first Ctrl-C on any rank stops every rank after the same
step (the flag travels with the step's losses) and they save together; a second one stops its rank at once
without saving (the others then exit 1, having lost it). A loss that becomes NaN or infinite stops the run with
exit 1 (:class:`TrainingDiverged`), keeping the last good checkpoint. Exit codes: 0 done (or nothing left to
train), 1 a failure, 2 a usage or data error (an unreadable checkpoint too), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.markup import escape

from cyclegan_cli.atomic import atomic_path, atomic_write_bytes
from cyclegan_cli.errors import CycError, UsageError
from cyclegan_cli.evaluation.quality import held_out_dirs
from cyclegan_cli.framing import to_uint8_frames
from cyclegan_cli.models.run_folder import RunFolder
from cyclegan_cli.models.weights import DIRECTIONS, GeneratorInfo, generator_key, save_generator
from cyclegan_cli.training import data as training_data
from cyclegan_cli.training import distributed
from cyclegan_cli.training.checkpoints import (
    Checkpointer,
    Resume,
    TrainingDiverged,
    load_checkpoint,
    read_checkpoint,
    restore_state,
    saved_world,
)
from cyclegan_cli.training.config import TrainConfig, check_config, merge_resume_config, nothing_to_train, saved_config
from cyclegan_cli.training.held_out import HeldOutEvaluator, best_kid, evaluation_every
from cyclegan_cli.training.log import QuietLog, TrainLog
from cyclegan_cli.training.state import LOSS_NAMES, TrainState, build_state, end_epoch, train_step

# --- the sample grids ---------------------------------------------------------------------------------------


@torch.no_grad()
def save_samples(
    s: TrainState, fixed_A: torch.Tensor, fixed_B: torch.Tensor, path: Path, names: tuple[str, str] = ("A", "B")
) -> None:
    """One PNG (:func:`samples.labelled_grid`): rows of real A | fake B | rec A, then rows of real B | fake A |
    rec B, labelled with the domains' ``names``, the columns and the step."""
    from PIL import Image

    from cyclegan_cli.training.samples import block_title, labelled_grid

    with s.autocast():
        A, B = s.to_device(fixed_A), s.to_device(fixed_B)
        fake_B = s.G_AB(A)
        fake_A = s.G_BA(B)
        rec_A, rec_B = s.G_BA(fake_B), s.G_AB(fake_A)

    def rows(*columns: torch.Tensor) -> list[list]:
        pictures = [to_uint8_frames(c.float(), tuple(c.shape[-2:])) for c in columns]
        return [list(row) for row in zip(*pictures)]

    a, b = names
    grid = labelled_grid(
        [(block_title("A", "B", a, b), rows(A, fake_B, rec_A)), (block_title("B", "A", b, a), rows(B, fake_A, rec_B))],
        s.step,
    )
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp)


def _fixed_images(files: list[Path], load_size: int, crop_size: int, count: int = 3) -> torch.Tensor:
    from cyclegan_cli.imageio import read_image

    images = []
    for path in files[:count]:
        with contextlib.suppress(CycError):
            images.append(training_data.center_transform(read_image(path)[0], load_size, crop_size))
    return torch.stack(images) if images else torch.zeros(1, 3, crop_size, crop_size)


class CtrlC:
    """The first Ctrl-C asks the loop to stop after the current step (and save); a second one stops at once,
    except inside :meth:`deferred`, which it lets finish first."""

    def __init__(self, console):
        self.requested = False
        self.console = console
        self.previous = None
        self.deferring = False
        self.pending = False  # a second Ctrl-C came inside deferred()

    def _handler(self, signum, frame):
        if not self.requested:
            self.requested = True
            self.console.print("[yellow]Ctrl-C: stopping after this step and saving a checkpoint (again: stop now)")
        elif self.deferring:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A second Ctrl-C inside the block (a few statements) takes effect when the block is done."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


# --- setup ----------------------------------------------------------------------------------------------------


@dataclass
class TrainingRun:
    """A run ready to train, as :func:`setup` leaves it."""

    dir: Path
    config: TrainConfig
    state: TrainState
    dataset: training_data.UnpairedDataset
    domains: training_data.Domains
    workers: int  # DataLoader processes
    steps_per_epoch: int
    total_steps: int  # where this run stops: the end of its last epoch, or --max-steps
    extra_config: dict  # what config.json and checkpoints record besides the settings
    skipped: dict[str, str]  # unreadable images: path -> reason (grows when an image goes bad mid-run)
    fixed_A: torch.Tensor  # the images of every sample grid
    fixed_B: torch.Tensor
    ranks: distributed.Ranks  # this process's place among several (torchrun), or one process's
    evaluator: HeldOutEvaluator | None = None  # --eval-every on rank 0; None: no evaluation here
    notes: list[str] = field(default_factory=list)  # what rank 0 says before the first step (ranks, resume)

    @property
    def main(self) -> bool:
        """Whether this process shows and writes: one process, or rank 0."""
        return self.ranks.main

    def done(self) -> bool:
        s, c = self.state, self.config
        return s.epoch >= c.total_epochs or (c.max_steps is not None and s.step >= c.max_steps)

    def save_samples(self) -> None:
        s = self.state
        if not self.main:
            return
        path = RunFolder(self.dir).sample(s.step)
        save_samples(s, self.fixed_A, self.fixed_B, path, (self.domains.name_a, self.domains.name_b))

    def evaluate(self, log: TrainLog | QuietLog, epoch_end: bool) -> None:
        """--eval-every, when due: the held-out scores into the log (rank 0 only; the other ranks go on)."""
        if self.evaluator is not None and self.evaluator.due(self.state.step, epoch_end):
            result = self.evaluator.evaluate(self.state)
            if result is not None:  # at an epoch's end the counter has moved on already: the epoch just done
                log.evaluation(result, self.state.epoch - 1 if epoch_end else self.state.epoch)


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # the run's global step at the end
    steps_run: int  # steps done in this session
    epoch: int  # epochs completed
    seconds: float
    skipped: list[str]
    checkpoint: Path
    weights: list[Path]
    config: TrainConfig
    note: str | None = None  # why nothing was trained: a resumed run at --max-steps or past its last epoch
    best_kid: tuple[int, float, float] | None = None  # --eval-every: (step, KID A->B, KID B->A) of the best mean
    rank: int = 0  # under torchrun: this process's rank (only rank 0 reports)
    world_size: int = 1


def open_run(
    config: TrainConfig, explicit: set[str] | None, console, chosen: str | None = None, follow: bool = False
) -> tuple[TrainConfig, Resume | None]:
    """The run folder ``config.out/config.name``. With ``config.resume``: the checkpoint to continue from (a
    damaged ``last.pt`` falls back to the newest whole ``step_*.pt``, with a warning) and the settings merged
    with its own; without: a folder that holds no run yet. Returns the checked settings and the checkpoint.

    ``follow``: rank 0 has opened the run already (and may have created the folder since): read the checkpoint
    it ``chosen`` (None: a new run), search and check nothing."""
    run_dir = Path(config.out) / config.name
    resume = None
    if config.resume:
        if follow:
            resume = read_checkpoint(Path(chosen)) if chosen is not None else load_checkpoint(run_dir)
        else:
            resume = load_checkpoint(
                run_dir, warn=lambda text: console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False)
            )
        config = merge_resume_config(config, resume.payload["config"], explicit, resume.path)
    elif follow:
        pass
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(
            f"{run_dir} already holds a run: continue it with --resume, or choose another --name (or --out)"
        )
    check_config(config)
    return config, resume


def setup(c: TrainConfig, resume: Resume | None, console, ranks: distributed.Ranks) -> TrainingRun:
    """Everything before the first step, in named steps: the data (every image decoded once, before any work),
    the device and precision, the state (fresh from ``c.seed``, or restored from ``resume``), the run folder and
    its ``config.json``, the held-out evaluator, and the fixed images of the sample grids. Under torchrun
    (``ranks``): this rank's device, pools and share of the data; only rank 0 writes. ``c`` is not changed: the
    run's settings (its data folders made absolute) are the returned run's ``config``."""
    domains, skipped = _scan_data(c, console, ranks)
    c = _with_absolute_data(c)  # what config.json and every checkpoint record: a resume finds the data from anywhere
    dataset = training_data.UnpairedDataset(domains.files_a, domains.files_b, c.load_size, c.crop_size, c.flip, c.seed)
    steps_per_epoch = training_data.batches_per_epoch(len(dataset), c.batch_size, ranks.world)
    total_steps = c.total_epochs * steps_per_epoch
    if c.max_steps is not None:
        total_steps = min(c.max_steps, total_steps)

    device, precision, workers = _compute_place(c, ranks)
    s = build_state(c, device, precision, ranks.rank)
    notes = []
    if not ranks.alone:
        notes.append(distributed.describe(ranks, device, c.batch_size, c.lr, steps_per_epoch))
    if resume is not None:
        restore_state(s, resume.payload, resume.path, ranks.rank)
        notes += _resume_notes(s, resume, len(dataset), ranks.world, steps_per_epoch)

    # the run folder and config.json
    run_dir = Path(c.out) / c.name
    extra_config = _domains_record(domains)
    if ranks.main:
        resolved = {"resolved_device": device, "resolved_precision": precision, "workers": workers}
        if not ranks.alone:
            resolved["world_size"] = ranks.world
        _write_run_folder(RunFolder(run_dir), {**saved_config(c), **extra_config, **resolved})

    evaluator, note = _held_out_evaluator(c, steps_per_epoch, total_steps, device, ranks, console)
    notes += [note] if note else []
    return TrainingRun(
        dir=run_dir,
        config=c,
        state=s,
        dataset=dataset,
        domains=domains,
        workers=workers,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        extra_config=extra_config,
        skipped=skipped,
        fixed_A=_fixed_images(domains.files_a, c.load_size, c.crop_size),
        fixed_B=_fixed_images(domains.files_b, c.load_size, c.crop_size),
        ranks=ranks,
        evaluator=evaluator,
        notes=notes,
    )


def _scan_data(c: TrainConfig, console, ranks: distributed.Ranks) -> tuple[training_data.Domains, dict[str, str]]:
    """Both domains, every image decoded once; the unreadable ones (path -> reason), the first 20 warned of."""
    threads = max(1, min(8, (os.cpu_count() or 1) // ranks.local_world))
    domains = training_data.scan_domains(c.dataroot, c.a, c.b, threads=threads)
    skipped = {str(path): reason for path, reason in domains.skipped}
    for reason in list(skipped.values())[:20]:
        console.print(f"[yellow]warning:[/] {escape(reason)} (skipped)", highlight=False)
    if len(skipped) > 20:
        console.print(f"[yellow]warning:[/] ... and {len(skipped) - 20} more unreadable images (skipped)")
    return domains, skipped


def _compute_place(c: TrainConfig, ranks: distributed.Ranks) -> tuple[str, str, int]:
    """This rank's device, the precision there, and the number of DataLoader processes."""
    from cyclegan_cli.devices import has_cxx_compiler, resolve_device, resolve_precision

    device = distributed.rank_device(resolve_device(c.device), ranks)
    precision = resolve_precision(c.precision, device)
    if c.compile and device == "cpu" and not has_cxx_compiler():
        raise UsageError("--compile on a CPU needs a C++ compiler (g++ or clang++), and none is installed")
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    workers = training_data.default_workers(device, ranks.local_world) if c.workers is None else c.workers
    return device, precision, workers


def _with_absolute_data(c: TrainConfig) -> TrainConfig:
    """The settings with the data folders (``dataroot``, ``a``, ``b``) made absolute."""
    folders = {key: getattr(c, key) for key in ("dataroot", "a", "b")}
    absolute = {key: str(Path(folder).resolve()) for key, folder in folders.items() if folder is not None}
    return dataclasses.replace(c, **absolute)


def _domains_record(domains: training_data.Domains) -> dict:
    """What ``config.json`` and the checkpoints record of the data besides the settings."""
    return {
        "domain_a": domains.name_a,
        "domain_b": domains.name_b,
        "dir_a": str(domains.dir_a.resolve()),
        "dir_b": str(domains.dir_b.resolve()),
        "images_a": len(domains.files_a),
        "images_b": len(domains.files_b),
    }


def _write_run_folder(run: RunFolder, config: dict) -> None:
    """The run folder, its ``samples/`` and its ``config.json`` (rank 0 only)."""
    run.path.mkdir(parents=True, exist_ok=True)
    run.samples.mkdir(exist_ok=True)
    atomic_write_bytes(run.config, (json.dumps(config, indent=2) + "\n").encode())


def _held_out_evaluator(
    c: TrainConfig, steps_per_epoch: int, total_steps: int, device: str, ranks: distributed.Ranks, console
) -> tuple[HeldOutEvaluator | None, str | None]:
    """--eval-every's evaluator (rank 0, where the data folder has held-out images and the scoring network is
    there), or None; and the note that says why evaluation is off, where it is."""
    every = evaluation_every(c, steps_per_epoch, total_steps)
    folders = held_out_dirs(c.dataroot)
    if every and folders is None:
        where = f"{c.dataroot} has" if c.dataroot is not None else "--a/--b folders have"
        held_out = "testA/ and testB/ (or test/A and test/B)"
        return None, f"Evaluation off: {where} no {held_out} of held-out images (training images never count)."
    if not (every and ranks.main):
        return None, None
    evaluator = HeldOutEvaluator(c, folders, every, per_epoch=c.eval_every is None, console=console)
    return (evaluator if evaluator.prepare(device) else None), None


def _resume_notes(s: TrainState, resume: Resume, n: int, world: int, steps_per_epoch: int) -> list[str]:
    """Where a run resumes from (always said, before the first step: a log read after a pre-emption shows it),
    and when ranks are involved (then or now), what a change of their number changes; a resumed run whose
    number of ranks changed continues its epoch at the equivalent batch."""
    saved = saved_world(resume.payload)
    where = f"Resuming at step {s.step} (epoch {s.epoch + 1}) from {resume.path}"
    if saved == 1 and world == 1:
        return [f"{where}."]  # one process then and now: the data order continues as it was
    c = s.config
    then_now = f"written by {distributed.ranks_text(saved)}, now {distributed.ranks_text(world)}"
    if saved == world:
        return [f"{where}: {then_now}; batch {s.batch_in_epoch} of {steps_per_epoch} of the epoch done."]
    before = s.batch_in_epoch
    s.batch_in_epoch = training_data.batch_after_world_change(before, n, c.batch_size, saved, world)
    notes = [
        f"{where}: {then_now}. The global batch changes from {c.batch_size * saved} to {c.batch_size * world} "
        f"(batch {c.batch_size} per rank; lr {c.lr:g} as before) and the data order from here on differs from a "
        f"run that kept {distributed.ranks_text(saved)}: epoch {s.epoch + 1} continues at batch "
        f"{s.batch_in_epoch} of {steps_per_epoch} (after {before} of "
        f"{training_data.batches_per_epoch(n, c.batch_size, saved)} before; no sample of it skipped, a few may repeat)."
    ]
    if world > saved:
        one = world - saved == 1
        new = f"Rank {saved} starts with a copy" if one else f"Ranks {saved} to {world - 1} start with copies"
        donors = "the one process" if saved == 1 else f"rank r % {saved} for rank r"
        own = "its" if one else "their"
        notes.append(f"{new} of the replay pools of {donors}, with random streams of {own} own.")
    else:
        left = f"rank {world}" if saved == world + 1 else f"ranks {world} to {saved - 1}"
        notes.append(f"The replay pools of {left} are left behind.")
    return notes


# --- the run --------------------------------------------------------------------------------------------------


def train(config: TrainConfig, explicit: set[str] | None = None, console=None) -> TrainResult:
    """Train (or with ``config.resume``, continue) the run ``config.out/config.name``; see the module docstring.

    ``explicit``: the settings the user gave (the rest come from the checkpoint when resuming; None: all).
    Under torchrun (``WORLD_SIZE`` > 1 in the environment) this process is one rank of a distributed run: it
    joins the others first (:mod:`cyclegan_cli.training.distributed`), and only rank 0 shows and writes anything.
    """
    from rich.console import Console

    console = console or Console(stderr=True, soft_wrap=True)
    return distributed.as_ranks(
        config.dist_timeout, console, lambda console, ranks: _train(config, explicit, console, ranks)
    )


def _open(config: TrainConfig, explicit, console, ranks: distributed.Ranks) -> tuple[TrainConfig, Resume | None]:
    """:func:`open_run`; under torchrun rank 0 alone chooses the checkpoint (it may rename damaged files and
    create the run folder), then the others read the one it chose."""
    opened = distributed.agree(ranks, lambda: open_run(config, explicit, console) if ranks.main else None)
    chosen = distributed.share(ranks, str(opened[1].path) if ranks.main and opened[1] is not None else None)
    if ranks.main:
        distributed.agree(ranks, lambda: None)
        return opened
    return distributed.agree(ranks, lambda: open_run(config, explicit, console, chosen, follow=True))


class StopAgreed(KeyboardInterrupt):
    """The stop that a first Ctrl-C asks for, raised once every rank knows of it (after the same step, or the same
    epoch's end): the ranks save together. Any other KeyboardInterrupt is a second Ctrl-C (or the ``on_step``
    hook's), which one process saves after too but a rank of several cannot."""


def _train(config: TrainConfig, explicit: set[str] | None, console, ranks: distributed.Ranks) -> TrainResult:
    """The loop, from the run's setup to its generators; the same on every rank."""
    # -- setup: the run folder and the checkpoint to continue from; with no step left, stop here, touching nothing
    config, resume = _open(config, explicit, console, ranks)
    if resume is not None and (note := nothing_to_train(config, resume.step, resume.epoch)):  # alike on every rank
        return _nothing_trained(config, resume, note, ranks)
    run = distributed.agree(ranks, functools.partial(setup, config, resume, console, ranks))
    s, c = run.state, run.config
    distributed.join_training(ranks, s)
    for line in run.notes:
        console.print(escape(line), highlight=False)

    resumed_from = resume.path if resume is not None else None
    del resume  # its tensors now live in the state

    # -- logging and checkpoints (a resumed run's newest checkpoint is the one it continues from)
    saved_step = s.step if resumed_from is not None else None
    log = TrainLog(run.dir, c, s, run.total_steps, console, resume_step=saved_step) if run.main else QuietLog()
    checkpointer = Checkpointer(
        run.dir, run.extra_config, run.skipped, c.keep, resumed_from, saved_step, s.elapsed_s, ranks, log.warn
    )
    checkpointer.on_save = log.flush  # a checkpoint ends a row of metrics.csv
    start_step, started = s.step, time.perf_counter()
    pin = s.device.type == "cuda"  # page-locked batches: asynchronous copies to the GPU

    with _when_interrupted(checkpointer, s, ranks, console), CtrlC(console) as ctrl_c, log:
        while not run.done():
            loader = training_data.epoch_loader(
                run.dataset, c.batch_size, s.epoch, s.batch_in_epoch, run.workers, pin, ranks.rank, ranks.world
            )
            for batch in loader:
                # -- one step (interrupted inside it, the state is half changed: nothing is saved)
                t0 = time.perf_counter()
                with checkpointer.unsaveable(f"step {s.step + 1}"):
                    losses = train_step(s, s.to_device(batch["A"]), s.to_device(batch["B"]))
                    s.step += 1
                    s.batch_in_epoch += 1
                # every rank's losses (their mean is logged) and whether any rank was asked to stop
                losses, stop = distributed.step_agreement(ranks, losses, ctrl_c.requested)
                _stop_if_diverged(losses.tolist(), s, checkpointer, ranks)  # .tolist() waits: the time is whole
                seconds = time.perf_counter() - t0
                _note_unreadable(batch["bad"], run.skipped, log)

                # -- progress, metrics.csv, TensorBoard; the hook; a first Ctrl-C stops here
                log.step(s, losses, seconds)
                if c.on_step is not None:
                    c.on_step(s)
                if stop:
                    raise StopAgreed

                # -- samples and checkpoints (at an epoch's end they are written below, once)
                if s.batch_in_epoch < run.steps_per_epoch:
                    if s.step % c.sample_every == 0:
                        run.save_samples()
                    if s.step % c.save_every == 0:
                        checkpointer.save(s)
                    run.evaluate(log, epoch_end=False)
                if run.done():
                    break

            # -- the end of an epoch: decay the learning rates (whole: a second Ctrl-C waits for it),
            #    then samples and a checkpoint
            if s.batch_in_epoch >= run.steps_per_epoch:
                with ctrl_c.deferred(), checkpointer.unsaveable(f"the end of epoch {s.epoch + 1}"):
                    end_epoch(s)
                run.save_samples()
                checkpointer.save(s)
                run.evaluate(log, epoch_end=True)
                if distributed.any_rank(ranks, ctrl_c.requested):
                    raise StopAgreed
        checkpointer.save(s)

    # -- the end: the generators for sharing
    return _end_of_run(run, start_step, started)


def _stop_if_diverged(losses: list[float], s: TrainState, checkpointer: Checkpointer, ranks: distributed.Ranks) -> None:
    """A loss that is NaN or infinite ends the run (every rank sees the same mean losses, so all stop); the last
    checkpoint stays as it was."""
    if all(math.isfinite(v) for v in losses):
        return
    bad = ", ".join(f"{k}={v}" for k, v in zip(LOSS_NAMES, losses) if not math.isfinite(v))
    raise distributed.reported(
        ranks,
        TrainingDiverged(
            f"training diverged at step {s.step} (epoch {s.epoch + 1}): {bad}; stopped, "
            f"{checkpointer.kept_text()}; try a lower --lr (now {s.config.lr:g}) or --precision fp32"
        ),
    )


def _note_unreadable(bad: list[str], skipped: dict[str, str], log: TrainLog | QuietLog) -> None:
    """Images of the batch that became unreadable since the scan (``bad``: the loader's "path<TAB>reason" lines):
    each joins the skipped ones, with a warning the first time."""
    for line in bad:
        path, _, reason = line.partition("\t")
        if path not in skipped:
            skipped[path] = reason
            log.warn(f"{reason} (skipped)")


@contextlib.contextmanager
def _when_interrupted(checkpointer: Checkpointer, s: TrainState, ranks: distributed.Ranks, console) -> Iterator[None]:
    """What an interrupted run leaves, said in one line. A Ctrl-C saves a checkpoint when the state is whole and
    this process may save alone: one process, or every rank stopping together (:class:`StopAgreed`); otherwise
    the last checkpoint is kept. Lost ranks: the error says after which step, and what is kept."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        kept = checkpointer.kept_text()
        if checkpointer.saveable and (ranks.alone or isinstance(interrupt, StopAgreed)):
            path = checkpointer.save(s)
            console.print(escape(f"Interrupted at step {s.step}: saved {path}; continue with --resume."))
        elif checkpointer.saveable:  # a second Ctrl-C on this rank: the others cannot save with it
            console.print(escape(f"Interrupted at once at step {s.step}: not saved; {kept}."))
        else:
            console.print(escape(f"Interrupted in the middle of {checkpointer.busy_with}: not saved; {kept}."))
        raise
    except distributed.RanksLost as lost:
        raise distributed.RanksLost(f"{lost}; stopped after step {s.step}, {checkpointer.kept_text()}") from None


def _end_of_run(run: TrainingRun, start_step: int, started: float) -> TrainResult:
    """The generators for sharing (rank 0 writes them), and what the run did."""
    s, c = run.state, run.config
    folder, weights = RunFolder(run.dir), []
    for direction in DIRECTIONS:
        key = generator_key(direction)
        if run.main:
            info = GeneratorInfo(c.ngf, c.n_blocks, direction, run.domains.name_a, run.domains.name_b)
            save_generator(getattr(s, key), info, folder.generator(key))
        weights.append(folder.generator(key))
    return TrainResult(
        run_dir=run.dir,
        step=s.step,
        steps_run=s.step - start_step,
        epoch=s.epoch,
        seconds=time.perf_counter() - started,
        skipped=sorted(run.skipped),
        checkpoint=folder.last_checkpoint,
        weights=weights,
        config=c,
        rank=run.ranks.rank,
        world_size=run.ranks.world,
        best_kid=best_kid(folder.metrics) if run.main else None,
    )


def _nothing_trained(c: TrainConfig, resume: Resume, note: str, ranks: distributed.Ranks) -> TrainResult:
    """The result of a resumed run with no step left: the run folder is as it was."""
    run_dir = Path(c.out) / c.name
    weights = [RunFolder(run_dir).generator(generator_key(direction)) for direction in DIRECTIONS]
    return TrainResult(
        run_dir=run_dir,
        step=resume.step,
        steps_run=0,
        epoch=resume.epoch,
        seconds=0.0,
        skipped=[],
        checkpoint=resume.path,
        weights=[p for p in weights if p.is_file()],
        config=c,
        note=note,
        rank=ranks.rank,
        world_size=ranks.world,
    )
