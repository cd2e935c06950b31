"""The audio half of the video writer: the input's first audio stream, carried into the output file.

The audio is copied packet for packet (a remux: nothing decoded, nothing lost) when the output container takes
its codec as it is; whether it does is tried for real on a scrap file in memory, because some refusals (an
unordered channel layout in MP4) only come when the trailer is written. Otherwise it is decoded and re-encoded
to the container's usual codec: AAC, Opus for .webm, Vorbis for .ogv, MP3 for .avi.

Packets go into the output as the video goes, up to the video's current end, so memory stays bounded however
long the file, and a run stopped early (Ctrl-C, a broken input, ``--max-frames``) has no audio past its last
frame: a partial or ``--max-frames`` output is trimmed to the video's end, to the sample when re-encoding, at
the last whole packet before it when copying.

``pyav()`` (the PyAV import, an ``InputError`` when it is missing) lives here and is shared with
``cyc_plugins.video``, which imports this module.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from cyclegan_cli.errors import InputError, first_line

if TYPE_CHECKING:
    from cyclegan_cli.plugin_api import SourceInfo

# The codec a container's audio is re-encoded to when the input's cannot be copied into it, by output suffix.
AUDIO_CODECS = {".webm": "libopus", ".ogv": "libvorbis", ".avi": "libmp3lame"}
DEFAULT_AUDIO_CODEC = "aac"

# Sample rates kept as they are when re-encoding; any other is resampled to 48 kHz.
_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
_ENCODER_RATES = {
    "libopus": (48000,),  # Opus runs at 48 kHz inside whatever it is given
    "libmp3lame": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),  # MPEG-1/2/2.5 rates
}
_BIT_RATES = {"aac": 192_000, "libopus": 128_000, "libmp3lame": 192_000}


def pyav():
    """The ``av`` module; an ``InputError`` saying how to install it when it is missing."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a core dependency
        raise InputError(f"PyAV is not installed ({exc}); pip install av") from None
    return av


def ffmpeg_reason(exc: BaseException) -> str:
    """An FFmpeg error (or the OSError of a file) as the one line a message gives after the file's name."""
    return first_line(exc, message=getattr(exc, "strerror", None))


def audio_codec_for(suffix: str) -> str:
    """The codec the audio is re-encoded to in a file with this suffix (".mp4", ".webm", ...)."""
    return AUDIO_CODECS.get(suffix.lower(), DEFAULT_AUDIO_CODEC)


class AudioCopy:
    """The input's first audio stream, read from its own demuxer and muxed into the output as the video goes.

    Re-encoding raises ``ValueError`` (from PyAV's resampler in front of the encoder) when the input's audio
    changes sample format, channel layout or rate mid-stream; the writer reports that as the file's error.
    """

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
    def open(cls, source: SourceInfo, out, audio_codec: str) -> AudioCopy | None:
        """Add the audio stream to ``out`` (before its header is written); None when the input has no audio."""
        av = pyav()
        if not Path(source.path).is_file():
            return None
        try:
            src = av.open(str(source.path), mode="r")
        except av.FFmpegError:
            return None
        if not src.streams.audio:
            src.close()
            return None
        try:
            return cls._add_stream(src, out, audio_codec, source.path)
        except BaseException:
            src.close()  # the stream could not be added: the caller fails this output and never sees src
            raise

    @classmethod
    def _add_stream(cls, src, out, audio_codec: str, path: Path) -> AudioCopy:
        av = pyav()
        src_stream = src.streams.audio[0]
        if _remux_works(out.format.name, path):
            try:
                out_stream = out.add_stream_from_template(src_stream)  # a remux: the same packets
                out_stream.time_base = src_stream.time_base
                return cls(src, src_stream, out_stream, encode=False)
            except (ValueError, av.FFmpegError):
                pass
        # This container cannot hold the input's audio as it is: re-encode it.
        rate = src_stream.codec_context.sample_rate or 48000
        if rate not in _ENCODER_RATES.get(audio_codec, _RATES):
            rate = 48000
        layout = src_stream.codec_context.layout.name if src_stream.codec_context.layout else "stereo"
        if layout not in ("mono", "stereo"):
            layout = "stereo"  # downmix anything else: every encoder and container takes these two
        out_stream = out.add_stream(audio_codec, rate=rate)
        with contextlib.suppress(Exception):
            out_stream.layout = layout
        if audio_codec in _BIT_RATES:
            out_stream.bit_rate = _BIT_RATES[audio_codec]
        out_stream.time_base = Fraction(1, rate)
        return cls(src, src_stream, out_stream, encode=True)

    def _next(self):
        if self.pending is not None:
            packet, self.pending = self.pending, None
            return packet
        if self.done:
            return None
        av = pyav()
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
        av = pyav()
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
            with contextlib.suppress(pyav().FFmpegError):  # drain the audio decoder, then the encoder
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

    av = pyav()
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

    av = pyav()
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


def _trim_audio(frame, end: Fraction):
    """The part of a decoded audio frame before ``end`` seconds; None when it starts at or after it."""
    av = pyav()
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
