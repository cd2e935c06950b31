"""The frame pipeline's failure paths, with readers, writers and engines that fail on purpose.

Each test has a timeout: a pipeline that hangs fails the test instead of the suite. No torch here: the engines
are plain callables, so these tests take milliseconds.
"""

from __future__ import annotations

import errno
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cyclegan_cli.errors import InputError
from cyclegan_cli.plugin_api import Frame, MediaInfo, Reader, WriteOptions, Writer
from cyclegan_cli.translation.jobs import Job, Progress
from cyclegan_cli.translation.pipeline import QUEUE_FRAMES, Interrupted, Pipeline

pytestmark = pytest.mark.timeout(30, method="thread")  # a hung thread cannot hold the main thread up

FRAMES = 200  # more than both queues hold, so that cancelling a job's reading is visible


class ScriptedReader(Reader):
    """Frames of a fixed size; the file name says how it fails: ``read-fails-at-N``, ``open-fails``."""

    name = kind = "scripted"
    yielded: dict[str, int] = {}  # frames handed out per file name, to see where reading stopped

    def __init__(self, path: Path, *, max_frames: int | None = None):
        super().__init__(path, max_frames=max_frames)
        if self.path.name == "open-fails":
            raise ValueError("unsupported pixel format")  # not an InputError: a library's own exception

    @property
    def info(self) -> MediaInfo:
        return MediaInfo("video", 8, 8, FRAMES)

    def frames(self):
        fail_at = int(self.path.name.rsplit("-", 1)[1]) if self.path.name.startswith("read-fails-at") else None
        for index in range(FRAMES):
            if index == fail_at:
                raise ValueError(f"corrupt packet at frame {index}")
            self.yielded[self.path.name] = index + 1
            yield Frame(index, np.full((8, 8, 3), index % 256, np.uint8))


class MemoryWriter(Writer):
    """Keeps the frames; the output name says how it fails: ``open-fails``, ``write-fails-at-N``, ``disk-full``."""

    name = kind = "memory"
    committed: dict[str, list[int]] = {}
    aborted: list[str] = []

    def __init__(self, path, source, options):
        super().__init__(path, source, options)
        if self.path.name == "open-fails":
            raise PermissionError(errno.EACCES, "Permission denied", str(self.path))
        self.indices: list[int] = []

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if self.path.name.startswith("write-fails-at") and frame.index == int(self.path.name.rsplit("-", 1)[1]):
            raise OSError(errno.EIO, "Input/output error")
        assert image.shape == frame.image.shape and image.dtype == np.uint8
        self.indices.append(frame.index)

    def commit(self) -> None:
        if self.path.name == "disk-full":
            raise OSError(errno.ENOSPC, "No space left on device")
        self.committed[self.path.name] = self.indices

    def abort(self) -> Path | None:
        self.aborted.append(self.path.name)
        return None


class Invert:
    """An engine: 255 - x. ``fail_on`` names a frame value (= index) whose batch raises."""

    def __init__(self, fail_on: int | None = None, exception: BaseException | None = None):
        self.fail_on, self.exception, self.calls = fail_on, exception, 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_on is not None and (batch[:, 0, 0, 0] == self.fail_on).any():
            raise self.exception or RuntimeError("CUDA out of memory")
        return 255 - batch


@pytest.fixture(autouse=True)
def _fresh_records():
    ScriptedReader.yielded.clear()
    MemoryWriter.committed.clear()
    MemoryWriter.aborted.clear()


def job(source: str, output: str | None = None) -> Job:
    return Job(Path(source), Path(output or f"{source}.out"), ScriptedReader, MemoryWriter)


def run(jobs, engine=None, **kwargs):
    return Pipeline(engine or Invert(), WriteOptions(), **kwargs).run(jobs)


def statuses(stats) -> dict[str, str]:
    return {r.job.source.name: r.status for r in stats.results}


def test_all_frames_arrive_in_order_and_translated():
    stats = run([job("a"), job("b")], batch_size=3)
    assert statuses(stats) == {"a": "done", "b": "done"}
    assert MemoryWriter.committed["a.out"] == list(range(FRAMES)) and stats.frames == 2 * FRAMES


def test_a_pipeline_runs_more_than_once():
    pipeline = Pipeline(Invert(), WriteOptions())
    assert statuses(pipeline.run([job("a")])) == {"a": "done"}
    assert statuses(pipeline.run([job("b")])) == {"b": "done"}


def test_a_reader_exception_mid_job_fails_that_job_alone():
    stats = run([job("a"), job("read-fails-at-7"), job("b")])
    assert statuses(stats) == {"a": "done", "read-fails-at-7": "failed", "b": "done"}
    failed = stats.results[1]
    assert failed.message == "read-fails-at-7: ValueError: corrupt packet at frame 7"
    assert isinstance(failed.error, ValueError) and "read-fails-at-7.out" in MemoryWriter.aborted


def test_a_reader_that_cannot_open_fails_that_job_alone():
    stats = run([job("open-fails"), job("a")])
    assert statuses(stats) == {"open-fails": "failed", "a": "done"}
    assert "unsupported pixel format" in stats.results[0].message


@pytest.mark.parametrize("output", ["write-fails-at-3", "open-fails"])
def test_a_failing_writer_cancels_that_jobs_reading(output):
    stats = run([job("a"), job("long", output), job("b")])
    assert statuses(stats) == {"a": "done", "long": "failed", "b": "done"}
    assert output in stats.results[1].message
    # reading stopped within the queues' reach, not after all FRAMES frames were decoded for nothing
    assert ScriptedReader.yielded["long"] <= 3 + 2 * QUEUE_FRAMES + 2
    assert MemoryWriter.committed["b.out"] == list(range(FRAMES))


def test_a_full_disk_at_commit_fails_that_job_alone():
    stats = run([job("a", "disk-full"), job("b")])
    assert statuses(stats) == {"a": "failed", "b": "done"}
    assert "No space left on device" in stats.results[0].message


class FailsOnCall(Invert):
    """An engine whose ``n``-th batch (from 1) raises, as a CUDA out-of-memory error would."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def __call__(self, batch):
        if self.calls + 1 == self.n:
            self.calls += 1
            raise RuntimeError("CUDA out of memory")
        return super().__call__(batch)


def test_an_engine_exception_fails_the_jobs_in_its_batch_only():
    # batches of 102 frames: the 2nd holds a's last 98 frames and b's first 4; c never shares it
    stats = run([job("a"), job("b"), job("c")], engine=FailsOnCall(2), batch_size=FRAMES // 2 + 2)
    assert statuses(stats) == {"a": "failed", "b": "failed", "c": "done"}
    assert "RuntimeError: CUDA out of memory" in stats.results[0].message
    assert MemoryWriter.committed["c.out"] == list(range(FRAMES))


def test_an_engine_failure_in_one_job_leaves_the_next_alone():
    stats = run([job("a"), job("b")], engine=FailsOnCall(1))
    assert statuses(stats) == {"a": "failed", "b": "done"}


def test_ctrl_c_in_the_engine_aborts_the_job_in_hand_and_raises_interrupted():
    engine = Invert(fail_on=20, exception=KeyboardInterrupt())
    with pytest.raises(Interrupted) as raised:
        run([job("a"), job("b")], engine=engine)
    assert raised.value.exit_code == 130 and "a.out" in MemoryWriter.aborted
    assert "a.out" not in MemoryWriter.committed and "b.out" not in MemoryWriter.committed
    assert not [t for t in threading.enumerate() if t.name in ("cyc-reader", "cyc-writer")]


def test_a_crash_in_a_worker_thread_is_raised_not_mistaken_for_a_clean_end():
    class Broken(Progress):
        def frames_done(self, job, count):
            raise AssertionError("a bug in the progress display")

    with pytest.raises(AssertionError, match="a bug in the progress display"):
        run([job("a"), job("b")], progress=Broken())
    assert not [t for t in threading.enumerate() if t.name in ("cyc-reader", "cyc-writer")]


def test_a_too_small_frame_fails_its_job():
    def shrink(frame: Frame) -> Frame:
        frame.image = frame.image[:4, :4]
        return frame

    stats = run([job("a")], transform=shrink)
    assert statuses(stats) == {"a": "failed"} and "too small" in stats.results[0].message
    assert isinstance(stats.results[0].error, InputError)


def test_a_writer_whose_abort_fails_fails_its_job_alone():
    class AbortFails(MemoryWriter):
        def abort(self):
            raise ValueError("the encoder cannot flush")

    jobs = [Job(Path("a"), Path("write-fails-at-3"), ScriptedReader, AbortFails), job("b")]
    stats = run(jobs)
    assert statuses(stats) == {"a": "failed", "b": "done"}
    assert "then cleaning up failed: write-fails-at-3: ValueError: the encoder cannot flush" in stats.results[0].message


def main_thread_after_ctrl_c() -> str | None:
    """Where the main thread is, seen from another thread: "waiting for the writer" (in an Event.wait that
    Pipeline.run called), "left the run" (Pipeline.run no longer on its stack), or None (somewhere in between)."""
    frame = sys._current_frames().get(threading.main_thread().ident)
    codes = []
    while frame is not None:
        codes.append(frame.f_code)
        frame = frame.f_back
    if Pipeline.run.__code__ not in codes:
        return "left the run"
    called = codes[codes.index(Pipeline.run.__code__) - 1] if codes.index(Pipeline.run.__code__) else None
    return "waiting for the writer" if called is threading.Event.wait.__code__ else None


def test_a_second_ctrl_c_while_the_writer_saves_waits_for_it():
    """A second Ctrl-C that the main thread takes while the writer aborts (events, no sleeps): the main thread goes
    back to waiting for the writer, and the run ends after the abort has."""
    import os
    import signal
    import time

    handled = threading.Event()  # the main thread has taken the second Ctrl-C
    order = []

    def ctrl_c(signum, frame):  # Python's own handler, which also says when it ran
        order.append("second Ctrl-C")
        handled.set()
        raise KeyboardInterrupt

    class SlowAbort(MemoryWriter):
        def abort(self):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again, while this abort (a video's flush) is running
            handled.wait(60)  # the abort goes on only once the main thread took it
            while (where := main_thread_after_ctrl_c()) is None:
                time.sleep(0.001)  # polling; nothing here depends on how long anything takes
            order.append(f"main thread {where}")
            return super().abort()

    engine = Invert(fail_on=20, exception=KeyboardInterrupt())
    previous = signal.signal(signal.SIGINT, ctrl_c)
    try:
        with pytest.raises(Interrupted):
            run([Job(Path("a"), Path("a.out"), ScriptedReader, SlowAbort)], engine=engine)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert order == ["second Ctrl-C", "main thread waiting for the writer"]
    assert MemoryWriter.aborted == ["a.out"]  # the abort ran to its end
    assert not [t for t in threading.enumerate() if t.name in ("cyc-reader", "cyc-writer")]
