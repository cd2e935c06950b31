"""What ``cyc run`` shows a person: progress as it goes and a closing summary, both on stderr.

On a terminal the progress is a live bar; in a log (a batch job, CI, ``nohup``) it is a plain line at a steady
pace instead, so that a long film does not print nothing for an hour.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgressBar
from rich.table import Table

from cyclegan_cli.pace import Pace
from cyclegan_cli.translation.jobs import Job, JobResult, Progress


def stderr_console() -> Console:
    return Console(stderr=True)


def progress_for(console: Console) -> Progress:
    """A live bar on a terminal, plain lines elsewhere. Use it as a context manager."""
    return RichProgress(console) if console.is_terminal else PlainProgress(console)


class PlainProgress(Progress):
    """One line every ``every_s`` seconds or ``every_fraction`` of the run's frames, whichever comes first:
    frames done, frames/s and the time left."""

    def __init__(self, console: Console, every_s: float = 10.0, every_fraction: float = 0.05):
        self.console = console
        self.pace = Pace(every_s, every_fraction)
        self.total: int | None = None
        self.done = 0
        self.started = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def planned(self, total_frames: int | None) -> None:
        self.total = self.pace.total = total_frames or None

    def job_started(self, job: Job, total_frames: int | None) -> None:
        if self.done == 0:  # the clock starts with the first file, after the engine is built and warmed up
            self.started = time.monotonic()
            self.pace.restart(0)

    def frames_done(self, job: Job, count: int) -> None:
        self.done += count
        last = self.total is not None and self.done == self.total
        if not self.pace.due(self.done) and not last:
            return
        now = time.monotonic()
        fps = self.done / (now - self.started) if now > self.started else 0.0
        line = f"progress: {self.done}"
        if self.total:
            line += f"/{self.total} frames ({100 * min(self.done, self.total) // self.total}%)"
        else:
            line += " frames"
        line += f", {fps:.2f} frames/s"
        if self.total and fps > 0 and self.total > self.done:
            line += f", about {duration_text((self.total - self.done) / fps)} left"
        self.console.print(line, highlight=False, markup=False)


def duration_text(seconds: float) -> str:
    """Seconds as a person reads them: "45 s", "12 min", "2 h 5 min" (rounded to the unit shown)."""
    seconds = round(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {round(seconds % 3600 / 60)} min"


class RichProgress(Progress):
    """One bar per file in hand and one for the whole run: frames, frames/s and time left."""

    def __init__(self, console: Console):
        self._bar = RichProgressBar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[fps]} fps"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._files: dict[int, int] = {}
        self._overall = None

    def __enter__(self):
        self._bar.__enter__()
        self._overall = self._bar.add_task("all files", total=None, fps="-")
        return self

    def __exit__(self, *exc):
        self._bar.__exit__(*exc)

    def planned(self, total_frames: int | None) -> None:
        self._bar.update(self._overall, total=total_frames or None)

    def job_started(self, job: Job, total_frames: int | None) -> None:
        name = job.source.name if len(job.source.name) <= 40 else job.source.name[:37] + "..."
        self._files[id(job)] = self._bar.add_task(name, total=total_frames, fps="-")

    def frames_done(self, job: Job, count: int) -> None:
        for task_id in (self._files.get(id(job)), self._overall):
            if task_id is not None:
                self._bar.advance(task_id, count)
                task = next(t for t in self._bar.tasks if t.id == task_id)
                speed = task.finished_speed or task.speed
                self._bar.update(task_id, fps=f"{speed:.1f}" if speed else "-")

    def job_finished(self, result: JobResult) -> None:
        task_id = self._files.pop(id(result.job), None)
        if task_id is not None:
            self._bar.remove_task(task_id)


def print_summary(console: Console, report) -> None:
    stats, plan = report.stats, report.plan
    table = Table(title="cyc run", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("files done", str(stats.count("done")))
    if plan.skipped_existing:
        table.add_row("skipped (output exists)", str(len(plan.skipped_existing)))
    if plan.ignored:
        table.add_row("ignored (not an image or video)", str(len(plan.ignored)))
    bad = stats.count("failed") + stats.count("interrupted")
    table.add_row("failed", f"[red]{bad}[/red]" if bad else "0")
    table.add_row("frames", str(stats.frames))
    table.add_row(
        "frames/s",
        f"{stats.fps:.2f} (engine alone {stats.frames / stats.engine_seconds:.2f})" if stats.engine_seconds else "-",
    )
    table.add_row("engine", escape(f"{report.engine} ({report.reason})"))
    table.add_row("time to first frame", f"{report.setup_seconds:.1f} s")
    console.print(table)
    print_failures(console, stats.results)


def print_failures(console: Console, results: list[JobResult]) -> None:
    """Each input that failed (or was cut short), on its own line."""
    for result in results:
        if result.status in ("failed", "interrupted"):
            kept = f" (kept {result.partial})" if result.partial else ""
            console.print(
                f"failed: {result.message or result.job.source}{kept}", highlight=False, markup=False, soft_wrap=True
            )
