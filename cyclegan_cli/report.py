"""What ``cyc run`` shows a person: a live progress display and a closing summary, both on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgressBar
from rich.table import Table

from cyclegan_cli.pipeline import Job, JobResult, Progress


def stderr_console() -> Console:
    return Console(stderr=True)


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
            disable=not console.is_terminal,
        )
        self._files: dict[int, int] = {}
        self._overall = None

    def __enter__(self):
        self._bar.__enter__()
        self._overall = self._bar.add_task("all files", total=None, fps="-")
        return self

    def __exit__(self, *exc):
        self._bar.__exit__(*exc)

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
    table.add_row("frames/s", f"{stats.fps:.2f} (engine alone {stats.frames / stats.engine_seconds:.2f})"
                  if stats.engine_seconds else "-")
    table.add_row("engine", escape(f"{report.engine} ({report.reason})"))
    table.add_row("time to first frame", f"{report.setup_seconds:.1f} s")
    console.print(table)
    for result in stats.results:
        if result.status in ("failed", "interrupted"):
            kept = f" (kept {result.partial})" if result.partial else ""
            console.print(f"failed: {result.message or result.job.source}{kept}", highlight=False, markup=False,
                          soft_wrap=True)
