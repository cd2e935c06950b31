"""``cyc join``: put the segments of ``cyc run --segments K`` together into one video."""

from __future__ import annotations

import click

from cyclegan_cli.commands.options import debug_option


@click.command(context_settings={"max_content_width": 100})
@click.argument("output", type=click.Path(dir_okay=False))
@click.option(
    "--source",
    type=click.Path(exists=True, dir_okay=False),
    help="The video the segments were cut from, for its audio (default: the one their tags name).",
)
@click.option("--no-audio", is_flag=True, help="Join the video alone.")
@click.option("--keep-segments", is_flag=True, help="Keep the segment files after a successful join.")
@debug_option
def join(output: str, source: str | None, no_audio: bool, keep_segments: bool) -> None:
    """Join OUTPUT's segments (OUTPUT.seg1ofK ... OUTPUT.segKofK, from 'cyc run --segments K') into OUTPUT.

    \b
    Example, three machines, then one join:
      cyc run film.mp4 --segments 3 --shard 0/3     (and 1/3, 2/3 elsewhere, same folder)
      cyc join film_AtoB.mp4

    The video packets are copied as they are (no re-encoding): every frame keeps its timestamp, and the
    source's audio is copied in one piece, in sync. A missing or cut-short segment is refused, named,
    and nothing is written. The segments are removed once OUTPUT is whole, unless --keep-segments.

    Exit codes: 0 joined, 1 a segment could not be read, 2 segments missing or OUTPUT exists.
    """
    from pathlib import Path

    from rich.console import Console

    from cyclegan_cli.translation.segments import join as join_segments

    console = Console(stderr=True)
    frames, parts, audio_from = join_segments(Path(output), Path(source) if source else None, audio=not no_audio)
    audio = f", audio from {audio_from}" if audio_from else ", no audio"
    console.print(f"{output}: {frames} frames from {len(parts)} segments{audio}", highlight=False, markup=False)
    if not keep_segments:
        for part in parts:
            part.unlink()
    click.echo(output)
