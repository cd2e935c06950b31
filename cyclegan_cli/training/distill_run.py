"""``cyc distill``'s run: the folder, the loop, what it shows and records, and the student it leaves.

:func:`distill` is the entry point: :func:`open_distill` prepares the run (the folder, the teacher, the pairs, the
student, a checkpoint to continue from), the loop runs steps until ``--steps`` or ``--minutes``, then the student's
fidelity is measured on the held-out frames and written into its safetensors metadata. The folder is a run folder
like ``cyc train``'s (:mod:`cyclegan_cli.models.run_folder`): ``config.json``, ``checkpoints/last.pt``,
``samples/``, ``metrics.csv``, the student as ``G_AB.safetensors`` (or ``G_BA``), and ``pairs.npz``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from rich.markup import escape

from cyclegan_cli.atomic import atomic_path, atomic_write_bytes
from cyclegan_cli.errors import CycError, UsageError, first_line
from cyclegan_cli.measured import to_json
from cyclegan_cli.models.run_folder import RunFolder
from cyclegan_cli.models.weights import CHECKPOINT_FORMAT, GeneratorInfo, generator_key, save_generator, torch_load
from cyclegan_cli.training import distributed
from cyclegan_cli.training.distill import Student, build_student, distill_step, learning_rate
from cyclegan_cli.training.distill_config import KEPT_ON_RESUME, PRESETS, DistillConfig
from cyclegan_cli.training.distill_data import (
    Pairs,
    baselines,
    collect_frames,
    mean_psnr,
    split_held_out,
    teacher_pairs,
    translate_frames,
)

SAMPLE_ROWS = 3  # held-out frames in each sample grid
LOSS_COLUMNS = ("l1", "feature", "gan", "D")


@dataclass
class DistillRun:
    """A distillation ready to run, as :func:`open_distill` leaves it."""

    run: RunFolder
    config: DistillConfig
    device: str
    teacher: torch.nn.Module
    teacher_info: GeneratorInfo
    pairs: Pairs
    baselines: dict[str, float]
    student: Student
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return generator_key(self.config.direction)

    def student_info(self, distilled: dict | None = None) -> GeneratorInfo:
        preset = PRESETS[self.config.preset]
        t = self.teacher_info
        return GeneratorInfo(
            ngf=preset.ngf,
            n_blocks=preset.n_blocks,
            direction=self.config.direction,
            domain_a=t.domain_a,
            domain_b=t.domain_b,
            blocks=preset.blocks,
            distilled=json.dumps(distilled, sort_keys=True) if distilled else "",
        )


@dataclass
class DistillResult:
    run: RunFolder
    weights: Path
    steps_run: int
    step: int
    seconds: float
    fidelity: dict


# --- setup ----------------------------------------------------------------------------------------------------------


def _resumed_config(c: DistillConfig, run: RunFolder) -> DistillConfig:
    """A new run's settings, or a resumed one's: what shapes the student and its material comes from config.json."""
    exists = run.config.is_file() or run.last_checkpoint.is_file()
    if exists and not c.resume:
        raise UsageError(f"{run.path}: a run is already there: add --resume to continue it, or choose another --name")
    if not c.resume:
        return c
    if not run.last_checkpoint.is_file():
        raise UsageError(f"{run.path}: nothing to resume (no {run.last_checkpoint.name}): leave out --resume")
    try:
        saved = json.loads(run.config.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"{run.config}: unreadable ({first_line(error)}): the run cannot be resumed") from None
    return replace(c, **{k: saved[k] for k in KEPT_ON_RESUME if k in saved})


def _pairs(c: DistillConfig, run: RunFolder, teacher, device: str, precision: str, console) -> Pairs:
    """The frames and the teacher's outputs: those of the run folder, else made now (the teacher runs once)."""
    if run.pairs.is_file():
        return Pairs.load(run.pairs)
    run.path.mkdir(parents=True, exist_ok=True)
    frames, line = collect_frames(c.data, "--data", c.frames, c.load_size)
    held = collect_frames([c.held_out], "--held-out", 64, c.load_size)[0] if c.held_out else None
    train, held = split_held_out(frames, held)
    console.print(escape(f"Frames: {line}; {len(train)} to learn from, {len(held)} held out."))
    started = time.perf_counter()
    pairs = teacher_pairs(teacher, train, held, device, precision)
    console.print(
        escape(f"The teacher translated them once ({precision}, {time.perf_counter() - started:.0f} s): {run.pairs}")
    )
    pairs.save(run.pairs)
    return pairs


def open_distill(c: DistillConfig, console, ranks: distributed.Ranks | None = None) -> DistillRun:
    """The run ready to step. Under torchrun every rank reads the folder before rank 0 writes in it; rank 0 alone
    makes the pairs (the teacher's pass) while the others wait, then they read them."""
    from cyclegan_cli.devices import has_cxx_compiler, resolve_device, resolve_precision
    from cyclegan_cli.hub.sources import find_model
    from cyclegan_cli.models.weights import load_generator

    ranks = ranks or distributed.Ranks()
    run = RunFolder(Path(c.runs_dir) / (c.name or f"{Path(c.source).stem}-{c.preset}"))

    def settings() -> tuple[DistillConfig, str]:
        if not c.data and not c.resume:
            raise UsageError(
                "no --data: give images, folders, globs or videos of the domain the teacher translates from"
            )
        device = distributed.rank_device(resolve_device(c.device), ranks)
        if c.compile and device == "cpu" and not has_cxx_compiler():
            raise UsageError("--compile on a CPU needs a C++ compiler (g++ or clang++), and none is installed")
        return _resumed_config(replace(c, name=run.name), run), device

    c, device = distributed.agree(ranks, settings)
    path, stored, note = distributed.agree(ranks, lambda: find_model(c.source, c.runs_dir, c.direction))
    teacher, teacher_info = load_generator(path, stored, device)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    precision = resolve_precision("auto", device)
    pairs = on_main(ranks, lambda: _pairs(c, run, teacher, device, precision, console)) or Pairs.load(run.pairs)
    student = build_student(c, 4 * teacher_info.ngf, device)
    r = DistillRun(run, c, device, teacher, teacher_info, pairs, baselines(pairs), student, [note] if note else [])
    if c.resume:
        payload = torch_load(run.last_checkpoint)
        try:
            student.restore(payload, r.key)
        except (KeyError, TypeError, RuntimeError, ValueError) as error:
            raise distributed.reported(
                ranks, CycError(f"{run.last_checkpoint}: not this run's checkpoint ({first_line(error)})")
            ) from None
        r.notes.append(f"Resumed {run.path} at step {student.step}.")
    if not ranks.alone:
        how = "NCCL" if device.startswith("cuda") else "gloo"
        r.notes.append(
            f"Distilling as {ranks.world} ranks ({how}): {c.batch_size} crops per rank, each step the same as one "
            f"process's with --batch-size {c.batch_size * ranks.world}."
        )
    config_record = c.as_dict() | {"teacher_sha256": _teacher_sha256(teacher)}
    on_main(ranks, lambda: atomic_write_bytes(run.config, json.dumps(config_record, indent=2).encode()))
    return r


def on_main(ranks: distributed.Ranks, fn):
    """``fn()`` on rank 0 (its result), while the other ranks wait (None); if it fails, every rank stops."""
    return distributed.agree(ranks, fn if ranks.main else lambda: None)


def _teacher_sha256(teacher) -> str:
    from cyclegan_cli.models.artifacts import weights_sha256

    return weights_sha256(teacher)


# --- what the run records -------------------------------------------------------------------------------------------


def save_checkpoint(r: DistillRun, ranks: distributed.Ranks | None = None) -> Path:
    """checkpoints/last.pt, atomically: everything a step changes, and the run's settings. Under torchrun rank 0
    writes it (having checked that every rank holds its weights) while the others wait."""
    ranks = ranks or distributed.Ranks()
    differing = distributed.differing_ranks(ranks, r.student.modules)
    if differing:
        raise CycError(
            f"rank {differing[0]}'s weights differ from rank 0's at step {r.student.step}: the ranks no longer train "
            f"one model (a bug; please report it); not saved, {r.run.last_checkpoint} is kept"
        )
    return on_main(ranks, lambda: _write_checkpoint(r)) or r.run.last_checkpoint


def _write_checkpoint(r: DistillRun) -> Path:
    s, info = r.student, r.student_info()
    payload = s.state()
    payload["models"][r.key] = s.generator.state_dict()
    payload |= {
        "format": CHECKPOINT_FORMAT,
        "kind": "distill",
        "config": r.config.as_dict() | {"ngf": info.ngf, "n_blocks": info.n_blocks, "blocks": info.blocks},
    }
    r.run.checkpoints.mkdir(parents=True, exist_ok=True)
    with atomic_path(r.run.last_checkpoint) as tmp:
        torch.save(payload, tmp)
    return r.run.last_checkpoint


@torch.no_grad()
def student_outputs(r: DistillRun, frames: list[np.ndarray]) -> list[np.ndarray]:
    r.student.generator.eval()
    try:
        return translate_frames(r.student.generator, frames, r.device, "fp32")
    finally:
        r.student.generator.train()


def save_samples(r: DistillRun, outputs: list[np.ndarray]) -> Path:
    """samples/step_NNNNNN.png: held-out frames, input | teacher | student, centre squares of one size."""
    from PIL import Image

    from cyclegan_cli.training.samples import labelled_grid

    count = min(SAMPLE_ROWS, len(outputs))
    side = min(min(p.shape[:2]) for p in r.pairs.held_inputs[:count])

    def square(picture: np.ndarray) -> np.ndarray:
        top, left = (picture.shape[0] - side) // 2, (picture.shape[1] - side) // 2
        return np.ascontiguousarray(picture[top : top + side, left : left + side])

    held = zip(r.pairs.held_inputs, r.pairs.held_targets, outputs)
    rows = [[square(p) for p in row] for row, _ in zip(held, range(count))]
    t = r.teacher_info
    title = f"{r.config.direction}: {t.domain_a if r.config.direction == 'AtoB' else t.domain_b}, held out"
    grid = labelled_grid([(title, rows)], r.student.step, columns=("input", "teacher", "student"))
    path = r.run.sample(r.student.step)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return path


def fidelity(r: DistillRun, console=None, with_kid: bool = False) -> tuple[dict, list[np.ndarray]]:
    """The student's mean PSNR against the teacher on the held-out frames, beside the baselines, and KID between
    their outputs where ``with_kid`` and the eval extra can compute it (else why not); and the student's outputs."""
    outputs = student_outputs(r, r.pairs.held_inputs)
    result = {"psnr_db": round(mean_psnr(outputs, r.pairs.held_targets), 2), **r.baselines}
    result["held_out_frames"] = len(outputs)
    if with_kid:
        result |= _kid(r, outputs, console)
    return result, outputs


def _kid(r: DistillRun, outputs: list[np.ndarray], console) -> dict:
    from cyclegan_cli.evaluation import quality

    try:
        quality.check_installed()
        inception = quality.load_inception(r.device, console=console)
        features = [
            inception.features_of(torch.from_numpy(p).permute(2, 0, 1) for p in pictures)
            for pictures in (outputs, r.pairs.held_targets)
        ]
        metrics = quality.compare(*features, with_fid=False)
    except CycError as error:
        if console is not None:
            console.print(escape(f"KID not measured: {first_line(error)}"))
        return {"kid": "not measured"}
    return {"kid": to_json(metrics.kid_mean, 5), "kid_std": to_json(metrics.kid_std, 5)}


class DistillLog:
    """Progress as it goes: a bar on a terminal, else a plain line every ``--log-every`` steps; ``metrics.csv``
    (the mean losses of every ``--log-every`` steps, and the held-out PSNR where measured); TensorBoard's scalars
    where it is installed. Resuming at step N keeps the rows up to N."""

    COLUMNS = ("step", "lr", *LOSS_COLUMNS, "held_out_psnr_db", "steps_per_s")

    def __init__(self, r: DistillRun, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console, self.every, self.window = console, r.config.log_every, []
        self.started, self.first_step = time.perf_counter(), r.student.step
        self.bar = Progress(
            TextColumn("distil"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[text]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not (r.config.progress and console.is_terminal),
        )
        self.plain = r.config.progress and self.bar.disable
        self.task = self.bar.add_task("distil", total=r.config.steps, completed=r.student.step, text="")
        path, kept = r.run.metrics, []
        if r.config.resume and path.is_file():
            with open(path, newline="") as f:
                kept = [
                    row
                    for row in csv.DictReader(f)
                    if row.get("step", "").isdigit() and int(row["step"]) <= r.student.step
                ]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, self.COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, self.COLUMNS, extrasaction="ignore")
        self.tb = _tensorboard(r.run.path, r.student.step)

    def __enter__(self) -> DistillLog:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()
        self.file.close()
        if self.tb is not None:
            self.tb.close()

    def step(self, step: int, lr: float, losses: dict[str, float]) -> None:
        self.window.append(losses)
        text = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        self.bar.update(self.task, completed=step, text=text)
        if step % self.every == 0:
            self.row(step, lr)

    def row(self, step: int, lr: float, psnr_db: float | None = None) -> None:
        """A row of the mean losses since the last row (and the held-out PSNR where given)."""
        rate = (step - self.first_step) / max(time.perf_counter() - self.started, 1e-9)
        means = {k: float(np.mean([w[k] for w in self.window])) for k in self.window[0]} if self.window else {}
        self.window = []
        row = {"step": step, "lr": f"{lr:.6g}", "steps_per_s": f"{rate:.3f}"}
        row |= {k: f"{v:.5f}" for k, v in means.items()}
        if psnr_db is not None:
            row["held_out_psnr_db"] = f"{psnr_db:.2f}"
        self.writer.writerow(row)
        self.file.flush()
        if self.tb is not None:
            for name, value in means.items() | ({"held_out_psnr_db": psnr_db}.items() if psnr_db else set()):
                self.tb.add_scalar(f"distill/{name}", value, step)
        if self.plain or psnr_db is not None:
            parts = [f"step {step}", *(f"{k} {v:.4f}" for k, v in means.items())]
            if psnr_db is not None:
                parts.append(f"held-out PSNR {psnr_db:.2f} dB against the teacher")
            self.console.print(escape(", ".join(parts) + f" ({rate:.2f} steps/s)"))


class QuietDistillLog:
    """The log of a rank other than 0: rank 0 shows and records the mean losses of all ranks."""

    window = ()

    def __enter__(self) -> QuietDistillLog:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def step(self, step: int, lr: float, losses: dict[str, float]) -> None:
        pass

    def row(self, step: int, lr: float, psnr_db: float | None = None) -> None:
        pass


def _tensorboard(folder: Path, step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder), purge_step=step)


# --- the loop -------------------------------------------------------------------------------------------------------


def distill(c: DistillConfig, console) -> DistillResult:
    """Run (or continue) a distillation; the student's fidelity is measured and written at the end. Under torchrun
    this process is one rank of several (:func:`cyclegan_cli.training.distributed.as_ranks`)."""
    return distributed.as_ranks(c.dist_timeout, console, lambda console, ranks: _distill(c, console, ranks))


def _distill(c: DistillConfig, console, ranks: distributed.Ranks) -> DistillResult:
    from cyclegan_cli.training.loop import CtrlC

    r = open_distill(c, console, ranks)
    c, s = r.config, r.student
    distributed.join_models(ranks, s.modules, s.optimizers)
    for note in r.notes:
        console.print(escape(note))
    console.print(
        escape(
            f"Baselines on {len(r.pairs.held_inputs)} held-out frames, against the teacher: identity "
            f"{r.baselines['identity_psnr_db']:.2f} dB, best colour matrix per image {r.baselines['colour_matrix_psnr_db']:.2f} dB."
        )
    )
    started, first = time.perf_counter(), s.step
    deadline = started + 60 * c.minutes if c.minutes else None
    with CtrlC(console) as ctrl_c, DistillLog(r, console) if ranks.main else QuietDistillLog() as log:
        if s.step == 0:  # where the curve starts
            on_main(ranks, lambda: log.row(0, learning_rate(c, 0), fidelity(r)[0]["psnr_db"]))
        stop = deadline is not None and time.perf_counter() >= deadline
        try:
            while s.step < c.steps and not stop:
                lr = learning_rate(c, s.step)
                losses = distill_step(s, r.teacher, r.pairs, c, r.device, ranks.rank, ranks.world)
                out_of_time = deadline is not None and time.perf_counter() >= deadline
                losses, stop = _agreed(ranks, s.step, losses, ctrl_c.requested or out_of_time)
                log.step(s.step, lr, losses)
                _periodic(r, log, lr, ranks)
        except KeyboardInterrupt:
            console.print(escape(f"Interrupted at once at step {s.step}: not saved; {r.run.last_checkpoint} is kept."))
            raise
        if log.window:
            log.row(s.step, learning_rate(c, s.step))
        save_checkpoint(r, ranks)
        if distributed.any_rank(ranks, ctrl_c.requested):
            console.print(
                escape(f"Interrupted at step {s.step}: saved {r.run.last_checkpoint}; continue with --resume.")
            )
            raise KeyboardInterrupt
        measured = on_main(ranks, lambda: _finish(r, log, console)) or {}
    weights = r.run.generator(r.key)
    return DistillResult(r.run, weights, s.step - first, s.step, time.perf_counter() - started, measured)


def _agreed(ranks: distributed.Ranks, step: int, losses: dict[str, float], stop: bool) -> tuple[dict[str, float], bool]:
    """The step's losses averaged over the ranks, and whether any rank stops (Ctrl-C, --minutes) after it."""
    mean, stop = distributed.step_agreement(ranks, torch.tensor(list(losses.values())), stop)
    losses = dict(zip(losses, mean.tolist()))
    if not all(math.isfinite(v) for v in losses.values()):
        error = CycError(
            f"distillation diverged at step {step} (a loss is {losses}): lower --lr; the last checkpoint is kept"
        )
        raise distributed.reported(ranks, error)
    return losses, stop


def _finish(r: DistillRun, log: DistillLog, console) -> dict:
    """Rank 0, at the end: the student's fidelity (with KID), the last samples, and the student with its record."""
    s, c = r.student, r.config
    measured, outputs = fidelity(r, console, with_kid=True)
    log.row(s.step, learning_rate(c, s.step), measured["psnr_db"])
    save_samples(r, outputs)
    distilled = {
        "teacher": str(c.source),
        "teacher_sha256": _teacher_sha256(r.teacher),
        "preset": c.preset,
        "steps": s.step,
        **measured,
    }
    save_generator(s.generator, r.student_info(distilled), r.run.generator(r.key))
    return measured


def _periodic(r: DistillRun, log: DistillLog, lr: float, ranks: distributed.Ranks) -> None:
    """Every --save-every steps a checkpoint (ending a row of metrics.csv), every --sample-every a sample grid,
    every --eval-every the held-out PSNR (rank 0 samples and measures while the others wait)."""
    c, step = r.config, r.student.step
    if step % c.save_every == 0:
        if log.window:
            log.row(step, lr)
        save_checkpoint(r, ranks)
    if step % c.sample_every == 0:
        on_main(ranks, lambda: save_samples(r, student_outputs(r, r.pairs.held_inputs[:SAMPLE_ROWS])))
    if c.eval_every and step % c.eval_every == 0 and step < c.steps:  # the last step's: at the end, with KID
        on_main(ranks, lambda: log.row(step, lr, fidelity(r)[0]["psnr_db"]))
