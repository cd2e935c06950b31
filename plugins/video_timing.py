"""A video's times: the decoded frames' timestamps dealt in display order (the reader), a frame's end, a
Matroska track's duration tag, and the output's frame rate, time base and container options (the writer, and the
join of segments). Pure functions of numbers and names: nothing here opens a file."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cyclegan_cli.plugin_api import Frame

# Containers that store frame slots at one rate instead of timestamps (see the docstring of cyc_plugins.video).
SLOTTED = frozenset({".avi"})
QUICKTIME = frozenset({".mp4", ".m4v", ".mov"})
MAX_SLOT_RATE = 240  # a time base finer than this many ticks a second is no frame rate: AVI would fill it
# How far a decoded picture's timestamp may sit from its place: FFmpeg's largest reorder depth (16 B-frames).
REORDER_WINDOW = 16


def dealt_in_display_order(decoded: Iterator, window: int = REORDER_WINDOW) -> Iterator:
    """The decoded frames in the order they come (display order), their timestamps sorted within ``window``
    frames and dealt out again (see the docstring of :mod:`cyc_plugins.video`). Timestamps that already rise pass unchanged; a frame
    without one, or one earlier than a time already dealt (a discontinuity), first hands out what is held.
    Frames held when the stream breaks are handed out before the error."""
    import heapq
    from collections import deque

    held, times = deque(), []  # the frames not yet handed out, and a heap of their timestamps
    dealt = None  # the last timestamp handed out

    def deal_one():
        nonlocal dealt
        frame = held.popleft()
        if frame.pts is not None:
            frame.pts = dealt = heapq.heappop(times)
        return frame

    try:
        for frame in decoded:
            if frame.pts is None or (dealt is not None and frame.pts < dealt):
                while held:
                    yield deal_one()
                dealt = None
            held.append(frame)
            if frame.pts is not None:
                heapq.heappush(times, frame.pts)
            if len(held) > window:
                yield deal_one()
    except Exception:
        while held:
            yield deal_one()
        raise
    while held:
        yield deal_one()


def frame_end(frame: Frame) -> float | None:
    if frame.pts is None or not frame.time_base:
        return None
    return float((frame.pts + (frame.meta.get("duration") or 0)) * frame.time_base)


def tag_duration(stream) -> float | None:
    """The track duration Matroska muxers write as a tag ("HH:MM:SS.nnnnnnnnn"), in seconds."""
    text = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if not text or ":" not in str(text):
        return None
    try:
        hours, minutes, seconds = str(text).split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def output_timing(
    time_base: Fraction | None, fps: Fraction | None, slotted: bool, base_rate: Fraction | None
) -> tuple[Fraction, Fraction]:
    """The output's frame rate and time base: the source's time base (the frame's, else the stream's) where it
    has one, else one tick a frame; ``fps`` (the source's average rate) where known, else the rate a 1/N time
    base implies, else 25. An AVI (``slotted``) counts in frame slots: a time base finer than the finest slot
    becomes one slot, at FFmpeg's base rate of the input (``base_rate``: the NTSC grid of a variable-rate phone
    clip, whose average rate is lower) where that is not below the average rate."""
    if fps is None:
        usable = time_base and time_base.numerator == 1 and time_base.denominator <= MAX_SLOT_RATE
        fps = Fraction(1, 1) / time_base if usable else Fraction(25)
    if time_base is None or (slotted and time_base < Fraction(1, MAX_SLOT_RATE)):
        slot_rate = Fraction(base_rate) if base_rate and fps <= base_rate <= MAX_SLOT_RATE else fps
        time_base = 1 / slot_rate if slotted else Fraction(1) / fps
    return fps, Fraction(time_base)


def container_options(path: Path, time_base: Fraction, starts_late: bool, metadata: bool) -> dict[str, str]:
    """The muxer's options for ``path``."""
    options = {}
    if path.suffix.lower() in SLOTTED:
        # An AVI cannot start a stream before 0 (AAC's priming does): shifting every stream to make up for it
        # would move the video by a fraction of a slot, an empty first slot. The audio starts at 0 instead.
        options["avoid_negative_ts"] = "disabled"
    if path.suffix.lower() in QUICKTIME and metadata:
        options["movflags"] = "use_metadata_tags"  # MP4/MOV keep only standard tags without it
    options.update(movie_timescale(path, time_base, starts_late))
    return options


def movie_timescale(path: Path, time_base: Fraction, starts_late: bool) -> dict[str, str]:
    """MP4/MOV muxer options for a video whose first frame is after 0 (a film whose B-frames start it a slot late,
    a segment of a longer video): that start is an edit list in the movie's timescale, 1/1000 s by default, which
    moves 500/11988 s to 492 ticks; in the video's own time base it stays exact. Used alike by a single run and
    by ``join``, so that both give the same times to the tick."""
    if Path(path).suffix.lower() in QUICKTIME and starts_late and time_base.denominator < 2**31:
        return {"movie_timescale": str(time_base.denominator)}
    return {}
