"""``cyc run``'s units of work: a :class:`Job` per input file, its :class:`JobResult`, the :class:`Progress` a
pipeline reports to, and :func:`plan_jobs`, which turns the command line's inputs into jobs.

Planning decides which files, which reader and writer, and where each output goes. Every check that needs no
decoding happens here, before any work: no such path, an output that would overwrite an input, two inputs
writing the same output, outputs that already exist.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from cyclegan_cli import registry
from cyclegan_cli.errors import InputError, UsageError
from cyclegan_cli.files import GLOB_CHARACTERS, glob_files, walk_files
from cyclegan_cli.plugin_api import MediaInfo, Reader, WriteOptions, Writer
from cyclegan_cli.translation.segments import MAX_SEGMENTS, Segment, cut, segment_path
from cyclegan_cli.translation.sharding import Shard, assign


@dataclass(eq=False)
class Job:
    """One input file (or one segment of a video) and the output it becomes. Compared by identity: two jobs
    are never the same job."""

    source: Path
    output: Path
    reader: type[Reader]
    writer: type[Writer]
    segment: Segment | None = None  # a piece of a long video (cyc run --segments)

    def open_reader(self, max_frames: int | None) -> Reader:
        return open_reader(self.reader, self.source, max_frames, self.segment)

    def write_options(self, options: WriteOptions) -> WriteOptions:
        """A segment is written without audio (its join copies the source's in one piece) and without frame
        reordering, tagged with what it is part of."""
        if self.segment is None:
            return options
        tags = {**options.metadata, **self.segment.tags(self.source)}
        return dataclasses.replace(options, audio=False, reorder=False, metadata=tags)


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
    notes: list[str] = field(default_factory=list)  # what the user should know: the shard taken, segments


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
    segments: int | None = None,
    shard: Shard | None = None,
    max_frames: int | None = None,
) -> Plan:
    """The jobs for ``inputs``: every video cut into ``segments`` pieces if asked, then ``shard``'s share of
    them (decided from the inputs alone), then the outputs checked (and with ``skip_existing`` thinned)."""
    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing contradict each other: pass one of them")
    if segments is not None and not 1 <= segments <= MAX_SEGMENTS:
        raise UsageError(f"--segments {segments}: use 1 to {MAX_SEGMENTS}")
    if segments is not None and segments > 1 and max_frames is not None:
        raise UsageError("--segments with --max-frames would preview each piece, not the video: pass one of them")
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
    _check_clashes(plan)
    if segments is not None and segments > 1:
        plan.jobs = [piece for job in plan.jobs for piece in _cut(job, segments, plan)]
    if shard is not None:
        _take_share(plan, shard, max_frames)
    _check_existing(plan, overwrite, skip_existing)
    return plan


def open_reader(reader: type[Reader], source: Path, max_frames: int | None, segment: Segment | None) -> Reader:
    """``reader`` on ``source``; for a segment, only its window of the video."""
    if segment is None:
        return reader(source, max_frames=max_frames)
    return reader(source, max_frames=max_frames, window=segment.window)


def probe(job: Job, max_frames: int | None = None) -> MediaInfo | None:
    """What a job's input holds, from its header (an image's, or the reader's for a video), not decoded; None
    when it cannot be read (the pipeline reports that file when it reaches it). Planning asks for the same
    header more than once (cutting, sharing out, the engine's workload): each file is opened once, and again
    only if it changed."""
    try:
        stat = job.source.stat()
    except OSError:
        return None
    return _probe(job.source, job.reader, job.segment, max_frames, (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4096)
def _probe(
    source: Path, reader: type[Reader], segment: Segment | None, max_frames: int | None, _stamp
) -> MediaInfo | None:
    from cyclegan_cli.imageio import image_size

    if reader.kind == "image":
        size = image_size(source)
        return MediaInfo("image", *size, frame_count=1) if size else None
    try:
        with open_reader(reader, source, max_frames, segment) as opened:
            return opened.info
    except Exception:  # noqa: BLE001 - any input's failure is reported when the pipeline reaches it
        return None


def _cut(job: Job, count: int, plan: Plan) -> list[Job]:
    """A video job as ``count`` segment jobs (each written to ``<output>.seg<k>of<count>``); anything else as it is."""
    if job.reader.kind != "video":
        return [job]
    info = probe(job) if job.reader.supports_window and job.writer.can_join(job.output) else None
    duration = info.extra.get("duration") if info is not None else None
    if not duration:
        if not job.reader.supports_window:
            why = "its reader cannot start mid-file"
        elif not job.writer.can_join(job.output):
            why = f"'{job.output.suffix}' files cannot be joined again"
        else:
            why = "its duration is unknown"
        plan.notes.append(f"{job.source}: not cut into segments ({why}); translated whole")
        return [job]
    start = Fraction(info.extra.get("start_time") or 0)
    return [
        dataclasses.replace(job, output=segment_path(job.output, s.number, count), segment=s)
        for s in cut(duration, count, start)
    ]


def _take_share(plan: Plan, shard: Shard, max_frames: int | None) -> None:
    """Keep ``shard``'s jobs: balanced by work (frames x pixels), the same split in every process."""
    work = []
    for job in plan.jobs:
        info = probe(job, max_frames)
        work.append((info.frame_count or 1) * info.width * info.height if info is not None else 0.0)
    mine = assign(work, shard.count)
    total = sum(work) or 1.0
    plan.jobs = [job for job, owner in zip(plan.jobs, mine) if owner == shard.index]
    share = sum(w for w, owner in zip(work, mine) if owner == shard.index) / total
    plan.notes.append(f"shard {shard} ({shard.source}): {len(plan.jobs)} of {len(work)} files, {share:.0%} of the work")


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
        matches = glob_files(spec)
        if not matches:
            raise UsageError(f"{spec}: no file matches this pattern")
        return [s for m in matches if (s := _readable(m, None, plan))]
    raise UsageError(f"{spec}: no such file or folder")


def _walk(folder: Path, out: Path | None, plan: Plan) -> list[_Source]:
    return [s for path in walk_files(folder, out) if (s := _readable(path, folder, plan))]


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


def _check_clashes(plan: Plan) -> None:
    """Across all jobs, before any share is taken: no two write one output, none overwrites an input."""
    inputs = {job.source.resolve() for job in plan.jobs}
    clashes = [o for o, n in Counter(job.output.resolve() for job in plan.jobs).items() if n > 1]
    if clashes:
        raise UsageError(
            f"{clashes[0]}: several inputs would be written to this one output; use separate --out folders"
        )
    for job in plan.jobs:
        if job.output.resolve() in inputs:
            raise UsageError(f"{job.output}: this output would overwrite an input; choose another --out")


def _check_existing(plan: Plan, overwrite: bool, skip_existing: bool) -> None:
    existing = [job for job in plan.jobs if job.output.exists()]
    if skip_existing:
        plan.skipped_existing = [job.output for job in existing]
        plan.jobs = [job for job in plan.jobs if not job.output.exists()]
    elif existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise UsageError(f"{existing[0].output} exists{more}: pass --overwrite to replace, or --skip-existing")
