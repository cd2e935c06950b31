"""What a training run shows and records as it goes: the progress bar (or plain lines in a log), ``metrics.csv``
(the mean losses every ``--log-every`` steps, the held-out scores of ``--eval-every`` in rows of their own) and
TensorBoard's scalars. Only the process that writes (rank 0) keeps a :class:`TrainLog`; the others a
:class:`QuietLog`."""

from __future__ import annotations

import csv
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
from rich.markup import escape

from cyclegan_cli.atomic import atomic_path
from cyclegan_cli.models.run_folder import RunFolder
from cyclegan_cli.training.held_out import METRICS as EVAL_METRICS
from cyclegan_cli.training.state import LOSS_NAMES

if TYPE_CHECKING:
    from cyclegan_cli.training.config import TrainConfig
    from cyclegan_cli.training.held_out import Evaluation
    from cyclegan_cli.training.state import TrainState


def _loss_text(losses: dict[str, float]) -> str:
    """The six losses in little room: G (adversarial) AB/BA, cyc A/B, D A/B."""
    return (
        f"G {losses['G_AB']:.3f}/{losses['G_BA']:.3f} cyc {losses['cyc_A']:.3f}/{losses['cyc_B']:.3f} "
        f"D {losses['D_A']:.3f}/{losses['D_B']:.3f}"
    )


class _RowHead(NamedTuple):
    """A row of metrics.csv besides its losses."""

    step: int
    epoch: int  # counted from 1
    lr: float
    rate: float  # steps/s over the last 20 steps


class TrainLog:
    """What a run shows and records as it trains, step by step.

    On a terminal, a rich progress bar (epoch, steps, the last step's losses, the rate over the last 20 steps);
    elsewhere (a log file), a plain line every ``log_every`` steps instead. Every ``log_every`` steps, the mean
    losses of those steps as a row of ``metrics.csv`` and as TensorBoard scalars (where tensorboard is installed);
    when a checkpoint is written (:meth:`flush`) and when the session ends (its last step, Ctrl-C, an error), one
    more row for the steps since the last one, so that a run shorter than ``log_every`` still has its row and every
    checkpoint's step ends a row. Resuming at step N drops the rows past N that an interrupted session had written
    and counts from step N + 1: every step is in one row, and no step in two. A context manager: it
    starts the bar, and at the end writes the last row, stops the bar and closes the files.
    """

    COLUMNS = ("step", "epoch", "lr", *LOSS_NAMES, *EVAL_METRICS, "steps_per_s")

    def __init__(
        self, run_dir: Path, c: TrainConfig, s: TrainState, total_steps: int, console, resume_step: int | None
    ):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console, self.log_every = console, c.log_every
        self.total_steps, self.total_epochs = total_steps, c.total_epochs
        self.window: list[torch.Tensor] = []  # the losses of the steps since the last row
        self.last: _RowHead | None = None  # the last step's
        self.step_times: deque[float] = deque(maxlen=20)
        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"),
            TextColumn("{task.fields[rate]} it/s"),
            TimeRemainingColumn(),
            console=console,
            disable=not (c.progress and console.is_terminal),
        )
        self.plain = c.progress and self.bar.disable  # not a terminal: a line per row instead of the bar
        self.task = self.bar.add_task(
            "train",
            total=self.total_steps,
            completed=s.step,
            losses="",
            rate="-",
            epoch=f"{s.epoch + 1}/{self.total_epochs}",
        )

        # metrics.csv: rewritten with the rows up to the checkpoint being resumed, then appended to
        self.path = RunFolder(run_dir).metrics
        rows = []
        if resume_step is not None and self.path.is_file():
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
        if c.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass
            else:
                self.tb = SummaryWriter(str(run_dir), purge_step=resume_step)

    def __enter__(self) -> TrainLog:
        self.bar.start()
        return self

    def __exit__(self, kind, *exc) -> None:
        self.flush(plain=kind is None or issubclass(kind, KeyboardInterrupt))  # an error's one line stands alone
        self.bar.stop()
        self.file.close()
        if self.tb is not None:
            self.tb.close()

    def flush(self, plain: bool = False) -> None:
        """The row of the steps since the last one, now: a checkpoint of this step is being written, or the session
        ends. The plain line only where ``plain`` (they come every ``log_every`` steps, and at a session's end)."""
        if self.window and self.last is not None:
            self._row(self.last, plain)

    def step(self, s: TrainState, losses: torch.Tensor, seconds: float) -> None:
        """After each step: the bar; every ``log_every`` steps, a row of mean losses (and the plain line)."""
        self.step_times.append(seconds)
        rate = len(self.step_times) / sum(self.step_times)
        last = _loss_text(dict(zip(LOSS_NAMES, losses.tolist())))
        # what the row of this step says besides its losses, kept for the session's last row: by the time the
        # log closes, an epoch's end may have moved the state on
        self.last = _RowHead(s.step, s.epoch + 1, s.opt_G.param_groups[0]["lr"], rate)
        epoch = f"{self.last.epoch}/{self.total_epochs}"
        self.bar.update(self.task, completed=s.step, epoch=epoch, rate=f"{rate:.2f}", losses=last)
        self.window.append(losses)
        if s.step % self.log_every == 0:
            self._row(self.last)

    def _row(self, head: _RowHead, plain: bool = True) -> None:
        """The mean losses of the steps since the last row, as the row of ``head``'s step (and, where the log is
        plain and ``plain`` is true, its line)."""
        mean = dict(zip(LOSS_NAMES, torch.stack(self.window).mean(0).tolist()))
        self.window.clear()
        self.writer.writerow(
            {
                "step": head.step,
                "epoch": head.epoch,
                "lr": f"{head.lr:.6g}",
                "steps_per_s": f"{head.rate:.3f}",
                **{k: f"{v:.6f}" for k, v in mean.items()},
            }
        )
        self.file.flush()
        if self.tb is not None:
            for name, value in mean.items():
                self.tb.add_scalar(f"loss/{name}", value, head.step)
            self.tb.add_scalar("lr", head.lr, head.step)
        if self.plain and plain:
            self.console.print(
                f"epoch {head.epoch}/{self.total_epochs} step {head.step}/{self.total_steps} {_loss_text(mean)} "
                f"{head.rate:.2f} it/s",
                highlight=False,
            )

    def evaluation(self, result: Evaluation, epoch: int) -> None:
        """--eval-every's scores: a row of their own in metrics.csv (the loss cells empty), TensorBoard scalars and
        a line with the time they took."""
        self.writer.writerow(
            {"step": result.step, "epoch": epoch + 1, **{k: f"{v:.6g}" for k, v in result.metrics.items()}}
        )
        self.file.flush()
        if self.tb is not None:
            for name, value in result.metrics.items():
                self.tb.add_scalar(f"eval/{name}", value, result.step)
        self.console.print(escape(result.line()), highlight=False)

    def warn(self, text: str) -> None:
        """A warning above the bar."""
        self.console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False)


class QuietLog:
    """The log of a rank other than 0: rank 0 shows and records the mean losses of all ranks."""

    def __enter__(self) -> QuietLog:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def step(self, s: TrainState, losses: torch.Tensor, seconds: float) -> None:
        pass

    def flush(self, plain: bool = False) -> None:
        pass

    def evaluation(self, result: Evaluation, epoch: int) -> None:
        pass

    def warn(self, text: str) -> None:
        pass
