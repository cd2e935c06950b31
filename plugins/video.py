"""Video files through PyAV (FFmpeg): a reader that yields every frame with its timestamp, and a writer that keeps
the frame rate, every timestamp, the frame count and the audio.

Reader
    Every decoded frame, in presentation order, with its ``time_base`` and the timestamp it is shown at. Decoders
    hand pictures out in display order, but where the container stores no presentation times (AVI holds frame
    slots in decoding order; DivX/Xvid "packed B-frames" put a P-frame and the B-frame shown before it in one
    chunk) a picture takes the time of the packet it was decoded from, and the times arrive out of order (slots
    1, 3, 2, 5, 4, ...). Those times are the right set, misdealt within a few frames: they are sorted within a
    window of ``REORDER_WINDOW`` frames and dealt out again in display order (``video_timing.dealt_in_display_order``); a
    time that goes back past one already dealt is a discontinuity and is left alone. Rotation metadata
    (the display matrix, or a legacy ``rotate`` tag) is applied so frames come out upright. The YUV -> RGB
    conversion uses the stream's colour matrix and range (BT.709 / BT.601 / BT.2020, limited / full); an untagged
    stream is taken as BT.709 from 720 lines up and BT.601 below (what players do). A stream that breaks mid-file
    yields its good frames, then raises ``InputError`` naming the file and the frame; a file with no decodable
    video frame raises ``InputError`` when it is opened.

Writer
    Opens on the first frame (an output may be larger than its input, e.g. ``--compare``), encodes H.264 (libx264,
    ``crf`` 18, yuv420p) or the codec asked for / the one that fits the container (VP9 for .webm, MPEG-4 part 2
    for .avi), with the input stream's time base and every frame's pts kept, so 29.97 (30000/1001) and variable
    frame rate stay exact. A frame the file gives no duration (MPEG-4 part 2 in MPEG-TS, FLV) lasts one period
    of the stream's rate. The last video packet is muxed at the end with the duration that closes the track
    where the video ends, so an MP4's average rate (frames over track length) is the input's: an encoder's
    decode times need not keep the input's gaps to the tick.

    An AVI stores no timestamps, only frame slots at one rate (an empty chunk is a dropped frame): it gets the
    stream's rate as its time base (a gap in the frames becomes empty slots) and no B-frames, whose reordering
    an AVI cannot express (H.264 in AVI reads back shifted or out of order).

    The first audio stream of the input is carried over by ``cyc_plugins.audio``: copied when the output
    container can hold its codec, else re-encoded, muxed as the video goes; all of it for a whole output, and
    trimmed to the video's end for a ``.partial`` file or a ``--max-frames`` preview. Output
    goes to a temporary name renamed at commit; ``abort()`` finishes what was written into a playable
    ``<stem>.partial<ext>``. Subtitle and data streams are not carried over.

Errors
    Anything that makes one file unusable raises ``InputError`` with a one-line message naming it: FFmpeg's
    errors, PyAV's ``ValueError`` where it refuses a conversion (a frame it cannot turn into RGB, audio whose
    layout or rate changes mid-stream), and the ``OSError`` of a folder that cannot be made or read, or an
    output name taken by a folder.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from cyc_plugins.audio import AudioCopy, audio_codec_for, ffmpeg_reason, pyav
from cyc_plugins.video_join import join_segments
from cyc_plugins.video_timing import (
    REORDER_WINDOW,
    SLOTTED,
    container_options,
    dealt_in_display_order,
    frame_end,
    output_timing,
    tag_duration,
)
from cyclegan_cli.atomic import temp_path_for
from cyclegan_cli.errors import InputError
from cyclegan_cli.plugin_api import Frame, MediaInfo, Reader, SourceInfo, WriteOptions, Writer

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .flv .wmv .3gp .ogv .mxf".split()
)

# AVColorSpace (frame / stream tag) -> the swscale matrix name PyAV's reformat takes, and back.
_MATRIX_FROM_AVCOL = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
_AVCOL_FROM_MATRIX = {"ITU709": 1, "FCC": 4, "ITU601": 6, "SMPTE240M": 7, "BT2020": 9}
_RANGE_MPEG, _RANGE_JPEG = 1, 2  # AVColorRange: limited (16-235) and full (0-255)

# The video codec cyc picks for a container (the audio one is cyc_plugins.audio's).
_VIDEO_CODECS = {".webm": "libvpx-vp9", ".ogv": "libtheora", ".avi": "mpeg4"}
_DEFAULT_VIDEO_CODEC = "libx264"
# Containers that hold only a few video codecs: a --codec outside them is refused with a clear message.
_WEBM_VIDEO = frozenset({"libvpx-vp9", "libvpx", "vp9", "vp8", "libaom-av1", "libsvtav1", "libdav1d", "av1"})


def _pyav_unavailable() -> str | None:
    try:
        pyav()
    except InputError:
        return "PyAV is not installed: pip install av"
    return None


# --------------------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------------------


class VideoReader(Reader):
    """Decode a video file with PyAV: every frame upright, in RGB, with its pts and time base."""

    name = "video"
    kind = "video"
    description = (
        "video files (mp4, mkv, mov, avi, webm, ...) decoded with PyAV/FFmpeg; rotation and colour matrix applied"
    )

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _pyav_unavailable()

    @classmethod
    def can_read(cls, path: Path) -> int:
        return 10 if Path(path).suffix.lower() in VIDEO_EXTENSIONS else 0

    supports_window = True

    def __init__(
        self, path: Path, *, max_frames: int | None = None, window: tuple[Fraction | None, Fraction | None] = None
    ):
        super().__init__(path, max_frames=max_frames)
        av = pyav()
        self._window = window or (None, None)
        self._container = None
        self._first = None  # the first decoded frame, kept from the check at open
        self._packets = None
        self._used = False
        try:
            if not self.path.is_file():
                raise InputError(f"{self.path}: no such file")
            empty = self.path.stat().st_size == 0
        except OSError as exc:  # e.g. a folder on the way that may not be searched
            raise InputError(f"{self.path}: cannot read: {ffmpeg_reason(exc)}") from None
        if empty:
            raise InputError(f"{self.path}: cannot decode: an empty file")
        try:
            self._container = av.open(str(self.path), mode="r")
        except av.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot open as a video: {ffmpeg_reason(exc)}") from None
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
                raise InputError(f"{self.path}: cannot decode the first video frame: {ffmpeg_reason(exc)}") from None
        except BaseException:
            self.close()
            raise
        self._rotation = _rotation(self._first, self._stream)
        self._info = self._make_info()
        if self._window[0]:
            self._seek(self._window[0])
        duration = self._info.extra.get("duration")
        if self._window != (None, None) and self._info.frame_count and duration:
            low, high = float(self._window[0] or 0), float(self._window[1] or duration)
            self._info.frame_count = max(1, round(self._info.frame_count * (high - low) / duration))

    def _seek(self, start: Fraction) -> None:
        """Go to a keyframe at least ``REORDER_WINDOW`` frames before ``start``; frames() then drops what comes
        before it. Some demuxers (MPEG-TS) land after the asked time: the first frame decoded is checked, and the
        seek goes further back until it lands early enough, or, at the last, the file is read from its beginning.
        The frames just after a seek may carry misdealt times (a B-frame that needed the frame before the
        keyframe is not decoded, and its time is missing from the sort), so a cut is never that close to where
        decoding began: the frames from ``start`` on get the times a reading from the top gives them."""
        av = pyav()
        tb = self._stream.time_base
        first_time = self._first.pts * tb if self._first is not None and self._first.pts is not None else None
        settle = REORDER_WINDOW / Fraction(self._info.fps or 25)
        for margin in (settle, settle + 1, settle + 4, settle + 16, None):
            self._packets.close()
            self._first = None
            try:
                if margin is None:  # from the top: slow, but every frame before the cut is seen
                    self._container.seek(0, backward=True)
                else:
                    target = max(Fraction(0), start - margin)
                    self._container.seek(int(target / tb), stream=self._stream, backward=True)
            except av.FFmpegError as exc:
                self.close()
                raise InputError(f"{self.path}: cannot seek to {float(start):.3f} s: {ffmpeg_reason(exc)}") from None
            self._packets = self._decoded()
            try:
                landed = next(self._packets)
            except (StopIteration, av.FFmpegError, _BrokenStream):
                continue
            self._first = landed
            t = landed.pts * Fraction(landed.time_base or tb) if landed.pts is not None else None
            if margin is None or t is None or t <= start - settle or (first_time is not None and t <= first_time):
                return
        raise InputError(f"{self.path}: cannot decode from {float(start):.3f} s (seeking failed)")

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
                "base_rate": Fraction(stream.base_rate) if stream.base_rate else None,  # FFmpeg's r_frame_rate
                "rotation": self._rotation,
                "color_matrix": matrix,
                "color_range": "full" if color_range == _RANGE_JPEG else "limited",
                "duration": duration,
                "start_time": stream.start_time * stream.time_base if stream.start_time is not None else None,
                # where the file's clock starts (its earliest stream): an AVI output counts its slots from here
                "container_start": Fraction(self._container.start_time, 1_000_000)
                if self._container.start_time is not None
                else None,
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
        av = pyav()
        index, end = 0, None
        start, stop = self._window
        source = dealt_in_display_order(self._decoded_with_first())
        while self.max_frames is None or index < self.max_frames:
            try:
                decoded = next(source)
            except StopIteration:
                break
            except (av.FFmpegError, _BrokenStream) as exc:
                raise InputError(
                    f"{self.path}: broken video stream after {index} good frame(s) (at frame {index}): {ffmpeg_reason(exc)}"
                ) from None
            if start is not None or stop is not None:
                if decoded.pts is None:
                    raise InputError(f"{self.path}: frame {index} has no timestamp: it cannot be cut into segments")
                t = decoded.pts * Fraction(decoded.time_base or self._stream.time_base)
                if start is not None and t < start:
                    continue  # decoded from the keyframe before the window: not this window's frame
                if stop is not None and t >= stop:
                    return  # the next window's first frame: the rest of the file is not looked at
            try:
                converted = self._convert(decoded, index)
            except (av.FFmpegError, ValueError) as exc:
                # swscale takes some pixel formats only as output (bgr4, rgb4: "Operation not supported"); PyAV
                # raises ValueError where it refuses a conversion itself (a hardware frame, an argument it cannot
                # map to swscale's).
                raise InputError(
                    f"{self.path}: cannot convert video frame {index} ({decoded.format.name}) to RGB: {ffmpeg_reason(exc)}"
                ) from None
            yield converted
            index += 1
            end = frame_end(converted)
        else:
            return  # stopped at max_frames: the rest of the file is not looked at
        if start is None:
            self._check_complete(index, end if index else None)

    def _check_complete(self, count: int, end: float | None) -> None:
        """A Matroska/WebM file cut short just ends (no error from FFmpeg): compare with the track's DURATION."""
        expected = tag_duration(self._stream)
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


class _BrokenStream(Exception):
    """The demuxer handed over a packet marked corrupt."""


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
        pyav()
        self._tmp = temp_path_for(self.path)
        self._out = None  # output container, opened on the first frame
        self._video = None
        self._time_base: Fraction | None = None
        self._first_pts: int | None = None
        self._origin = 0  # an AVI's slot 0 in the output time base: where the source's clock starts
        self._first_dts: Fraction | None = None  # decode time (seconds) of the first video packet
        self._held = None  # the newest video packet, muxed when the next one comes (the last one at finish)
        self._last_pts: int | None = None
        self._end: Fraction | None = None  # end time (seconds) of the last frame written
        self._frames = 0
        self._audio = None  # AudioCopy, when the input has audio and it is kept
        self._closed = False
        self._fps = source.info.fps or None
        self._color = None  # the YUV matrix the frames are encoded with (and tagged as), chosen at open

    # -- opening --------------------------------------------------------------------------------------------------

    def _codecs(self) -> tuple[str, str]:
        suffix = self.path.suffix.lower()
        video, audio = _VIDEO_CODECS.get(suffix, _DEFAULT_VIDEO_CODEC), audio_codec_for(suffix)
        if self.options.codec:
            video = self.options.codec
            if suffix == ".webm" and video not in _WEBM_VIDEO:
                raise InputError(f"{self.path}: a .webm file cannot hold {video}; use libvpx-vp9 or an AV1 codec")
        return video, audio

    def _open(self, frame: Frame, width: int, height: int) -> None:
        """The output opened at the first frame: its timing, the container, the video stream, the audio copy."""
        av = pyav()
        video_codec, audio_codec = self._codecs()
        slotted = self.path.suffix.lower() in SLOTTED
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a folder should be, a read-only place
            raise InputError(
                f"{self.path}: cannot create the folder {self.path.parent}: {ffmpeg_reason(exc)}"
            ) from None
        fps, self._time_base = output_timing(
            frame.time_base or self.source.time_base, self._fps, slotted, self.source.info.extra.get("base_rate")
        )
        start = self.source.info.extra.get("container_start")
        if slotted and start:
            self._origin = round(Fraction(start) / self._time_base)
        options = container_options(self.path, self._time_base, bool(frame.pts), bool(self.options.metadata))
        try:
            out = av.open(str(self._tmp), mode="w", options=options or None)
            out.metadata.update(self.options.metadata)
        except (av.FFmpegError, ValueError) as exc:
            raise InputError(f"{self.path}: cannot create the video file: {ffmpeg_reason(exc)}") from None
        self._out = out
        try:
            try:
                stream = out.add_stream(video_codec, rate=fps)
            except (av.FFmpegError, ValueError) as exc:
                raise InputError(
                    f"{self.path}: cannot encode {video_codec} into '{self.path.suffix}': {ffmpeg_reason(exc)}"
                ) from None
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.time_base = self._time_base
            stream.codec_context.time_base = self._time_base
            stream.codec_context.framerate = fps
            self._color = _set_colour(stream.codec_context, frame.meta, height)
            stream.options = _encoder_options(video_codec, self.options.crf)
            if video_codec in ("libx264", "libx265"):
                stream.thread_count = 0
            if video_codec == "mpeg4" and slotted:
                stream.codec_context.codec_tag = "XVID"  # what AVI players look for; FFmpeg's own tag is FMP4
            if slotted or not self.options.reorder:
                # an AVI stores frames in decoding order only; segments must join with rising decode times
                stream.codec_context.max_b_frames = 0
            self._video = stream
            if self.options.audio:
                self._audio = AudioCopy.open(self.source, out, audio_codec)
            out.start_encoding()
        except InputError:
            self._discard()
            raise
        except (av.FFmpegError, ValueError, OSError) as exc:
            self._discard()
            raise InputError(f"{self.path}: cannot start the video encoder: {ffmpeg_reason(exc)}") from None

    # -- writing --------------------------------------------------------------------------------------------------

    def write(self, frame: Frame, image: np.ndarray) -> None:
        av = pyav()
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
        if self._first_pts is None:
            self._first_pts = pts
            self._lead_in(pts)
        picture = av.VideoFrame.from_ndarray(image, format="rgb24")
        picture = picture.reformat(format="yuv420p", dst_colorspace=self._color, dst_color_range=_RANGE_MPEG)
        picture.pts = pts - self._origin
        picture.time_base = self._time_base
        duration = self._duration_of(frame)
        with contextlib.suppress(AttributeError):
            picture.duration = duration
        try:
            self._mux_video(self._video.encode(picture))
        except av.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot encode frame {frame.index}: {ffmpeg_reason(exc)}") from None
        self._end = Fraction(pts + duration) * self._time_base
        self._last_pts = pts
        self._frames += 1
        if self._audio is not None:
            with self._audio_errors():
                self._audio.copy_until(self._end)

    def _lead_in(self, pts: int) -> None:
        """An AVI's first chunk is its slot 0: a video that starts after the file's clock (after its audio, or a
        frame late as B-frame AVIs decode) gets an empty chunk there, so its first frame keeps its slot."""
        if self.path.suffix.lower() in SLOTTED and pts > self._origin:
            av = pyav()
            empty = av.Packet(b"")
            empty.stream, empty.time_base = self._video, self._time_base
            empty.pts = empty.dts = 0
            self._out.mux(empty)

    def _mux_video(self, packets) -> None:
        """Mux the encoder's packets one behind: the last one waits for ``_mux_last``."""
        for packet in packets:
            if self._first_dts is None and packet.dts is not None:
                self._first_dts = Fraction(packet.dts) * Fraction(packet.time_base or self._time_base)
            held, self._held = self._held, packet
            if held is not None:
                self._out.mux(held)

    def _mux_last(self) -> None:
        """Mux the last video packet with the duration that makes the track as long as the video.

        An MP4 track lasts from the first packet's decode time to the last one's end, and its average rate is
        frames over that; an encoder's decode times need not keep the input's gaps to the tick (x264 on 90 kHz
        timestamps of 23.976 fps, 3754 and 3753 ticks apart), so the last packet's duration closes the track
        where the video ends (first frame's start to last frame's end). Elsewhere it moves by a tick at most."""
        packet, self._held = self._held, None
        if packet is None:
            return
        if packet.dts is not None and None not in (self._first_dts, self._end, self._first_pts):
            tb = Fraction(packet.time_base or self._time_base)
            end = self._first_dts + self._end - self._first_pts * self._time_base
            ticks = round(end / tb) - packet.dts
            if ticks > 0:
                packet.duration = ticks
        self._out.mux(packet)

    @contextlib.contextmanager
    def _audio_errors(self):
        """FFmpeg's errors while carrying the audio over, and PyAV's ValueError when re-encoding audio that
        changes sample format, channel layout or rate mid-stream (its resampler is set up on the first frame),
        as this file's ``InputError``."""
        av = pyav()
        try:
            yield
        except (av.FFmpegError, ValueError) as exc:
            raise InputError(
                f"{self.path}: cannot write the audio of {self.source.path.name}: {ffmpeg_reason(exc)}"
            ) from None

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
        """The frame's own duration in the output time base; one period of the stream's rate where the file
        gives none (MPEG-4 part 2 in MPEG-TS, FLV), so the last frame ends where the input's does."""
        duration = frame.meta.get("duration")
        if duration and frame.time_base and Fraction(frame.time_base) != self._time_base:
            duration = round(Fraction(duration) * Fraction(frame.time_base) / self._time_base)
        return int(duration) if duration and duration > 0 else self._default_duration()

    # -- finishing ------------------------------------------------------------------------------------------------

    def _finish(self, *, whole: bool) -> None:
        """Flush the encoder, copy the audio left (all of it, or up to the video's end) and close the file."""
        av = pyav()
        try:
            self._mux_video(self._video.encode(None))
            self._mux_last()
            if self._audio is not None:
                limited = self.source.max_frames is not None and self._frames >= self.source.max_frames
                with self._audio_errors():
                    self._audio.finish(None if whole and not limited else self._end)
            self._out.close()
        except av.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot finish the video file: {ffmpeg_reason(exc)}") from None
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
            try:
                os.replace(self._tmp, self.path)
            except OSError as exc:  # the name is taken by a folder, the folder went read-only
                raise InputError(f"{self.path}: cannot put the finished file in place: {ffmpeg_reason(exc)}") from None
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

    # -- joining segments -----------------------------------------------------------------------------------------

    @classmethod
    def can_join(cls, path: Path) -> bool:
        """Segments join by their timestamps: an AVI stores frame slots, not timestamps."""
        return Path(path).suffix.lower() not in SLOTTED

    @classmethod
    def join(cls, parts: list[Path], output: Path, source: Path | None, options: WriteOptions) -> int:
        """Remux the segments' video packets, in order and as they are, into ``output`` (atomically), with the
        source's audio copied in one piece; return the frame count. Each segment keeps its frames' own
        timestamps, and none reorders frames (``WriteOptions.reorder`` off), so the decode times rise across
        the seams and every frame keeps its time exactly."""
        return join_segments(parts, output, source, options)

    def _discard(self) -> None:
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        if self._out is not None:
            with contextlib.suppress(Exception):
                self._out.close()
            self._out = None
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            self._tmp.unlink()


def _set_colour(ctx, meta: dict, height: int) -> str:
    """The encoder's colour description from the source frame's (``meta``): its matrix (BT.709 for HD and for
    matrices the encoder cannot name, else BT.601 where unknown), limited range, and its primaries and transfer
    where the source says; returns the matrix, which the frames are converted with."""
    matrix = meta.get("color_matrix") or ("ITU709" if height >= 720 else "ITU601")
    if matrix not in _AVCOL_FROM_MATRIX:
        matrix = "ITU709"
    ctx.colorspace = _AVCOL_FROM_MATRIX[matrix]
    ctx.color_range = _RANGE_MPEG
    primaries, trc = meta.get("color_primaries"), meta.get("color_trc")
    if primaries not in (None, 0, 2):  # 2 = unspecified, 0 = reserved
        ctx.color_primaries = primaries
    if trc not in (None, 0, 2):
        ctx.color_trc = trc
    return matrix


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
    if codec == "mpeg4":  # no CRF: one quantizer, 2 (best) .. 31, held by its bounds; crf 18 -> 3
        quantizer = str(min(31, max(2, round(crf / 6))))
        return {"qmin": quantizer, "qmax": quantizer}
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
    import numpy as np
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))
