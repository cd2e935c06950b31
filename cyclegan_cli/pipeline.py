"""The frame pipeline: decode, translate and encode overlap, and nothing is dropped or reordered.

    reader thread ──bounded queue──> main thread: batcher + engine ──bounded queue──> writer thread

One reader thread walks the jobs in order and emits, per job, a ``start`` event, its frames and an ``end`` event
(or ``fail`` with a one-line reason). The main thread batches consecutive frames of the same size (across jobs:
a folder of 256x256 photos is batched too), runs the engine, and forwards every event in the order it came. The
writer thread opens a writer per job, writes, and commits or aborts it. The slowest stage sets the pace; the
bounded queues keep a 4K video from filling memory.

Rules (as in PySceneDetect): worker threads keep their exception and always put a sentinel in ``finally``; the
main thread re-raises it, sets the stop event, drains and joins. On Ctrl-C the writer aborts the job in hand,
which keeps a video's frames so far as a playable ``.partial`` file, and the pipeline raises ``Interrupted``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cyclegan_cli.errors import CycError, InputError
from cyclegan_cli.framing import MIN_SIDE
from cyclegan_cli.plugin_api import Engine, Frame, Reader, SourceInfo, WriteOptions, Writer

QUEUE_FRAMES = 16  # per queue: enough to keep every stage busy, small enough for 4K frames
_END = object()  # the sentinel a worker thread always puts last


class Interrupted(CycError):
    """Ctrl-C: what was done is kept (finished files, a video's ``.partial`` file)."""

    exit_code = 130


@dataclass
class Job:
    """One input file and the output it becomes."""

    source: Path
    output: Path
    reader: type[Reader]
    writer: type[Writer]


@dataclass
class JobResult:
    job: Job
    status: str = "pending"  # done, failed, interrupted
    frames: int = 0
    message: str = ""
    partial: Path | None = None


@dataclass
class PipelineStats:
    results: list[JobResult] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    engine_seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)


@dataclass
class _Start:
    job: Job
    source: SourceInfo


@dataclass
class _Frame:
    job: Job
    frame: Frame
    output: np.ndarray | None = None


@dataclass
class _End:
    job: Job
    error: str | None = None  # a one-line reason when the job failed while reading


class Progress:
    """What the pipeline reports as it goes; the CLI renders it with rich, tests may record it."""

    def job_started(self, job: Job, total_frames: int | None) -> None: ...

    def frames_done(self, job: Job, count: int) -> None: ...

    def job_finished(self, result: JobResult) -> None: ...


class Pipeline:
    def __init__(
        self,
        engine: Engine,
        options: WriteOptions,
        *,
        batch_size: int = 1,
        max_frames: int | None = None,
        compare: bool = False,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        progress: Progress | None = None,
    ):
        self.engine = engine
        self.options = options
        self.batch_size = max(1, batch_size)
        self.max_frames = max_frames
        self.compare = compare
        self.transform = transform  # e.g. a resize to --size, applied in the reader thread
        self.progress = progress or Progress()
        self._stop = threading.Event()
        self._decoded: queue.Queue = queue.Queue(QUEUE_FRAMES)
        self._translated: queue.Queue = queue.Queue(QUEUE_FRAMES)
        self._errors: list[BaseException] = []

    def run(self, jobs: Iterable[Job]) -> PipelineStats:
        stats = PipelineStats()
        jobs = list(jobs)
        reader = threading.Thread(target=self._guard, args=(self._read_all, jobs), name="cyc-reader", daemon=True)
        writer = threading.Thread(target=self._guard, args=(self._write_all, stats), name="cyc-writer", daemon=True)
        started = time.perf_counter()
        reader.start()
        writer.start()
        try:
            self._translate_all(stats)
        except KeyboardInterrupt:
            self._stop.set()
            self._drain(self._decoded)
            self._put(self._translated, _END, force=True)
            writer.join()
            reader.join()
            partial = [r.partial for r in stats.results if r.partial]
            kept = f"; kept the frames done so far in {', '.join(map(str, partial))}" if partial else ""
            done = stats.count("done")
            raise Interrupted(f"interrupted after {done} finished file(s){kept}") from None
        except BaseException:
            self._stop.set()
            self._drain(self._decoded)
            self._put(self._translated, _END, force=True)
            raise
        finally:
            reader.join()
            writer.join()
            stats.seconds = time.perf_counter() - started
        if self._errors:
            raise self._errors[0]
        return stats

    # --- the three stages ------------------------------------------------------------------------------------

    def _read_all(self, jobs: list[Job]) -> None:
        try:
            for job in jobs:
                if self._stop.is_set():
                    return
                self._read_one(job)
        finally:
            self._put(self._decoded, _END, force=True)

    def _read_one(self, job: Job) -> None:
        try:
            reader = job.reader(job.source, max_frames=self.max_frames)
        except InputError as error:
            self._put(self._decoded, _End(job, str(error)))
            return
        with reader:
            self._put(self._decoded, _Start(job, SourceInfo.of(reader)))
            try:
                for frame in reader.frames():
                    if self._stop.is_set():
                        return
                    if self.transform is not None:
                        frame = self.transform(frame)
                    height, width = frame.image.shape[:2]
                    if min(height, width) < MIN_SIDE:
                        raise InputError(
                            f"{job.source}: {width}x{height} is too small to translate (at least {MIN_SIDE}x{MIN_SIDE} "
                            "px); enlarge it with --size"
                        )
                    self._put(self._decoded, _Frame(job, frame))
            except InputError as error:
                self._put(self._decoded, _End(job, str(error)))
                return
        self._put(self._decoded, _End(job))

    def _translate_all(self, stats: PipelineStats) -> None:
        """Batch consecutive same-size frames, run the engine, pass every event on in its order."""
        pending: list = []  # events waiting for the batch in hand to be translated
        batch: list[_Frame] = []
        while True:
            item = self._decoded.get()
            if item is _END:
                break
            if isinstance(item, _Frame):
                if batch and item.frame.image.shape != batch[0].frame.image.shape:
                    self._flush(batch, pending, stats)
                    batch, pending = [], []
                batch.append(item)
            pending.append(item)
            if len(batch) == self.batch_size:
                self._flush(batch, pending, stats)
                batch, pending = [], []
            elif not batch:
                self._forward(pending)
                pending = []
        if not self._errors:  # a worker failed: stop here, run() re-raises its error
            if batch:
                self._flush(batch, pending, stats)
            else:
                self._forward(pending)
        self._put(self._translated, _END, force=True)

    def _flush(self, batch: list[_Frame], pending: list, stats: PipelineStats) -> None:
        images = np.stack([f.frame.image for f in batch])
        started = time.perf_counter()
        outputs = self.engine(images)
        stats.engine_seconds += time.perf_counter() - started
        for item, out in zip(batch, outputs):
            item.output = np.concatenate([item.frame.image, out], axis=1) if self.compare else out
        self._forward(pending)

    def _forward(self, items: list) -> None:
        for item in items:
            self._put(self._translated, item)

    def _write_all(self, stats: PipelineStats) -> None:
        writer: Writer | None = None
        result: JobResult | None = None
        try:
            while True:
                item = self._translated.get()
                if item is _END:
                    break
                if isinstance(item, _Start):
                    result = JobResult(item.job)
                    stats.results.append(result)
                    self.progress.job_started(item.job, item.source.info.frame_count)
                    writer = self._open_writer(item, result)
                elif isinstance(item, _Frame):
                    if writer is None:  # the job failed: its remaining frames are dropped with it, reported
                        continue
                    try:
                        writer.write(item.frame, item.output)
                    except (InputError, OSError) as error:
                        result.status, result.message = "failed", _one_line(item.job.source, error)
                        writer.abort()
                        writer = None
                        continue
                    result.frames += 1
                    stats.frames += 1
                    self.progress.frames_done(item.job, 1)
                elif isinstance(item, _End):
                    if result is None or result.job is not item.job:  # failed before it started
                        result = JobResult(item.job)
                        stats.results.append(result)
                    if item.error is not None:
                        result.status, result.message = "failed", item.error
                        if writer is not None:
                            result.partial = writer.abort()
                    elif writer is not None:
                        try:
                            writer.commit()
                            result.status = "done"
                        except (InputError, OSError) as error:
                            result.status, result.message = "failed", _one_line(item.job.source, error)
                            writer.abort()
                    self.progress.job_finished(result)
                    writer, result = None, None
        finally:
            if writer is not None:  # stopped in the middle of a job: keep what a viewer can use
                result.partial = writer.abort()
                result.status = "interrupted"
                self.progress.job_finished(result)
            self._stop.set()

    def _open_writer(self, start: _Start, result: JobResult) -> Writer | None:
        try:
            return start.job.writer(start.job.output, start.source, self.options)
        except (InputError, OSError) as error:
            result.status, result.message = "failed", _one_line(start.job.output, error)
            return None

    # --- thread plumbing -------------------------------------------------------------------------------------

    def _guard(self, target, arg) -> None:
        """Run a worker; keep its exception for the main thread, which re-raises it."""
        try:
            target(arg)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            self._errors.append(error)
            self._stop.set()

    def _put(self, q: queue.Queue, item, force: bool = False) -> None:
        """Put without blocking forever: give up when the pipeline stops (unless ``force``: a sentinel)."""
        while True:
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    if not force:
                        return
                    self._drain(q)

    @staticmethod
    def _drain(q: queue.Queue) -> None:
        try:
            while True:
                q.get_nowait()
        except queue.Empty:
            pass


def _one_line(path: Path, error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if str(path) in text else f"{path}: {text}"
