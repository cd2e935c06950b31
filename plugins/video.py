"""Video files through PyAV (FFmpeg): a reader that yields every frame with its timestamp, and a writer that keeps
the frame rate, every timestamp, the frame count and the audio.

Reader
    Every decoded frame, in presentation order, with its ``pts`` and ``time_base`` untouched. Rotation metadata
    (the display matrix, or a legacy ``rotate`` tag) is applied so frames come out upright. The YUV -> RGB
    conversion uses the stream's colour matrix and range (BT.709 / BT.601 / BT.2020, limited / full); an untagged
    stream is taken as BT.709 from 720 lines up and BT.601 below (what players do). A stream that breaks mid-file
    yields its good frames, then raises ``InputError`` naming the file and the frame; a file with no decodable
    video frame raises ``InputError`` when it is opened.

Writer
    Opens on the first frame (an output may be larger than its input, e.g. ``--compare``), encodes H.264 (libx264,
    ``crf`` 18, yuv420p) or the codec asked for / the one that fits the container (VP9 for .webm), with the input
    stream's time base and every frame's pts kept, so 29.97 (30000/1001) and variable frame rate stay exact. The
    first audio stream of the input is copied packet for packet when the output container can carry its codec,
    else re-encoded (AAC; Opus for .webm). Audio is muxed as the video goes (packets up to the current video
    time), so memory stays bounded however long the file. Output goes to a temporary name renamed at commit;
    ``abort()`` finishes what was written into a playable ``<stem>.partial<ext>``. Subtitle and data streams are
    not carried over.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from cyclegan_cli.atomic import temp_path_for
from cyclegan_cli.errors import InputError
from cyclegan_cli.plugin_api import Frame, MediaInfo, Reader, SourceInfo, WriteOptions, Writer

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv", ".wmv",
     ".3gp", ".ogv", ".mxf"}
)

# AVColorSpace (frame / stream tag) -> the swscale matrix name PyAV's reformat takes, and back.
_MATRIX_FROM_AVCOL = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
_AVCOL_FROM_MATRIX = {"ITU709": 1, "FCC": 4, "ITU601": 6, "SMPTE240M": 7, "BT2020": 9}
_RANGE_MPEG, _RANGE_JPEG = 1, 2  # AVColorRange: limited (16-235) and full (0-255)

# What the containers take when cyc picks: (video codec, audio codec to re-encode to).
_CONTAINER_DEFAULTS = {".webm": ("libvpx-vp9", "libopus"), ".ogv": ("libtheora", "libvorbis")}
_DEFAULT_CODECS = ("libx264", "aac")
# Containers that hold only a few video codecs: a --codec outside them is refused with a clear message.
_WEBM_VIDEO = frozenset({"libvpx-vp9", "libvpx", "vp9", "vp8", "libaom-av1", "libsvtav1", "libdav1d", "av1"})


def _av():
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a core dependency
        raise InputError(f"PyAV is not installed ({exc}); pip install av") from None
    return av


def _pyav_unavailable() -> str | None:
    try:
        import av  # noqa: F401
    except ImportError:
        return "PyAV is not installed: pip install av"
    return None


# --------------------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------------------


class VideoReader(Reader):
    """Decode a video file with PyAV: every frame upright, in RGB, with its pts and time base."""

    name = "video"
    kind = "video"
    description = "video files (mp4, mkv, mov, avi, webm, ...) decoded with PyAV/FFmpeg; rotation and colour matrix applied"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _pyav_unavailable()

    @classmethod
    def can_read(cls, path: Path) -> int:
        return 10 if Path(path).suffix.lower() in VIDEO_EXTENSIONS else 0

    def __init__(self, path: Path, *, max_frames: int | None = None):
        super().__init__(path, max_frames=max_frames)
        av = _av()
        self._container = None
        self._first = None  # the first decoded frame, kept from the check at open
        self._packets = None
        self._used = False
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such file")
        if self.path.stat().st_size == 0:
            raise InputError(f"{self.path}: cannot decode: an empty file")
        try:
            self._container = av.open(str(self.path), mode="r")
        except av.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot open as a video: {_reason(exc)}") from None
        try:
            if not self._container.streams.video:
                raise InputError(f"{self.path}: no video stream in this file")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._audio = self._container.streams.audio[0] if self._container.streams.audio else None
            self._packets = self._decoded()
            try:
                self._first = next(self._packets)
            except StopIteration:
                raise InputError(f"{self.path}: no video frame could be decoded (an empty or broken stream)") from None
            except (av.FFmpegError, _BrokenStream) as exc:
                raise InputError(f"{self.path}: cannot decode the first video frame: {_reason(exc)}") from None
        except BaseException:
            self.close()
            raise
        self._rotation = _rotation(self._first, self._stream)
        self._info = self._make_info()

    # -- facts ----------------------------------------------------------------------------------------------------

    def _make_info(self) -> MediaInfo:
        stream, first = self._stream, self._first
        width, height = first.width, first.height
        if self._rotation % 180:
            width, height = height, width
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = Fraction(fps) if fps else None
        count = stream.frames or None
        if count is None and fps and stream.duration and stream.time_base:
            count = max(1, round(float(stream.duration * stream.time_base * fps)))
        elif count is None and fps and self._container.duration:
            count = max(1, round(self._container.duration / 1_000_000 * float(fps)))
        if count is not None and self.max_frames is not None:
            count = min(count, self.max_frames)
        elif count is None and self.max_frames is not None:
            count = self.max_frames
        matrix, color_range = _color_of(first)
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration:
            duration = self._container.duration / 1_000_000
        return MediaInfo(
            kind="video",
            width=width,
            height=height,
            frame_count=count,
            fps=fps,
            has_audio=self._audio is not None,
            extra={
                "codec": stream.codec_context.name,
                "pix_fmt": first.format.name,
                "time_base": stream.time_base,
                "rotation": self._rotation,
                "color_matrix": matrix,
                "color_range": "full" if color_range == _RANGE_JPEG else "limited",
                "duration": duration,
                "audio_codec": self._audio.codec_context.name if self._audio is not None else None,
                "container": self._container.format.name,
            },
        )

    @property
    def info(self) -> MediaInfo:
        return self._info

    @property
    def time_base(self) -> Fraction | None:
        return self._stream.time_base

    # -- frames ---------------------------------------------------------------------------------------------------

    def _decoded(self):
        """Decoded av.VideoFrames in presentation order, the decoder flushed at the end."""
        for packet in self._container.demux(self._stream):
            if packet.is_corrupt:
                # A truncated or damaged packet: hand out the frames the decoder still holds, then stop. (With
                # frame threading FFmpeg would conceal it silently and the file would just look shorter.)
                yield from self._stream.decode(None)
                raise _BrokenStream("a truncated or damaged packet")
            yield from packet.decode()  # the flush packet at the end (data None) drains the decoder

    def frames(self) -> Iterator[Frame]:
        if self._used:
            raise RuntimeError("VideoReader.frames() may be called only once")
        self._used = True
        av = _av()
        index, end = 0, None
        source = self._decoded_with_first()
        while self.max_frames is None or index < self.max_frames:
            try:
                converted = self._convert(next(source), index)
            except StopIteration:
                break
            except (av.FFmpegError, _BrokenStream) as exc:
                raise InputError(
                    f"{self.path}: broken video stream after {index} good frame(s) (at frame {index}): {_reason(exc)}"
                ) from None
            yield converted
            index += 1
            end = _frame_end(converted)
        else:
            return  # stopped at max_frames: the rest of the file is not looked at
        self._check_complete(index, end if index else None)

    def _check_complete(self, count: int, end: float | None) -> None:
        """A Matroska/WebM file cut short just ends (no error from FFmpeg): compare with the track's DURATION."""
        expected = _tag_duration(self._stream)
        if expected is None or end is None:
            return
        slack = 0.05 + 2.0 / float(self._info.fps or 25)
        if end < expected - slack:
            raise InputError(
                f"{self.path}: the video stream ends early (truncated file?): {count} good frame(s), frame {count} "
                f"at {end:.3f} s of {expected:.3f} s is missing"
            )

    def _decoded_with_first(self):
        first, self._first = self._first, None
        if first is not None:
            yield first
        yield from self._packets

    def _convert(self, frame, index: int) -> Frame:
        import numpy as np

        matrix, color_range = _color_of(frame)
        rgb = frame.to_ndarray(
            format="rgb24",
            src_colorspace=matrix,
            src_color_range=color_range,
            dst_color_range=_RANGE_JPEG,
            interpolation="BICUBIC",
        )
        if self._rotation:
            rgb = np.rot90(rgb, k=self._rotation // 90)
        rgb = np.ascontiguousarray(rgb)
        duration = getattr(frame, "duration", None) or None
        return Frame(
            index=index,
            image=rgb,
            pts=frame.pts,
            time_base=frame.time_base or self._stream.time_base,
            meta={
                "duration": duration,  # in time_base units, as decoded (None when the file does not say)
                "rotation": self._rotation,
                "color_matrix": matrix,
                "color_range": color_range,
                "color_primaries": frame.color_primaries,
                "color_trc": frame.color_trc,
                "source_width": frame.width,
                "source_height": frame.height,
            },
        )

    def close(self) -> None:
        if self._packets is not None:
            with contextlib.suppress(Exception):
                self._packets.close()
            self._packets = None
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None


def _frame_end(frame: Frame) -> float | None:
    if frame.pts is None or not frame.time_base:
        return None
    return float((frame.pts + (frame.meta.get("duration") or 0)) * frame.time_base)


def _tag_duration(stream) -> float | None:
    """The track duration Matroska muxers write as a tag ("HH:MM:SS.nnnnnnnnn"), in seconds."""
    text = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if not text or ":" not in str(text):
        return None
    try:
        hours, minutes, seconds = str(text).split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


class _BrokenStream(Exception):
    """The demuxer handed over a packet marked corrupt."""


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__


def _rotation(frame, stream) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) to turn decoded pictures upright for display."""
    degrees = 0
    try:
        degrees = int(round(getattr(frame, "rotation", 0) or 0))  # display matrix side data, CCW
    except (TypeError, ValueError):
        degrees = 0
    if not degrees:
        tag = (stream.metadata or {}).get("rotate")  # legacy tag: clockwise degrees
        if tag:
            with contextlib.suppress(ValueError):
                degrees = -int(float(tag))
    degrees = int(round(degrees / 90.0)) * 90  # only right angles are applied; a mirroring matrix is not undone
    return degrees % 360


def _color_of(frame) -> tuple[str, int]:
    """The (swscale matrix name, AVColorRange) the frame was encoded with, resolving 'unspecified' as players do."""
    matrix = _MATRIX_FROM_AVCOL.get(int(frame.colorspace))
    if matrix is None:
        matrix = "ITU709" if frame.height >= 720 else "ITU601"
    color_range = int(frame.color_range)
    if color_range not in (_RANGE_MPEG, _RANGE_JPEG):
        color_range = _RANGE_JPEG if frame.format.name.startswith("yuvj") else _RANGE_MPEG
    return matrix, color_range


# --------------------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------------------


class VideoWriter(Writer):
    """Encode frames to a video file with PyAV, keeping timestamps, frame count and audio.

    Odd sizes: yuv420p needs an even width and height, so a frame with an odd one is padded by one pixel on the
    right / bottom edge (the last column / row repeated) rather than refused or cropped.
    """

    name = "video"
    kind = "video"
    description = "video files through PyAV: H.264 (libx264 crf 18) or --codec, timestamps and audio kept"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _pyav_unavailable()

    @classmethod
    def can_write(cls, path: Path) -> int:
        return 10 if Path(path).suffix.lower() in VIDEO_EXTENSIONS else 0

    def __init__(self, path: Path, source: SourceInfo, options: WriteOptions):
        super().__init__(path, source, options)
        _av()
        self._tmp = temp_path_for(self.path)
        self._out = None  # output container, opened on the first frame
        self._video = None
        self._size = None  # (width, height) of the encoded pictures
        self._time_base: Fraction | None = None
        self._last_pts: int | None = None
        self._end: Fraction | None = None  # end time (seconds) of the last frame written
        self._frames = 0
        self._audio = None  # _AudioCopy, when the input has audio and it is kept
        self._closed = False
        self._fps = source.info.fps or None
        self._color = None  # the YUV matrix the frames are encoded with (and tagged as), chosen at open

    # -- opening --------------------------------------------------------------------------------------------------

    def _codecs(self) -> tuple[str, str]:
        suffix = self.path.suffix.lower()
        video, audio = _CONTAINER_DEFAULTS.get(suffix, _DEFAULT_CODECS)
        if self.options.codec:
            video = self.options.codec
            if suffix == ".webm" and video not in _WEBM_VIDEO:
                raise InputError(f"{self.path}: a .webm file cannot hold {video}; use libvpx-vp9 or an AV1 codec")
        return video, audio

    def _open(self, frame: Frame, width: int, height: int) -> None:
        av = _av()
        video_codec, audio_codec = self._codecs()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        time_base = frame.time_base or self.source.time_base
        fps = self._fps or (Fraction(1, 1) / time_base if time_base and time_base.numerator == 1 and
                            time_base.denominator <= 240 else Fraction(25))
        if time_base is None:
            time_base = Fraction(1) / fps
        self._time_base = Fraction(time_base)
        try:
            out = av.open(str(self._tmp), mode="w")
        except (av.FFmpegError, ValueError) as exc:
            raise InputError(f"{self.path}: cannot create the video file: {_reason(exc)}") from None
        self._out = out
        try:
            try:
                stream = out.add_stream(video_codec, rate=fps)
            except (av.FFmpegError, ValueError) as exc:
                raise InputError(f"{self.path}: cannot encode {video_codec} into '{self.path.suffix}': {_reason(exc)}") from None
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.time_base = self._time_base
            ctx = stream.codec_context
            ctx.time_base = self._time_base
            ctx.framerate = fps
            matrix = frame.meta.get("color_matrix") or ("ITU709" if height >= 720 else "ITU601")
            if matrix not in _AVCOL_FROM_MATRIX:
                matrix = "ITU709"
            self._color = matrix
            ctx.colorspace = _AVCOL_FROM_MATRIX[matrix]
            ctx.color_range = _RANGE_MPEG
            primaries, trc = frame.meta.get("color_primaries"), frame.meta.get("color_trc")
            if primaries not in (None, 0, 2):  # 2 = unspecified, 0 = reserved
                ctx.color_primaries = primaries
            if trc not in (None, 0, 2):
                ctx.color_trc = trc
            stream.options = _encoder_options(video_codec, self.options.crf)
            if video_codec in ("libx264", "libx265"):
                stream.thread_count = 0
            self._video = stream
            if self.options.audio:
                self._audio = _AudioCopy.open(self.source, out, audio_codec)
            out.start_encoding()
        except InputError:
            self._discard()
            raise
        except (av.FFmpegError, ValueError, OSError) as exc:
            self._discard()
            raise InputError(f"{self.path}: cannot start the video encoder: {_reason(exc)}") from None

    # -- writing --------------------------------------------------------------------------------------------------

    def write(self, frame: Frame, image: np.ndarray) -> None:
        av = _av()
        if self._closed:
            raise RuntimeError("write() after commit() or abort()")
        height, width = image.shape[:2]
        even_w, even_h = width + (width & 1), height + (height & 1)
        if self._out is None:
            self._open(frame, even_w, even_h)
        image = _even(image)
        if (image.shape[1], image.shape[0]) != (self._video.width, self._video.height):
            image = _resize(image, self._video.width, self._video.height)
        pts = self._pts_of(frame)
        picture = av.VideoFrame.from_ndarray(image, format="rgb24")
        picture = picture.reformat(format="yuv420p", dst_colorspace=self._color, dst_color_range=_RANGE_MPEG)
        picture.pts = pts
        picture.time_base = self._time_base
        duration = self._duration_of(frame)
        with contextlib.suppress(AttributeError):
            picture.duration = duration
        try:
            for packet in self._video.encode(picture):
                self._out.mux(packet)
            self._end = Fraction(pts + duration) * self._time_base
            if self._audio is not None:
                self._audio.copy_until(self._end)
        except av.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot encode frame {frame.index}: {_reason(exc)}") from None
        self._last_pts = pts
        self._frames += 1

    def _pts_of(self, frame: Frame) -> int:
        """The frame's own pts in the output time base; made strictly increasing if the input's are not."""
        pts = frame.pts
        if pts is not None and frame.time_base and Fraction(frame.time_base) != self._time_base:
            pts = round(Fraction(pts) * Fraction(frame.time_base) / self._time_base)
        if pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._default_duration()
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        return int(pts)

    def _default_duration(self) -> int:
        if self._fps:
            return max(1, round(1 / (self._fps * self._time_base)))
        return 1

    def _duration_of(self, frame: Frame) -> int:
        duration = frame.meta.get("duration")
        if duration and frame.time_base and Fraction(frame.time_base) != self._time_base:
            duration = round(Fraction(duration) * Fraction(frame.time_base) / self._time_base)
        return int(duration) if duration and duration > 0 else self._default_duration()

    # -- finishing ------------------------------------------------------------------------------------------------

    def _finish(self, *, whole: bool) -> None:
        """Flush the encoder, copy the audio left (all of it, or up to the video's end) and close the file."""
        av = _av()
        try:
            for packet in self._video.encode(None):
                self._out.mux(packet)
            if self._audio is not None:
                limited = self.source.max_frames is not None and self._frames >= self.source.max_frames
                self._audio.finish(None if whole and not limited else self._end)
            self._out.close()
        except av.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot finish the video file: {_reason(exc)}") from None
        finally:
            self._out = None
            if self._audio is not None:
                self._audio.close()
                self._audio = None

    def commit(self) -> None:
        if self._closed:
            return
        if self._out is None:
            self._closed = True
            raise InputError(f"{self.path}: no frame to write")
        try:
            self._finish(whole=True)
            os.replace(self._tmp, self.path)
        except BaseException:
            self._discard()
            raise
        finally:
            self._closed = True

    def abort(self) -> Path | None:
        """Finish the frames written so far into ``<stem>.partial<ext>`` beside the output and return its path
        (None, and nothing left behind, when no frame was written)."""
        if self._closed:
            self._discard()
            return None
        self._closed = True
        if self._out is None or self._frames == 0:
            self._discard()
            return None
        partial = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        try:
            self._finish(whole=False)
            os.replace(self._tmp, partial)
        except (InputError, OSError):
            self._discard()
            return None
        return partial

    def _discard(self) -> None:
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        if self._out is not None:
            with contextlib.suppress(Exception):
                self._out.close()
            self._out = None
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


def _encoder_options(codec: str, crf: int) -> dict[str, str]:
    if codec in ("libx264", "libx265"):
        options = {"crf": str(crf), "preset": "medium"}
        if codec == "libx265":
            options["x265-params"] = "log-level=error"
        return options
    if codec in ("libvpx-vp9", "libvpx"):
        return {"crf": str(crf), "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"}
    if codec in ("libaom-av1",):
        return {"crf": str(crf), "b": "0", "cpu-used": "6", "row-mt": "1"}
    if codec == "libsvtav1":
        return {"crf": str(crf), "preset": "8"}
    return {}


def _even(image: np.ndarray) -> np.ndarray:
    """Pad an odd width / height by one pixel, repeating the edge (yuv420p needs even sizes)."""
    import numpy as np

    height, width = image.shape[:2]
    if not (height & 1 or width & 1):
        return np.ascontiguousarray(image)
    return np.pad(image, ((0, height & 1), (0, width & 1), (0, 0)), mode="edge")


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A frame whose size differs from the stream's (should not happen in one video) is scaled to fit."""
    from PIL import Image
    import numpy as np

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


class _AudioCopy:
    """The input's first audio stream, read from its own demuxer and muxed into the output as the video goes."""

    def __init__(self, src, src_stream, out_stream, encode: bool):
        self.src = src
        self.src_stream = src_stream
        self.out_stream = out_stream
        self.encode = encode
        self.packets = src.demux(src_stream)
        self.pending = None  # a packet read past the current video time, kept for the next call
        self.done = False
        self.tb = Fraction(src_stream.time_base)
        self.next_pts = None  # re-encoding: the next input sample's timestamp, in 1 / sample_rate

    @classmethod
    def open(cls, source: SourceInfo, out, audio_codec: str):
        av = _av()
        if not Path(source.path).is_file():
            return None
        try:
            src = av.open(str(source.path), mode="r")
        except av.FFmpegError:
            return None
        if not src.streams.audio:
            src.close()
            return None
        src_stream = src.streams.audio[0]
        if _remux_works(out.format.name, source.path):
            try:
                out_stream = out.add_stream_from_template(src_stream)  # a remux: the same packets
                out_stream.time_base = src_stream.time_base
                return cls(src, src_stream, out_stream, encode=False)
            except (ValueError, av.FFmpegError):
                pass
        # This container cannot hold the input's audio as it is: re-encode it.
        rate = src_stream.codec_context.sample_rate or 48000
        if audio_codec == "libopus" or rate not in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000,
                                                   88200, 96000):
            rate = 48000
        if audio_codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
            rate = 48000
        layout = src_stream.codec_context.layout.name if src_stream.codec_context.layout else "stereo"
        if layout not in ("mono", "stereo"):
            layout = "stereo"  # downmix anything else: every encoder and container takes these two
        out_stream = out.add_stream(audio_codec, rate=rate)
        with contextlib.suppress(Exception):
            out_stream.layout = layout
        if audio_codec == "aac":
            out_stream.bit_rate = 192_000
        elif audio_codec == "libopus":
            out_stream.bit_rate = 128_000
        out_stream.time_base = Fraction(1, rate)
        return cls(src, src_stream, out_stream, encode=True)

    def _next(self):
        if self.pending is not None:
            packet, self.pending = self.pending, None
            return packet
        if self.done:
            return None
        av = _av()
        try:
            while True:
                packet = next(self.packets)
                if packet.dts is not None or packet.pts is not None:
                    return packet
                if packet.size == 0 and packet.pts is None:  # the demuxer's flush packet: the end
                    self.done = True
                    return None
        except (StopIteration, av.FFmpegError):  # the end, or a broken file: the video reader reports that
            self.done = True
            return None

    def copy_until(self, end: Fraction | None) -> None:
        """Mux the audio packets that end by ``end`` seconds (all that are left when ``end`` is None).

        Only whole packets that end by the video's current end go in, so a run stopped at any point (Ctrl-C,
        ``--max-frames``) has no audio past its last frame; the rest follows at commit."""
        while True:
            packet = self._next()
            if packet is None:
                return
            if end is not None:
                ts = packet.pts if packet.pts is not None else packet.dts
                if (Fraction(ts) + Fraction(packet.duration or 0)) * self.tb > end:
                    self.pending = packet
                    return
            if self.encode:
                self._reencode(packet, None)
            else:
                packet.stream = self.out_stream
                self.out_stream.container.mux(packet)

    def _reencode(self, packet, end: Fraction | None) -> None:
        av = _av()
        try:
            frames = packet.decode()
        except av.FFmpegError:
            return  # a damaged audio packet: skipped, the video goes on
        for frame in frames:
            if end is not None:
                frame = _trim_audio(frame, end)
                if frame is None:
                    continue
            self._encode(frame)

    def _encode(self, frame) -> None:
        frame = _known_layout(frame)
        # Count samples from where the input's audio starts, so the encoder gets gapless, increasing timestamps.
        if self.next_pts is None:
            start = Fraction(frame.pts) * Fraction(frame.time_base) if frame.pts is not None and frame.time_base else 0
            self.next_pts = round(max(Fraction(0), Fraction(start)) * frame.sample_rate)
        frame.pts = self.next_pts
        frame.time_base = Fraction(1, frame.sample_rate)
        self.next_pts += frame.samples
        for out_packet in self.out_stream.encode(frame):
            self.out_stream.container.mux(out_packet)

    def finish(self, end: Fraction | None) -> None:
        """Copy what is left: everything, or (``end`` given) only the audio that ends by ``end`` seconds; a
        re-encoded stream is cut at ``end`` to the sample, a copied one at the last whole packet before it."""
        self.copy_until(end)
        if end is not None and self.encode:
            packet = self._next()
            if packet is not None:
                self._reencode(packet, end)
        if self.encode:
            with contextlib.suppress(av_errors()):  # drain the audio decoder, then the encoder
                for frame in self.src_stream.decode(None):
                    frame = _trim_audio(frame, end) if end is not None else frame
                    if frame is not None:
                        self._encode(frame)
            for out_packet in self.out_stream.encode(None):
                self.out_stream.container.mux(out_packet)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.packets.close()
        with contextlib.suppress(Exception):
            self.src.close()


def _remux_works(format_name: str, source: Path) -> bool:
    """Whether the first audio stream of ``source`` can be copied into a ``format_name`` file: tried for real on
    a scrap file in memory with its first packet (some refusals, such as an unordered channel layout in MP4,
    only come when the trailer is written)."""
    import io

    av = _av()
    try:
        with av.logging.Capture(), av.open(str(source), mode="r") as src:
            stream = src.streams.audio[0]
            packet = next((p for p in src.demux(stream) if p.size), None)
            with av.open(io.BytesIO(), mode="w", format=format_name) as trial:
                copy = trial.add_stream_from_template(stream)
                copy.time_base = stream.time_base
                trial.start_encoding()
                if packet is not None:
                    packet.stream = copy
                    trial.mux(packet)
    except (av.FFmpegError, ValueError, IndexError, OSError):
        return False
    return True


def _known_layout(frame):
    """A decoded frame whose channel layout has no order (e.g. PCM in Matroska: "2 channels") rebuilt as mono or
    stereo, which the resampler in front of the encoder accepts."""
    import numpy as np

    av = _av()
    if frame.layout.name in ("mono", "stereo") or not frame.layout.name.endswith("channels"):
        return frame
    count = len(frame.layout.channels)
    array = frame.to_ndarray()
    if not frame.format.is_planar:
        array = array.reshape(-1, count).T
    array = array[:2] if count >= 2 else array[:1]
    planar = frame.format.name if frame.format.is_planar else frame.format.name + "p"
    rebuilt = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(array), format=planar, layout="stereo" if count >= 2 else "mono"
    )
    rebuilt.sample_rate = frame.sample_rate
    rebuilt.pts, rebuilt.time_base = frame.pts, frame.time_base
    return rebuilt


def av_errors():
    return _av().FFmpegError


def _trim_audio(frame, end: Fraction):
    """The part of a decoded audio frame before ``end`` seconds; None when it starts at or after it."""
    av = _av()
    if frame.pts is None or frame.time_base is None:
        return frame
    start = Fraction(frame.pts) * Fraction(frame.time_base)
    if start >= end:
        return None
    keep = int((end - start) * frame.sample_rate)
    if keep >= frame.samples:
        return frame
    array = frame.to_ndarray()
    array = array[:, :keep] if frame.format.is_planar else array[:, : keep * len(frame.layout.channels)]
    trimmed = av.AudioFrame.from_ndarray(array, format=frame.format.name, layout=frame.layout.name)
    trimmed.sample_rate = frame.sample_rate
    trimmed.pts = frame.pts
    trimmed.time_base = frame.time_base
    return trimmed
