"""``cyc run`` end to end: real files in, real files out, through the real decoders, engines and encoders."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cyclegan_cli import registry
from cyclegan_cli.cli import cli
from cyclegan_cli.models.weights import load_generator
from cyclegan_cli.plugin_api import ModelSource
from tests.helpers import TONE_HZ, decode_audio, make_images, make_video, pattern, probe, tone_frequency


def cyc(*args: str):
    """``cyc ...`` in this process. These tests mean the CPU: ``cyc run`` gets ``--device cpu`` unless it names one."""
    args = [str(a) for a in args]
    if args[0] == "run" and "--device" not in args:
        args += ["--device", "cpu"]
    return CliRunner().invoke(cli, args)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """48 frames at 29.97 fps with an AAC tone."""
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=48, rate=Fraction(30000, 1001))


def test_video_keeps_frames_rate_timestamps_and_audio(tiny_runs, clip, tmp_path):
    out = tmp_path / "out.mp4"
    result = cyc("run", clip, "--runs-dir", tiny_runs, "--out", out, "--engine", "torch", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert "using the latest run" in result.output
    src, dst = probe(clip), probe(out)
    assert dst["frames"] == src["frames"] == 48
    assert dst["rate"] == Fraction(30000, 1001)
    assert dst["pts"] == pytest.approx(src["pts"], abs=1e-6)
    assert abs(dst["duration"] - src["duration"]) <= 1 / 29.97
    assert dst["audio"] and dst["audio_codec"] == src["audio_codec"]
    assert dst["audio_duration"] == pytest.approx(src["audio_duration"], abs=0.05)
    # not a terminal: plain progress lines at every 5 % (or 10 s), the last one at the end
    lines = [line for line in result.output.splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 10 and lines[-1].startswith("progress: 48/48 frames (100%), "), lines


def test_variable_frame_rate_keeps_every_timestamp(tiny_runs, tmp_path):
    vfr = make_video(tmp_path / "vfr.mp4", frames=30, vfr=True)
    result = cyc("run", vfr, "--runs-dir", tiny_runs, "--engine", "torch")
    assert result.exit_code == 0, result.output
    assert probe(tmp_path / "vfr_AtoB.mp4")["pts"] == pytest.approx(probe(vfr)["pts"], abs=1e-6)


@pytest.fixture(scope="module")
def late_audio_clip(tmp_path_factory) -> Path:
    """30 frames at 29.97 fps whose AAC tone starts 0.25 s after the first frame (as a cut recording's may)."""
    return make_video(tmp_path_factory.mktemp("late") / "late.mp4", frames=30, audio_start=0.25)


def onset(path: Path) -> float:
    """When the tone becomes audible (seconds): the first decoded sample above half its amplitude of 0.3."""
    start, samples, rate = decode_audio(path)
    return start + int(np.argmax(np.abs(samples) > 0.15)) / rate


@pytest.mark.parametrize("how", ["plain", "stable", "segments"])
def test_audio_stays_in_sync_and_keeps_the_tone(tiny_runs, late_audio_clip, tmp_path, how):
    """The output's audio starts where the source's does (1 ms), the tone is heard from the same moment (1 ms),
    and what is heard is the tone. Measured: starts 0.228 s in both (the 0.25 s tone and AAC's 1024 priming
    samples before it), onsets 0.2495 s in both (0 ms apart), the tone at 439.93 Hz (0.07 Hz off; 1 Hz allowed)."""
    out = tmp_path / "out.mp4"
    common = ["--runs-dir", tiny_runs, "--out", out, "--engine", "torch"]
    if how == "segments":
        for index in range(3):
            part = cyc("run", late_audio_clip, *common, "--segments", "3", "--shard", f"{index}/3")
            assert part.exit_code == 0, part.output
        result = cyc("join", out)
    else:
        result = cyc("run", late_audio_clip, *common, "--stable" if how == "stable" else "--no-stable")
    assert result.exit_code == 0, result.output
    src, dst = probe(late_audio_clip), probe(out)
    assert src["audio_start"] == pytest.approx(0.25 - 1024 / 48000, abs=1e-3)  # the source is what it should be
    assert dst["audio_start"] == pytest.approx(src["audio_start"], abs=1e-3)
    assert onset(out) == pytest.approx(onset(late_audio_clip), abs=1e-3)
    _, samples, rate = decode_audio(out)
    assert rate == 48000 and tone_frequency(samples, rate) == pytest.approx(TONE_HZ, abs=1.0)


def test_compare_and_max_frames(tiny_runs, clip, tmp_path):
    out = tmp_path / "cmp.mp4"
    result = cyc("run", clip, "--runs-dir", tiny_runs, "--out", out, "--compare", "--max-frames", "10")
    assert result.exit_code == 0, result.output
    info = probe(out)
    assert info["frames"] == 10 and info["width"] == 2 * probe(clip)["width"]
    assert info["audio_end"] <= info["video_end"] + 0.03


def test_a_folder_with_bad_files_translates_the_good_ones(tiny_runs, tmp_path):
    files = make_images(tmp_path / "in")
    result = cyc("run", tmp_path / "in", "--runs-dir", tiny_runs, "--direction", "BtoA", "--engine", "openvino")
    assert result.exit_code == 1, result.output
    out = tmp_path / "in_BtoA"
    good = ["exif_jpeg", "gray_png", "rgba_png", "gray16_png"]
    for role in good:
        assert (out / files[role].relative_to(tmp_path / "in")).is_file(), role
    for role in ("corrupt_jpeg", "empty_png"):
        assert not (out / files[role].relative_to(tmp_path / "in")).exists()
        assert str(files[role]) in result.output
    assert "Traceback" not in result.output
    rgba = Image.open(out / "sub" / "rgba.png")
    assert rgba.mode == "RGBA"
    assert np.array_equal(np.asarray(rgba)[..., 3], np.asarray(Image.open(files["rgba_png"]))[..., 3])
    assert Image.open(out / "phone.jpg").size == (48, 64)  # EXIF orientation applied: upright


def test_batches_keep_order_and_match_single_frames(tiny_runs, tmp_path):
    """Mixed sizes, batch 3: every output is the engine's answer for that image alone (to the last bit)."""
    rng = np.random.default_rng(0)
    sizes = [(40, 32), (40, 32), (36, 28), (40, 32), (40, 32), (40, 32), (36, 28)]
    (tmp_path / "in").mkdir()
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / "in" / f"{i}.png")
    result = cyc(
        "run", tmp_path / "in", "--runs-dir", tiny_runs, "--engine", "torch", "--precision", "fp32", "--batch-size", "3"
    )
    assert result.exit_code == 0, result.output
    generator, _ = load_generator(tiny_runs / "tiny", "AtoB")
    engine = registry.load("engines", "torch")(ModelSource(Path("x"), "AtoB", generator=generator))
    for i in range(len(sizes)):
        alone = engine(np.asarray(Image.open(tmp_path / "in" / f"{i}.png"))[None])[0]
        out = np.asarray(Image.open(tmp_path / "in_AtoB" / f"{i}.png")).astype(int)
        assert np.abs(out - alone).max() <= 1, i  # a batch may round the last bit differently, never more


def test_skip_existing_resumes_a_folder_job(tiny_runs, tmp_path):
    for name in ("a", "b"):
        Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / f"{name}.png")
    first = cyc("run", tmp_path / "a.png", "--runs-dir", tiny_runs, "--out", tmp_path / "o", "--engine", "torch")
    assert first.exit_code == 0, first.output
    again = cyc("run", tmp_path / "*.png", "--runs-dir", tiny_runs, "--out", tmp_path / "o", "--engine", "torch")
    assert again.exit_code == 2 and "--skip-existing" in again.output
    kept = (tmp_path / "o" / "a.png").read_bytes()
    os.utime(tmp_path / "o" / "a.png", ns=(10**18, 10**18))  # a time no rewrite could keep
    resumed = cyc(
        "run",
        tmp_path / "*.png",
        "--runs-dir",
        tiny_runs,
        "--out",
        tmp_path / "o",
        "--engine",
        "torch",
        "--skip-existing",
    )
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.split() == [str(tmp_path / "o" / "b.png")]
    assert (tmp_path / "o" / "a.png").read_bytes() == kept  # the skipped output is not written again
    assert (tmp_path / "o" / "a.png").stat().st_mtime_ns == 10**18  # nor touched


def test_an_output_that_became_an_input_is_never_overwritten(tiny_runs, tmp_path):
    """A rerun over a folder that now holds an earlier run's output: with --overwrite too, exit 2 before any
    work, every input byte for byte as it was and nothing new written."""
    Image.fromarray(pattern(3, 16, 16)).save(tmp_path / "a.png")
    first = cyc("run", tmp_path / "a.png", "--runs-dir", tiny_runs, "--engine", "torch")
    assert first.exit_code == 0, first.output  # a_AtoB.png beside a.png
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["a.png", "a_AtoB.png"]
    for out in ([], ["--out", tmp_path]):  # a_AtoB.png -> a_AtoB.png by default; into its own folder: itself
        again = cyc("run", tmp_path / "*.png", *out, "--runs-dir", tiny_runs, "--engine", "torch", "--overwrite")
        assert again.exit_code == 2, again.output
        assert "would overwrite an input" in again.output
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_broken_video_is_reported_and_the_rest_done(tiny_runs, clip, tmp_path):
    data = clip.read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[: len(data) // 2])
    good = tmp_path / "good.mp4"
    good.write_bytes(data)
    result = cyc("run", broken, good, "--runs-dir", tiny_runs, "--out", tmp_path / "o", "--engine", "torch")
    assert result.exit_code == 1
    assert str(broken) in result.output and "Traceback" not in result.output
    assert probe(tmp_path / "o" / "good.mp4")["frames"] == 48


def test_official_file_has_one_direction(tmp_path, clip):
    from tests.helpers import make_generator

    weights = tmp_path / "horse2zebra.pth"
    torch.save(make_generator().state_dict(), weights)
    result = cyc("run", clip, "--checkpoint", weights, "--direction", "BtoA")
    assert result.exit_code == 2
    assert "zebra2horse" in result.output and "Traceback" not in result.output


def test_auto_engine_says_what_it_chose_and_why(tiny_runs, tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    result = cyc("run", tmp_path / "a.png", "--runs-dir", tiny_runs)
    assert result.exit_code == 0, result.output
    assert "engine: openvino" in result.output and "OpenVINO compiles in seconds" in result.output


def test_a_frame_too_small_to_translate_fails_alone(tiny_runs, tmp_path):
    (tmp_path / "in").mkdir()
    for name, size in (("a.png", (16, 16)), ("dot.png", (2, 2)), ("z.png", (16, 12))):
        Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(tmp_path / "in" / name)
    result = cyc("run", tmp_path / "in", "--runs-dir", tiny_runs, "--engine", "onnxruntime")
    assert result.exit_code == 1, result.output
    assert (tmp_path / "in_AtoB" / "a.png").is_file() and (tmp_path / "in_AtoB" / "z.png").is_file()
    assert "dot.png: 2x2 is too small" in result.output and "Traceback" not in result.output
    too_small = cyc("run", tmp_path / "in" / "a.png", "--runs-dir", tiny_runs, "--size", "3x5")
    assert too_small.exit_code == 2 and "at least 8 px" in too_small.output


def test_an_image_over_the_decompression_bomb_limit_fails_alone(tiny_runs, tmp_path, monkeypatch):
    from PIL import Image as PILImage

    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "in" / "a.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "in" / "big.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # 64x64 is then over twice the limit: PIL refuses it
    result = cyc("run", tmp_path / "in", "--runs-dir", tiny_runs, "--engine", "torch")
    assert result.exit_code == 1, result.output
    assert (tmp_path / "in_AtoB" / "a.png").is_file() and not (tmp_path / "in_AtoB" / "big.png").exists()
    assert "big.png: DecompressionBombError" in result.output and "Traceback" not in result.output
