"""``cyc join``'s work for videos: a video's segments (``--segments``) remuxed into one file, packets as they
are, with the source's audio copied in one piece."""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path

from cyc_plugins.audio import AudioCopy, audio_codec_for, ffmpeg_reason, pyav
from cyc_plugins.video_timing import movie_timescale
from cyclegan_cli.atomic import temp_path_for
from cyclegan_cli.errors import InputError
from cyclegan_cli.plugin_api import MediaInfo, SourceInfo, WriteOptions


def join_segments(parts: list[Path], output: Path, source: Path | None, options: WriteOptions) -> int:
    """Remux the segments' video packets, in order and as they are, into ``output`` (atomically), with the
    source's audio copied in one piece; return the frame count. Each segment keeps its frames' own
    timestamps, and none reorders frames (``WriteOptions.reorder`` off), so the decode times rise across
    the seams and every frame keeps its time exactly."""
    av = pyav()
    output = Path(output)
    tmp = temp_path_for(output)
    frames, out, audio = 0, None, None
    try:
        for part in parts:  # each must open before anything is written
            openable_segment(part)
        with av.open(str(parts[0])) as first:
            template = first.streams.video[0]
            late = bool(template.start_time)
            out = av.open(str(tmp), mode="w", options=movie_timescale(output, template.time_base, late) or None)
            video = out.add_stream_from_template(template)
            video.time_base = template.time_base
            encoding = stream_encoding(template)
        if options.audio and source is not None:
            audio = AudioCopy.open(
                SourceInfo(Path(source), MediaInfo("video")), out, audio_codec_for(output.suffix.lower())
            )
        last_dts = None
        for part in parts:
            with av.open(str(part)) as src:
                stream = src.streams.video[0]
                if stream_encoding(stream) != encoding:
                    raise InputError(f"{part}: encoded otherwise than the first segment: translate it again")
                for packet in src.demux(stream):
                    if packet.dts is None:
                        continue  # the demuxer's flush packet
                    if last_dts is not None and packet.dts * stream.time_base <= last_dts:
                        raise InputError(f"{part}: its frames overlap the segment before it: translate it again")
                    last_dts = packet.dts * stream.time_base
                    end = (packet.pts + (packet.duration or 0)) * stream.time_base
                    packet.stream = video
                    packet.time_base = stream.time_base
                    out.mux(packet)
                    frames += 1
                    if audio is not None:
                        audio.copy_until(Fraction(end))
        if audio is not None:
            audio.finish(None)
        out.close()
        out = None
        os.replace(tmp, output)
    except av.FFmpegError as exc:
        raise InputError(f"{output}: cannot join the segments: {ffmpeg_reason(exc)}") from None
    finally:
        if audio is not None:
            audio.close()
        if out is not None:
            with contextlib.suppress(Exception):
                out.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return frames


def openable_segment(path: Path) -> None:
    av = pyav()
    try:
        av.open(str(path)).close()
    except av.FFmpegError as exc:
        raise InputError(f"{path}: cannot read this segment: {ffmpeg_reason(exc)}; translate it again") from None


def stream_encoding(stream) -> tuple:
    """What must agree for packets of two files to go into one stream: codec, size and parameter sets."""
    ctx = stream.codec_context
    return ctx.codec.id, stream.width, stream.height, bytes(ctx.extradata or b"")
