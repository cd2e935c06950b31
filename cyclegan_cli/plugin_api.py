"""The small interfaces that readers, writers and engines implement.

Plugins register through the entry-point groups ``cyc.readers``, ``cyc.writers`` and ``cyc.engines`` (first-party
ones too, in our pyproject), so ``cyc plugins`` and ``--engine`` see a third-party package exactly like ours.
This module imports no numpy, torch or codec library: listing plugins stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np

    from cyclegan_cli.models.weights import GeneratorInfo


def install_hint(extra: str) -> str:
    """The command that installs one of cyc's extras (onnx, openvino, tensorrt, eval, ...)."""
    return f"pip install 'cyclegan-cli[{extra}]'"


def missing_library(module: str, what: str, extra: str) -> str | None:
    """For ``unavailable_reason``: None when ``module`` imports, else which extra installs it."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return None
    return f"{what} is not installed: {install_hint(extra)}"


@dataclass
class Frame:
    """One picture on its way through the pipeline; it keeps where it came from so nothing is dropped or reordered."""

    index: int  # position in its source, from 0
    image: np.ndarray  # H x W x 3, uint8, RGB, C-contiguous
    pts: int | None = None  # presentation timestamp, in time_base units (video)
    time_base: Fraction | None = None
    alpha: np.ndarray | None = None  # H x W uint8 alpha of an RGBA image, carried through untouched
    meta: dict[str, Any] = field(default_factory=dict)  # reader-specific facts a matching writer may use


@dataclass
class MediaInfo:
    """What a reader knows about its source before decoding it."""

    kind: str  # "image" or "video"
    width: int = 0
    height: int = 0
    frame_count: int | None = None  # known or estimated; None when unknown
    fps: Fraction | None = None
    has_audio: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class WriteOptions:
    """How outputs are encoded; each writer uses the fields that apply to it."""

    ext: str | None = None  # image format to write (".png", ".jpg", ...); None keeps the input's
    quality: int = 95  # JPEG / WebP quality
    codec: str | None = None  # video codec; None picks one that fits the container (libx264 for mp4)
    crf: int = 18
    audio: bool = True  # copy the input's audio
    reorder: bool = True  # video: frames may be coded out of order (B-frames); off for segments that are joined
    metadata: dict[str, str] = field(default_factory=dict)  # container tags, e.g. what a segment is part of


class Reader:
    """Decodes one input path into frames. Use as a context manager; ``frames()`` may be called once.

    A reader that sets ``supports_window`` also takes ``window=(start, end)`` (seconds as Fractions, either may be
    None for the file's start or end) and yields exactly the frames whose presentation time t has
    start <= t < end, with their own timestamps: ``cyc run --segments`` cuts long videos that way.
    """

    supports_window: ClassVar[bool] = False

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # "image" or "video"
    description: ClassVar[str] = ""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the reader can work here, else why not (a missing library and the extra to install)."""
        return None

    @classmethod
    def can_read(cls, path: Path) -> int:
        """How eagerly this reader takes ``path``: 0 not at all, higher wins. Cheap: by name, not by decoding."""
        raise NotImplementedError

    def __init__(self, path: Path, *, max_frames: int | None = None):
        self.path = Path(path)
        self.max_frames = max_frames

    @property
    def info(self) -> MediaInfo:
        raise NotImplementedError

    @property
    def time_base(self) -> Fraction | None:
        """The time base of the frames' ``pts`` (a video stream's), or None where frames carry no timestamps."""
        return None

    def frames(self) -> Iterator[Frame]:
        """Yield frames in order. A file that cannot be decoded raises ``cyclegan_cli.errors.InputError``."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class SourceInfo:
    """What a writer may know of the input it encodes: a snapshot taken when the reader opened.

    Writers get this rather than the reader itself: the reader belongs to the reader thread, which may close it
    while the writer thread is still encoding the last frames.
    """

    path: Path
    info: MediaInfo
    time_base: Fraction | None = None  # the source stream's time base (frames' pts are in it)
    max_frames: int | None = None  # the run's frame limit (--max-frames): the output may end before the input

    @classmethod
    def of(cls, reader: Reader) -> SourceInfo:
        return cls(Path(reader.path), reader.info, reader.time_base, reader.max_frames)


class Writer:
    """Encodes translated frames to one output path, atomically.

    Frames arrive in order through ``write``. Leaving the ``with`` block normally renames the temporary file to
    ``path``. ``abort()`` (called on an error or Ctrl-C) keeps what a viewer can use (a video's frames so far as
    ``<stem>.partial<ext>``) or removes the temporary file.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def can_write(cls, path: Path) -> int:
        """How eagerly this writer takes an output ``path``: 0 not at all, higher wins."""
        raise NotImplementedError

    def __init__(self, path: Path, source: SourceInfo, options: WriteOptions):
        self.path = Path(path)
        self.source = source
        self.options = options

    def write(self, frame: Frame, image: np.ndarray) -> None:
        """Write the translated ``image`` (H x W x 3 uint8 RGB) of input ``frame`` (its timestamp, alpha, meta)."""
        raise NotImplementedError

    def commit(self) -> None:
        """Finish the file and rename it to ``path``."""
        raise NotImplementedError

    def abort(self) -> Path | None:
        """Stop early; return the playable partial file kept, if any."""
        raise NotImplementedError

    @classmethod
    def can_join(cls, path: Path) -> bool:
        """Whether ``join`` can put segments of an output ``path`` together (``cyc run --segments``)."""
        return False

    @classmethod
    def join(cls, parts: list[Path], output: Path, source: Path | None, options: WriteOptions) -> int:
        """Join segment files (written with ``options.reorder`` off) into ``output``, in order, without
        re-encoding, with ``source``'s audio; return the frame count. Writers that cannot join leave this."""
        raise NotImplementedError(f"the {cls.name} writer cannot join segments")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@dataclass
class ModelSource:
    """What an engine is built from: a loaded generator, or an exported file (an ``.onnx`` graph, a TensorRT
    engine, an OpenVINO int8 model).

    ``exported`` is the file the engine runs. In the model an engine's ``prebuilt_for`` is asked about, it is the
    file the user named (None: weights were named, and the engine may offer a prebuilt file of its own); the
    engine is then built from a copy that holds the file the choice settled on."""

    path: Path
    direction: str
    generator: Any = None  # ResnetGenerator in eval mode on the CPU, fp32
    info: GeneratorInfo | None = None
    exported: Path | None = None


class Engine:
    """Runs a generator on batches of frames.

    ``__call__`` takes N x H x W x 3 uint8 RGB (any H, W) and returns the translated batch in the same layout:
    the engine pads by reflection to a multiple of 4, normalizes to [-1, 1], runs, crops back, rounds and clamps.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    file_suffixes: ClassVar[tuple[str, ...]] = ()  # exported files it runs directly, e.g. (".onnx",)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def prebuilt_for(cls, model: ModelSource, device: str) -> Path | None:
        """A file built ahead of time for ``model`` that this engine runs on ``device`` (e.g. a TensorRT engine
        in the run's ``export/`` folder that matches this GPU); ``--engine auto`` prefers it."""
        return None

    def __init__(self, model: ModelSource, *, device: str = "cpu", precision: str = "fp32", batch_size: int = 1):
        reason = self.unavailable_reason()
        if reason:
            from cyclegan_cli.errors import EngineUnavailable

            raise EngineUnavailable(f"{self.name}: {reason}")
        self.model = model
        self.device = device
        self.precision = precision
        self.batch_size = batch_size

    def warmup(self, height: int, width: int) -> None:
        """Prepare for frames of this size (compile, build a profile); the default runs one full batch."""
        import numpy as np

        self(np.zeros((self.batch_size, height, width, 3), dtype=np.uint8))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} {self.precision} on {self.device}"

    # -- carried normalisation statistics (cyc run --stable; see cyclegan_cli.translation.temporal) --------------------------

    carries_statistics: ClassVar[bool] = False  # True: new_stream_state() and run_carried() are implemented

    def new_stream_state(self, momentum: float) -> Any:
        """A fresh state for one stream of frames (one job): where ``run_carried`` keeps each InstanceNorm's
        carried statistics. ``momentum`` is the weight of the carried statistics against each new frame's."""
        raise NotImplementedError

    def run_carried(self, batch: np.ndarray, state: Any, new_shot: list[bool]) -> np.ndarray:
        """Like ``__call__`` on consecutive frames of one stream, but each InstanceNorm normalises with the
        moving average of its statistics, restarted at each frame whose ``new_shot`` is True."""
        raise NotImplementedError
