"""The frame pipeline: decode, translate and encode overlap, and nothing is dropped or reordered.

    reader thread ──bounded queue──> main thread: batcher + engine ──bounded queue──> writer thread

One reader thread walks the jobs in order and emits, per job, a ``start`` event, its frames and an ``end`` event
(with a one-line reason when the job failed while reading). The main thread batches consecutive frames of the
same size (across jobs: a folder of 256x256 photos is batched too), runs the engine, and forwards every event in
the order it came. The writer thread opens a writer per job, writes, and commits or aborts it. The slowest
stage sets the pace; the bounded queues keep a 4K video from filling memory.

A failure belongs to the job it happened in. Any exception while reading, translating or writing one job fails
that job alone (its result holds the one-line reason and the exception), and the others go on. When a job fails
on the writing side (an unwritable folder, a full disk), its reading is cancelled at once, so the rest of a
two-hour film is not decoded and translated for nothing.

Thread rules (as in PySceneDetect): a worker thread records its own unexpected exception first and then, in
``finally``, puts the end sentinel, so the main thread never mistakes a crash for a clean end; the main thread
re-raises it. Every way out of :meth:`Pipeline.run` goes through one shutdown: set the stop event (unless all
went well), let the writer finish or abort the job in hand, join both threads. On Ctrl-C the writer aborts the
job in hand, which keeps a video's frames so far as a playable ``.partial`` file, and the pipeline raises
:class:`Interrupted`.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cyclegan_cli.errors import CycError, InputError, first_line
from cyclegan_cli.framing import MIN_SIDE
from cyclegan_cli.plugin_api import Engine, Frame, SourceInfo, WriteOptions, Writer
from cyclegan_cli.translation.jobs import Job, JobResult, Progress
from cyclegan_cli.translation.temporal import StableSettings, StreamState

QUEUE_FRAMES = 16  # per queue: enough to keep every stage busy
QUEUE_BYTES = 128 * 2**20  # ... and no more bytes than this per queue (at least 2 frames): 5 frames of 4K, 2 of 8K
_END = object()  # the sentinel a worker thread always puts last


def queue_frames(width: int, height: int) -> int:
    """How many frames of this size each of the pipeline's two queues holds: 4K frames queued 16 deep would hold
    800 MB of RGB while a slow engine works."""
    return max(2, min(QUEUE_FRAMES, QUEUE_BYTES // (3 * width * height)))


class Interrupted(CycError):
    """Ctrl-C: what was done is kept (finished files, a video's ``.partial`` file); ``stats`` says what."""

    exit_code = 130

    def __init__(self, message: str, stats: PipelineStats):
        super().__init__(message)
        self.stats = stats


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


# --- the events that travel through the queues -------------------------------------------------------------------


@dataclass
class _Start:
    job: Job
    source: SourceInfo


@dataclass
class _Frame:
    job: Job
    frame: Frame
    output: np.ndarray | None = None
    error: BaseException | None = None  # the engine failed on the batch this frame was in


@dataclass
class _End:
    job: Job
    error: BaseException | None = None  # why the job failed while reading


class _Flow:
    """One pass of frames through the threads of :meth:`Pipeline.run`: its queues, its stop event, its workers'
    errors, the jobs whose reading is cancelled, the video streams' ``--stable`` state."""

    def __init__(self, depth: int) -> None:
        self.decoded: queue.Queue = queue.Queue(depth)
        self.translated: queue.Queue = queue.Queue(depth)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []  # unexpected exceptions of the worker threads
        self.cancelled: set[int] = set()  # id() of jobs that failed while writing: read no further
        self.streams: dict[int, StreamState] = {}  # id() of a video job -> its --stable state

    def cancel(self, job: Job) -> None:
        self.cancelled.add(id(job))

    def is_cancelled(self, job: Job) -> bool:
        return id(job) in self.cancelled

    def put(self, q: queue.Queue, item, *, sentinel: bool = False) -> None:
        """Put without blocking forever: give up when the run stops, unless ``sentinel`` (which must arrive:
        then the queue is emptied to make room)."""
        while True:
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():
                    if not sentinel:
                        return
                    drain(q)

    def worker(self, name: str, target: Callable[[], None], out: queue.Queue | None = None) -> _Worker:
        """A thread that runs ``target``, records an unexpected exception, then always puts the sentinel into
        ``out`` (the queue downstream, if any)."""

        finished = threading.Event()

        def body() -> None:
            try:
                target()
            except BaseException as error:  # noqa: BLE001 - handed to the main thread, which re-raises it
                self.errors.append(error)
                self.stop.set()
            finally:
                if out is not None:
                    self.put(out, _END, sentinel=True)
                finished.set()

        thread = threading.Thread(target=body, name=name, daemon=True)
        thread.start()
        return _Worker(thread, finished)


@dataclass
class _Worker:
    thread: threading.Thread
    finished: threading.Event  # set as the thread's last act


def drain(q: queue.Queue) -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


class Pipeline:
    def __init__(
        self,
        engine: Engine,
        options: WriteOptions,
        *,
        batch_size: int = 1,
        max_frames: int | None = None,
        compare: bool = False,
        transform: Callable[[Frame], Frame] | None = None,
        progress: Progress | None = None,
        stable: StableSettings | None = None,
        queue_frames: int = QUEUE_FRAMES,
    ):
        self.engine = engine
        self.queue_frames = queue_frames  # per queue: :func:`queue_frames` of the largest frames
        self.options = options
        self.batch_size = max(1, batch_size)
        self.max_frames = max_frames
        self.compare = compare
        self.transform = transform  # e.g. a resize to --size, applied in the reader thread
        self.progress = progress or Progress()
        self.stable = stable if stable is not None and stable.enabled else None  # videos only (temporal.py)

    def run(self, jobs: Iterable[Job]) -> PipelineStats:
        jobs = list(jobs)
        flow, stats = _Flow(self.queue_frames), PipelineStats()
        started = time.perf_counter()
        reader = flow.worker("cyc-reader", lambda: self._read_all(flow, jobs), flow.decoded)
        writer = flow.worker("cyc-writer", lambda: self._write_all(flow, stats))
        interrupted = finished = False
        try:
            self._translate_all(flow, stats)
            finished = True
        except KeyboardInterrupt:
            interrupted = True
        finally:
            # the one shutdown: stop the reader unless all was read, let the writer finish or abort, join both
            if not finished:
                flow.stop.set()
                drain(flow.decoded)
            flow.put(flow.translated, _END, sentinel=True)
            for worker in (reader, writer):
                while not worker.finished.is_set():
                    try:
                        drain(flow.decoded)  # a reader blocked on a full queue sees the stop event next time round
                        worker.finished.wait(0.1)  # (not Thread.join: a Ctrl-C inside it can mark a live thread dead)
                    except KeyboardInterrupt:  # Ctrl-C again: the writer is still saving what was done
                        interrupted = True
                        flow.stop.set()
                worker.thread.join()
            stats.seconds = time.perf_counter() - started
        if interrupted:
            partial = [r.partial for r in stats.results if r.partial]
            kept = f"; kept the frames done so far in {', '.join(map(str, partial))}" if partial else ""
            raise Interrupted(f"interrupted after {stats.count('done')} finished file(s){kept}", stats)
        if flow.errors:
            raise flow.errors[0]
        return stats

    # --- reading (the reader thread) -------------------------------------------------------------------------

    def _read_all(self, flow: _Flow, jobs: list[Job]) -> None:
        for job in jobs:
            if flow.stop.is_set():
                return
            try:
                self._read_one(flow, job)
            except Exception as error:  # noqa: BLE001 - any failure of one input fails that input alone
                flow.put(flow.decoded, _End(job, error))
            else:
                flow.put(flow.decoded, _End(job))

    def _read_one(self, flow: _Flow, job: Job) -> None:
        with job.open_reader(self.max_frames) as reader:
            flow.put(flow.decoded, _Start(job, SourceInfo.of(reader)))
            for frame in reader.frames():
                if flow.stop.is_set() or flow.is_cancelled(job):
                    return
                if self.transform is not None:
                    frame = self.transform(frame)
                height, width = frame.image.shape[:2]
                if min(height, width) < MIN_SIDE:
                    raise InputError(
                        f"{job.source}: {width}x{height} is too small to translate (at least {MIN_SIDE}x{MIN_SIDE} "
                        "px); enlarge it with --size"
                    )
                flow.put(flow.decoded, _Frame(job, frame))

    # --- translating (the main thread) -----------------------------------------------------------------------

    def _translate_all(self, flow: _Flow, stats: PipelineStats) -> None:
        """Batch consecutive same-size frames, run the engine, pass every event on in its order."""
        pending: list = []  # events waiting for the batch in hand to be translated
        batch: list[_Frame] = []
        while True:
            item = flow.decoded.get()
            if item is _END:
                break
            if isinstance(item, _Frame):
                if flow.is_cancelled(item.job):
                    continue  # its writer failed: translating the frames still queued would be wasted
                if batch and item.frame.image.shape != batch[0].frame.image.shape:
                    self._flush(flow, batch, pending, stats)
                    batch, pending = [], []
                batch.append(item)
            pending.append(item)
            if len(batch) == self.batch_size:
                self._flush(flow, batch, pending, stats)
                batch, pending = [], []
            elif not batch:
                self._forward(flow, pending)
                pending = []
        if flow.errors:  # a worker crashed: run() re-raises its error
            return
        if batch:
            self._flush(flow, batch, pending, stats)
        else:
            self._forward(flow, pending)

    def _flush(self, flow: _Flow, batch: list[_Frame], pending: list, stats: PipelineStats) -> None:
        started = time.perf_counter()
        try:
            outputs = self._translate(flow, batch)
        except Exception as error:  # noqa: BLE001 - fails the jobs whose frames were in this batch, not the run
            for item in batch:
                item.error = error
        else:
            for item, out in zip(batch, outputs):
                item.output = np.concatenate([item.frame.image, out], axis=1) if self.compare else out
        stats.engine_seconds += time.perf_counter() - started
        self._forward(flow, pending)

    def _translate(self, flow: _Flow, batch: list[_Frame]) -> list[np.ndarray]:
        """The engine's outputs for a batch; with --stable, each video's frames through its own stream state
        (a batch that spans two videos is run in two parts: state never crosses a job boundary)."""
        if self.stable is None:
            return list(self.engine(np.stack([f.frame.image for f in batch])))
        outputs: list[np.ndarray] = []
        for job, group in itertools.groupby(batch, key=lambda f: f.job):
            images = np.stack([f.frame.image for f in group])
            if job.reader.kind != "video":
                outputs += list(self.engine(images))  # a still image is translated as it is
                continue
            stream = flow.streams.get(id(job))
            if stream is None:
                carry = self.engine.carries_statistics and self.stable.norm_momentum > 0
                engine_state = self.engine.new_stream_state(self.stable.norm_momentum) if carry else None
                stream = flow.streams[id(job)] = StreamState(self.stable, engine_state)
            new_shot = [stream.starts_shot(image) for image in images]
            if stream.engine_state is not None:
                translated = self.engine.run_carried(images, stream.engine_state, new_shot)
            else:
                translated = self.engine(images)
            outputs += [stream.stabilise(i, o, cut) for i, o, cut in zip(images, translated, new_shot)]
        return outputs

    @staticmethod
    def _forward(flow: _Flow, items: list) -> None:
        for item in items:
            if isinstance(item, _End):
                flow.streams.pop(id(item.job), None)  # the job's frames are all translated: its state goes
            flow.put(flow.translated, item)

    # --- writing (the writer thread) -------------------------------------------------------------------------

    def _write_all(self, flow: _Flow, stats: PipelineStats) -> None:
        """The writer thread: each event of the translated queue to its handler, until the end."""
        writing = _Writing(flow, stats, self.progress, self.options)
        handlers = {_Start: writing.start, _Frame: writing.frame, _End: writing.end}
        try:
            while (item := flow.translated.get()) is not _END:
                handlers[type(item)](item)
        finally:
            writing.stop()


class _Writing:
    """What the writer thread holds between events: the job in hand, its result, and its open writer (None once
    that job failed: the frames of it still queued are passed over)."""

    def __init__(self, flow: _Flow, stats: PipelineStats, progress, options) -> None:
        self.flow, self.stats, self.progress, self.options = flow, stats, progress, options
        self.writer: Writer | None = None
        self.result: JobResult | None = None

    def start(self, item: _Start) -> None:
        """A job's first event: its result, and its writer opened."""
        self._new_result(item.job)
        self.progress.job_started(item.job, item.source.info.frame_count)
        try:
            self.writer = item.job.writer(item.job.output, item.source, item.job.write_options(self.options))
        except Exception as error:  # noqa: BLE001 - one job's failure
            self._fail(error, item.job.output)

    def frame(self, item: _Frame) -> None:
        """A translated frame written, or the job failed by its reading error or the writer's."""
        if self.result.status == "failed":
            return  # the frames left of a failed job, already in the queue
        if item.error is not None:
            self._fail(item.error, item.job.source)
            return
        try:
            self.writer.write(item.frame, item.output)
        except Exception as error:  # noqa: BLE001 - one job's failure
            self._fail(error, item.job.output)
            return
        self.result.frames += 1
        self.stats.frames += 1
        self.progress.frames_done(item.job, 1)

    def end(self, item: _End) -> None:
        """A job's last event: its output committed, unless it failed (while reading, or here)."""
        if self.result is None or self.result.job is not item.job:  # failed before it started
            self._new_result(item.job)
        if self.result.status != "failed":
            if item.error is not None:
                self._fail(item.error, item.job.source)
            else:
                try:
                    self.writer.commit()
                    self.result.status = "done"
                except Exception as error:  # noqa: BLE001 - one job's failure
                    self._fail(error, item.job.output)
        self.progress.job_finished(self.result)
        self.writer, self.result = None, None

    def stop(self) -> None:
        """The end of the thread: a job still in hand was interrupted; keep what a viewer can use."""
        if self.writer is not None:
            self.result.status = "interrupted"
            self.result.partial = safe_abort(self.writer, self.result)
            self.progress.job_finished(self.result)

    def _new_result(self, job: Job) -> None:
        self.result = JobResult(job)
        self.stats.results.append(self.result)

    def _fail(self, error: BaseException, path) -> None:
        """The job in hand failed: its message, what its writer leaves, and its reading cancelled."""
        self.result.status, self.result.message, self.result.error = "failed", one_line(path, error), error
        if self.writer is not None:
            self.result.partial = safe_abort(self.writer, self.result)
            self.writer = None
        self.flow.cancel(self.result.job)


def safe_abort(writer: Writer, result: JobResult) -> Path | None:
    """``writer.abort()``, whose own failure (a third-party writer, an encoder that cannot flush) is added to the
    job's message instead of ending the run."""
    try:
        return writer.abort()
    except Exception as error:  # noqa: BLE001 - the job has failed already; the others go on
        also = one_line(writer.path, error)
        result.message = f"{result.message}; then cleaning up failed: {also}" if result.message else also
        return None


def one_line(path, error: BaseException) -> str:
    """``path: first line of the error`` (the path once, even when the error names it already)."""
    text = first_line(error, named=True)
    return text if str(path) in text else f"{path}: {text}"
