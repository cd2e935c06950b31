"""``cyc run --segments K`` and ``cyc join``: a long video cut into K pieces translated apart, then joined.

A video of duration D is cut at k*D/K (k = 1..K-1). Segment k (1-based) holds exactly the frames whose
presentation time t has start <= t < end: a cut may fall anywhere, the reader decodes from the keyframe before it
and drops the frames before the cut, so no frame is lost, doubled or shifted. Each segment is written as
``<output>.seg<k>of<K>.<ext>`` with its frames' own timestamps, no audio, and no frame reordering (B-frames),
so that joining is a remux: the decode times rise across every seam. The segment file's tags say what it is
(``cyc_source``, ``cyc_segment``), so ``cyc join OUTPUT`` needs nothing else: it refuses, naming them, when a
segment is missing, partial, or from another source, and copies the source's audio in one piece.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from cyclegan_cli.errors import InputError, UsageError

TAG_SOURCE, TAG_SEGMENT = "cyc_source", "cyc_segment"
MAX_SEGMENTS = 1000


@dataclass(frozen=True)
class Segment:
    number: int  # 1-based
    count: int
    start: Fraction | None  # seconds; None: the video's start
    end: Fraction | None  # None: the video's end

    @property
    def window(self) -> tuple[Fraction | None, Fraction | None]:
        return self.start, self.end

    def tags(self, source: Path) -> dict[str, str]:
        return {TAG_SOURCE: str(Path(source).resolve()), TAG_SEGMENT: f"{self.number}/{self.count}"}


def segment_path(output: Path, number: int, count: int) -> Path:
    return output.with_name(f"{output.stem}.seg{number}of{count}{output.suffix}")


def cut(duration: float, count: int, start: Fraction = Fraction(0)) -> list[Segment]:
    """``count`` segments of about equal length of a video whose first frame is at ``start`` (a broadcast
    ``.ts`` may start at 100 s). The cuts are whole milliseconds, so every process computes the same ones."""
    total = Fraction(round(duration * 1000), 1000)
    start = Fraction(round(start * 1000), 1000)
    bounds = [None, *(start + total * k / count for k in range(1, count)), None]
    return [Segment(k + 1, count, bounds[k], bounds[k + 1]) for k in range(count)]


def find_parts(output: Path) -> list[Path]:
    """The segment files of ``output``, in order; a usage error naming what is missing or partial."""
    output = Path(output)
    pattern = re.compile(rf"^{re.escape(output.stem)}\.seg(\d+)of(\d+)(\.partial)?{re.escape(output.suffix)}$")
    found: dict[int, set[int]] = {}
    partial = []
    for path in sorted(output.parent.glob(f"{glob.escape(output.stem)}.seg*of*")):
        match = pattern.match(path.name)
        if match is None:
            continue
        number, count = int(match[1]), int(match[2])
        if match[3]:
            partial.append((path, number, count))
        else:
            found.setdefault(count, set()).add(number)
    # a partial file left by an interrupted run does not matter once its segment was translated whole
    partial = [path for path, number, count in partial if number not in found.get(count, set())]
    if not found and not partial:
        raise UsageError(f"{output}: no segments named {segment_path(output, 1, 3).name} etc. beside it")
    if len(found) > 1:
        counts = ", ".join(f"of{c}" for c in sorted(found))
        raise UsageError(f"{output}: segments of different cuts lie beside it ({counts}): remove the stale ones")
    count = next(iter(found)) if found else int(pattern.match(partial[0].name)[2])
    missing = [segment_path(output, k, count).name for k in range(1, count + 1) if k not in found.get(count, set())]
    if missing or partial:
        what = [f"missing {', '.join(missing)}"] if missing else []
        what += [f"cut short {', '.join(p.name for p in partial)}"] if partial else []
        raise UsageError(
            f"{output}: cannot join: {'; '.join(what)} (translate them again: the same 'cyc run ... --segments "
            f"{count}' with --skip-existing)"
        )
    return [segment_path(output, k, count) for k in range(1, count + 1)]


def recorded_source(parts: list[Path]) -> Path | None:
    """The source every segment says it was cut from; a usage error if they disagree."""
    import av

    sources = set()
    for part in parts:
        try:
            with av.open(str(part)) as container:
                tags = {k.lower(): v for k, v in (container.metadata or {}).items()}
        except av.FFmpegError as error:
            raise InputError(f"{part}: cannot read this segment ({error}); translate it again") from None
        sources.add(tags.get(TAG_SOURCE))
    if len(sources) > 1:
        raise UsageError(
            f"{parts[0].parent}: the segments name different source videos ({', '.join(map(str, sources))}); "
            "if they are one video seen from different machines, name it with --source"
        )
    source = sources.pop()
    return Path(source) if source else None


def join(output: Path, source: Path | None = None, audio: bool = True) -> tuple[int, list[Path], Path | None]:
    """Join ``output``'s segments into it: (frames, the segment files, the source whose audio was copied)."""
    from cyclegan_cli import registry
    from cyclegan_cli.plugin_api import WriteOptions

    output = Path(output)
    parts = find_parts(output)
    source = Path(source) if source is not None else recorded_source(parts)
    if audio and source is not None and not source.is_file():
        raise UsageError(f"{output}: the segments were cut from {source}, which is not there: pass --source")
    if output.exists():
        raise UsageError(f"{output} exists: remove it first (segments are joined into a new file)")
    writer = registry.writer_for(output)
    try:
        frames = writer.join(parts, output, source if audio else None, WriteOptions(audio=audio))
    except NotImplementedError as error:
        raise InputError(f"{output}: {error}") from None
    return frames, parts, source if audio else None
