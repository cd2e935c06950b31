"""``cyc run``'s units of work: a :class:`Job` per input file, its :class:`JobResult`, the :class:`Progress` a
pipeline reports to, and :func:`plan_jobs`, which turns the command line's inputs into jobs.

Planning decides which files, which reader and writer, and where each output goes. Every check that needs no
decoding happens here, before any work: no such path, an output that would overwrite an input, two inputs
writing the same output, outputs that already exist.
"""

from __future__ import annotations

import glob
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cyclegan_cli import registry
from cyclegan_cli.errors import InputError, UsageError
from cyclegan_cli.plugin_api import Reader, Writer

GLOB_CHARACTERS = frozenset("*?[")


@dataclass(eq=False)
class Job:
    """One input file and the output it becomes. Compared by identity: two jobs are never the same job."""

    source: Path
    output: Path
    reader: type[Reader]
    writer: type[Writer]


@dataclass
class JobResult:
    job: Job
    status: str = "pending"  # done, failed, interrupted
    frames: int = 0
    message: str = ""  # one line, naming the file, when it failed
    partial: Path | None = None  # a video's frames so far, kept playable
    error: BaseException | None = None  # what made it fail, for --debug's traceback


class Progress:
    """What the pipeline reports as it goes; the CLI renders it (a live bar, or plain lines in a log), tests may
    record it. Called from the writer thread, except ``planned``."""

    def planned(self, total_frames: int | None) -> None:
        """The whole run's frames (known or estimated from the headers), before the first job starts."""

    def job_started(self, job: Job, total_frames: int | None) -> None: ...

    def frames_done(self, job: Job, count: int) -> None: ...

    def job_finished(self, result: JobResult) -> None: ...


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    skipped_existing: list[Path] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)  # files in a folder that no reader takes (e.g. .txt)


@dataclass
class _Source:
    path: Path
    root: Path | None  # the folder it was found in (its tree is mirrored), None for a file or a glob match
    reader: type


def plan_jobs(
    inputs: list[str],
    *,
    direction: str,
    out: str | None = None,
    ext: str | None = None,
    overwrite: bool = False,
    skip_existing: bool = False,
) -> Plan:
    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing contradict each other: pass one of them")
    plan = Plan()
    out_path = Path(out) if out else None
    sources = [s for spec in inputs for s in _expand(spec, out_path, plan)]
    if not sources:
        raise UsageError(f"nothing to translate in {', '.join(inputs)}: no image or video files found")
    if ext is not None and not ext.startswith("."):
        ext = "." + ext
    folder_roots = {s.root for s in sources if s.root is not None}
    single_file = len(inputs) == 1 and len(sources) == 1 and sources[0].root is None
    if out_path is not None and out_path.suffix and not single_file and not out_path.is_dir():
        raise UsageError(f"--out {out_path}: names one file, but the inputs are several; give a folder name")
    for source in sources:
        output = _output_for(source, direction, out_path, ext, single_file, len(inputs) > 1 or len(folder_roots) > 1)
        try:
            writer = registry.writer_for(output)
        except InputError:
            raise UsageError(
                f"{output}: no writer for '{output.suffix}' files; choose another --out or --ext"
            ) from None
        plan.jobs.append(Job(source=source.path, output=output, reader=source.reader, writer=writer))
    _check_outputs(plan, overwrite, skip_existing)
    return plan


def _expand(spec: str, out: Path | None, plan: Plan) -> list[_Source]:
    path = Path(spec)
    if path.is_file():
        try:
            return [_Source(path, None, registry.reader_for(path))]
        except InputError as error:
            raise UsageError(str(error)) from None
    if path.is_dir():
        return _walk(path, out, plan)
    if GLOB_CHARACTERS & set(spec):
        matches = [Path(m) for m in sorted(glob.glob(spec, recursive=True)) if Path(m).is_file()]
        if not matches:
            raise UsageError(f"{spec}: no file matches this pattern")
        return [s for m in matches if (s := _readable(m, None, plan))]
    raise UsageError(f"{spec}: no such file or folder")


def _walk(folder: Path, out: Path | None, plan: Plan) -> list[_Source]:
    skip_under = out.resolve() if out is not None else None
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue  # hidden files and folders, including our own temporary files
        if skip_under is not None and path.resolve().is_relative_to(skip_under):
            continue  # an --out folder inside the input tree: never translate our own outputs
        if source := _readable(path, folder, plan):
            found.append(source)
    return found


def _readable(path: Path, root: Path | None, plan: Plan) -> _Source | None:
    try:
        return _Source(path, root, registry.reader_for(path))
    except InputError:
        plan.ignored.append(path)
        return None


def _output_for(
    source: _Source, direction: str, out: Path | None, ext: str | None, single_file: bool, many_roots: bool
) -> Path:
    suffix = ext if ext is not None and source.reader.kind == "image" else source.path.suffix
    if out is not None and single_file and out.suffix:
        return out
    if source.root is None:  # a file, or a glob match
        if out is None:
            return source.path.with_name(f"{source.path.stem}_{direction}{suffix}")
        return out / source.path.with_suffix(suffix).name
    relative = source.path.relative_to(source.root).with_suffix(suffix)
    if out is None:
        root = source.root.resolve() if source.root.name in ("", "..") else source.root  # '.' and '..' have no name
        return root.parent / f"{root.name}_{direction}" / relative
    return (out / source.root.name / relative) if many_roots else out / relative


def _check_outputs(plan: Plan, overwrite: bool, skip_existing: bool) -> None:
    inputs = {job.source.resolve() for job in plan.jobs}
    clashes = [o for o, n in Counter(job.output.resolve() for job in plan.jobs).items() if n > 1]
    if clashes:
        raise UsageError(
            f"{clashes[0]}: several inputs would be written to this one output; use separate --out folders"
        )
    for job in plan.jobs:
        if job.output.resolve() in inputs:
            raise UsageError(f"{job.output}: this output would overwrite an input; choose another --out")
    existing = [job for job in plan.jobs if job.output.exists()]
    if skip_existing:
        plan.skipped_existing = [job.output for job in existing]
        plan.jobs = [job for job in plan.jobs if not job.output.exists()]
    elif existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise UsageError(f"{existing[0].output} exists{more}: pass --overwrite to replace, or --skip-existing")
