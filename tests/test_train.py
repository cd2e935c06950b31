"""``cyc train``: it learns, it resumes bit for bit, it survives bad data, NaN and Ctrl-C.

Everything runs on the CPU with tiny networks (ngf 8, 2 blocks, 32 px crops) on images the tests make.
The one long run (a few hundred steps) is a session fixture, shared by the tests that look at its results.
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cyclegan_cli import data
from cyclegan_cli import train as training
from cyclegan_cli.cli import cli
from cyclegan_cli.weights import load_generator
from tests.train_fixtures import TINY, make_domains, truncated_jpeg

LEARN_STEPS = 400


def cyc_train(*args: str, **kwargs):
    return CliRunner().invoke(cli, ["train", *args], **kwargs)


def load_ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> tuple[Path, object]:
    """A tiny translator trained through the CLI for LEARN_STEPS steps on B = A with colour channels rotated."""
    root = tmp_path_factory.mktemp("learn")
    dataroot = make_domains(root / "colours", count=16)
    result = cyc_train(str(dataroot), "--out", str(root / "runs"), "--name", "learn", *TINY,
                       "--max-steps", str(LEARN_STEPS), "--log-every", "1", "--save-every", "100",
                       "--sample-every", "150", "--keep", "2", "--lr", "5e-4")  # fmt: skip
    assert result.exit_code == 0, result.output
    return root / "runs" / "learn", result


def read_metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# --- learning and the run folder --------------------------------------------------------------------------


def test_learning_is_real(trained_run):
    run, _ = trained_run
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows] == list(range(1, LEARN_STEPS + 1))
    cycle = [float(r["cyc_A"]) + float(r["cyc_B"]) for r in rows]
    first, last = sum(cycle[:20]) / 20, sum(cycle[-20:]) / 20
    assert last <= 0.7 * first, f"cycle loss {first:.3f} -> {last:.3f}"
    assert all(float(r[name]) >= 0 for r in rows for name in training.LOSS_NAMES)


def test_run_folder_holds_everything(trained_run):
    run, result = trained_run
    for direction, name in (("AtoB", "G_AB"), ("BtoA", "G_BA")):
        model, info = load_generator(run / f"{name}.safetensors", direction)
        assert (info.ngf, info.n_blocks, info.direction) == (8, 2, direction)
        with torch.no_grad():
            assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    model, info = load_generator(run, "BtoA")  # the run folder itself
    assert info.n_blocks == 2
    config = json.loads((run / "config.json").read_text())
    assert config["ngf"] == 8 and config["crop_size"] == 32 and config["max_steps"] == LEARN_STEPS
    assert config["images_a"] == 16 and config["images_b"] == 16
    # samples every 150 steps and at each epoch's end (16 steps), each a grid of 3 columns
    samples = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert "step_000150.png" in samples and "step_000016.png" in samples and "step_000400.png" in samples
    from PIL import Image

    with Image.open(run / "samples" / "step_000400.png") as grid:
        assert grid.size == (3 * 32 + 4, 6 * (32 + 4))  # 3 A rows then 3 B rows
    # checkpoints: the last two kept, last.pt the newest; all read with weights_only=True
    steps = sorted(p.name for p in (run / "checkpoints").glob("step_*.pt"))
    assert len(steps) == 2 and steps[-1] == "step_000400.pt"
    last = load_ckpt(run / "checkpoints" / "last.pt")
    assert last["format"] == "cyc-checkpoint" and last["step"] == LEARN_STEPS
    assert set(last["models"]) == {"G_AB", "G_BA", "D_A", "D_B"}
    assert f"Trained {LEARN_STEPS} steps" in result.output and "no unreadable images" in result.output
    assert "G_AB.safetensors" in result.output


# --- resume ------------------------------------------------------------------------------------------------


def _assert_same_training_state(a: dict, b: dict) -> None:
    for name in ("G_AB", "G_BA", "D_A", "D_B"):
        assert a["models"][name].keys() == b["models"][name].keys()
        for key, tensor in a["models"][name].items():
            assert torch.equal(tensor, b["models"][name][key]), f"{name}.{key} differs"
    for opt in ("G", "D"):
        for index, state in a["optimizers"][opt]["state"].items():
            for key, value in state.items():
                assert torch.equal(value, b["optimizers"][opt]["state"][index][key]), f"optimizer {opt} {key}"
        assert a["optimizers"][opt]["param_groups"][0]["lr"] == b["optimizers"][opt]["param_groups"][0]["lr"]
    for pool in ("A", "B"):
        assert torch.equal(a["pools"][pool]["images"], b["pools"][pool]["images"])
    assert (a["epoch"], a["batch_in_epoch"], a["step"]) == (b["epoch"], b["batch_in_epoch"], b["step"])


def test_resume_is_bit_identical(tmp_path):
    """3 steps + --resume + 3 steps == 6 steps: across an epoch's end (lr decay), with the replay pool full and
    swapping, and with DataLoader workers in the resumed part only."""
    dataroot = make_domains(tmp_path / "data", count=4, count_b=3)
    common = [str(dataroot), "--name", "r", *TINY, "--epochs", "1", "--epochs-decay", "2", "--pool-size", "2",
              "--save-every", "100", "--sample-every", "100", "--log-every", "1"]  # fmt: skip
    straight = cyc_train(*common, "--out", str(tmp_path / "straight"), "--max-steps", "6")
    assert straight.exit_code == 0, straight.output
    first = cyc_train(*common, "--out", str(tmp_path / "split"), "--max-steps", "3")
    assert first.exit_code == 0, first.output
    assert load_ckpt(tmp_path / "split" / "r" / "checkpoints" / "last.pt")["batch_in_epoch"] == 3
    second = cyc_train("--out", str(tmp_path / "split"), "--name", "r", "--resume", "--max-steps", "6",
                       "--workers", "2")  # fmt: skip
    assert second.exit_code == 0, second.output
    assert "Trained 3 steps (step 6 of the run" in second.output

    a = load_ckpt(tmp_path / "straight" / "r" / "checkpoints" / "last.pt")
    b = load_ckpt(tmp_path / "split" / "r" / "checkpoints" / "last.pt")
    assert a["epoch"] == 1 and a["batch_in_epoch"] == 2  # the resumed part crossed an epoch's end
    assert a["optimizers"]["G"]["param_groups"][0]["lr"] < 2e-4  # and the learning rate decayed
    _assert_same_training_state(a, b)
    # metrics.csv of the resumed run is whole: one row per step, the same numbers
    rows_a, rows_b = read_metrics(tmp_path / "straight" / "r"), read_metrics(tmp_path / "split" / "r")
    assert [r["step"] for r in rows_b] == [str(i) for i in range(1, 7)]
    assert [r["cyc_A"] for r in rows_a] == [r["cyc_A"] for r in rows_b]


def test_resume_refusals(tmp_path):
    dataroot = make_domains(tmp_path / "data", count=2)
    missing = cyc_train("--out", str(tmp_path / "runs"), "--name", "nothing", "--resume")
    assert missing.exit_code == 2 and "no run folder" in missing.output
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    empty = cyc_train("--out", str(tmp_path / "runs"), "--name", "empty", "--resume")
    assert empty.exit_code == 2 and "no checkpoints/last.pt" in empty.output
    ok = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), "--name", "x", *TINY, "--max-steps", "1")
    assert ok.exit_code == 0, ok.output
    again = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), "--name", "x", *TINY, "--max-steps", "1")
    assert again.exit_code == 2 and "--resume" in again.output and "--name" in again.output
    other = cyc_train("--out", str(tmp_path / "runs"), "--name", "x", "--resume", "--ngf", "16")
    assert other.exit_code == 2 and "--ngf 16 differs" in other.output
    for result in (missing, empty, again, other):
        assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1


# --- Ctrl-C and NaN ----------------------------------------------------------------------------------------


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path, monkeypatch):
    """A real SIGINT during step 2: the step finishes, a checkpoint is saved, the exit code is 130."""
    dataroot = make_domains(tmp_path / "data", count=4)
    real_step, calls = training.train_step, []

    def step_then_ctrl_c(*args):
        losses = real_step(*args)
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return losses

    monkeypatch.setattr(training, "train_step", step_then_ctrl_c)
    result = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), "--name", "c", *TINY, "--max-steps", "10")
    assert result.exit_code == 130, result.output
    assert len(calls) == 2 and "Interrupted at step 2" in result.output
    last = load_ckpt(tmp_path / "runs" / "c" / "checkpoints" / "last.pt")
    assert last["step"] == 2 and last["batch_in_epoch"] == 2
    assert not (tmp_path / "runs" / "c" / "G_AB.safetensors").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_keyboard_interrupt_from_on_step_hook_saves(tmp_path):
    dataroot = make_domains(tmp_path / "data", count=4)

    def hook(state):
        if state.step == 3:
            raise KeyboardInterrupt

    config = training.TrainConfig(dataroot=str(dataroot), out=str(tmp_path / "runs"), name="k", ngf=8, n_blocks=2,
                                  ndf=8, load_size=36, crop_size=32, progress=False, tensorboard=False, on_step=hook)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        training.train(config)
    assert load_ckpt(tmp_path / "runs" / "k" / "checkpoints" / "last.pt")["step"] == 3
    # and the API resumes it
    config.on_step, config.resume, config.max_steps = None, True, 4
    result = training.train(config)
    assert (result.step, result.steps_run) == (4, 1)


def test_nan_loss_stops_with_exit_1_and_keeps_the_last_good_checkpoint(tmp_path):
    """--lr 1e30: the first update throws the weights to 1e30 and the next forward pass overflows."""
    dataroot = make_domains(tmp_path / "data", count=4)
    result = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), "--name", "n", *TINY, "--lr", "1e30",
                       "--save-every", "1", "--max-steps", "20")  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: training diverged at step") and "nan" in result.output.lower()
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    run = tmp_path / "runs" / "n"
    last = load_ckpt(run / "checkpoints" / "last.pt")
    assert 1 <= last["step"] < 20
    assert all(torch.isfinite(t).all() for t in last["models"]["G_AB"].values())
    assert f"step {last['step']}) is kept" in result.output
    assert not (run / "G_AB.safetensors").exists()


# --- data --------------------------------------------------------------------------------------------------


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    dataroot = make_domains(tmp_path / "data", count=3, ext=".jpg")
    truncated_jpeg(dataroot / "trainA" / "cut [1].jpg")
    (dataroot / "trainB" / "nested").mkdir()
    (dataroot / "trainB" / "nested" / "noise.jpg").write_bytes(b"not a jpeg at all")
    (dataroot / "trainB" / "notes.txt").write_text("not an image, not counted")
    result = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), *TINY, "--max-steps", "4")
    assert result.exit_code == 0, result.output
    assert "2 unreadable images skipped" in result.output
    assert "cut [1].jpg" in result.output and "noise.jpg" in result.output
    config = json.loads((tmp_path / "runs" / "data" / "config.json").read_text())
    assert config["images_a"] == 3 and config["images_b"] == 3


@pytest.mark.parametrize("case", ["empty", "unreadable", "missing", "no-layout"])
def test_unusable_domain_is_refused_before_any_work(tmp_path, case):
    dataroot = tmp_path / "data"
    if case != "no-layout":
        make_domains(dataroot, count=2)
        for f in (dataroot / "trainB").iterdir():
            f.unlink()
        if case == "unreadable":
            (dataroot / "trainB" / "x.png").write_bytes(b"\x89PNG broken")
        if case == "missing":
            (dataroot / "trainB").rmdir()
    else:
        dataroot.mkdir()
    result = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), *TINY)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_layouts_and_explicit_folders(tmp_path):
    make_domains(tmp_path / "d1", count=2, layout=("train/A", "train/B"))
    assert data.find_domain_dirs(tmp_path / "d1", None, None) == (tmp_path / "d1/train/A", tmp_path / "d1/train/B")
    make_domains(tmp_path / "d2", count=2, layout=("horses", "zebras/deep/er"))
    found = data.scan_domains(a=tmp_path / "d2/horses", b=tmp_path / "d2/zebras")
    assert len(found.files_b) == 2 and (found.name_a, found.name_b) == ("horses", "zebras")
    names = data.domain_names(tmp_path / "horse2zebra", tmp_path / "trainA", tmp_path / "trainB")
    assert names == ("horse", "zebra")
    result = cyc_train("--a", str(tmp_path / "d2/horses"), "--b", str(tmp_path / "d2/zebras"),
                       "--out", str(tmp_path / "runs"), *TINY, "--max-steps", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "horses2zebras" / "G_BA.safetensors").is_file()


def test_grayscale_rgba_and_16_bit_images_become_rgb_samples(tmp_path):
    import numpy as np
    from PIL import Image

    root = make_domains(tmp_path / "data", count=1)
    ramp = np.tile(np.linspace(0, 65535, 40, dtype=np.uint16), (40, 1))
    Image.fromarray(ramp).save(tmp_path / "data" / "trainA" / "sixteen.png")
    Image.fromarray(np.full((30, 50), 128, np.uint8), mode="L").save(tmp_path / "data" / "trainA" / "gray.webp")
    Image.fromarray(np.zeros((20, 20, 4), np.uint8), mode="RGBA").save(tmp_path / "data" / "trainB" / "alpha.tiff")
    found = data.scan_domains(root)
    assert (len(found.files_a), len(found.files_b), found.skipped) == (3, 2, [])
    ds = data.UnpairedDataset(found.files_a, found.files_b, load_size=36, crop_size=32)
    for index in range(len(ds)):
        sample = ds[(0, index)]
        assert sample["A"].shape == sample["B"].shape == (3, 32, 32) and sample["bad"] == []
    sixteen = ds[(0, found.files_a.index(tmp_path / "data" / "trainA" / "sixteen.png"))]["A"]
    assert sixteen.max() - sixteen.min() > 1.5  # scaled from 16 bits to the full range, not clipped at 255


def test_samples_depend_on_seed_epoch_index_only(tmp_path):
    """What makes resume exact with any number of workers: a sample is a function of (seed, epoch, index)."""
    root = make_domains(tmp_path / "data", count=5, count_b=3, size=40)
    found = data.scan_domains(root)
    ds = data.UnpairedDataset(found.files_a, found.files_b, load_size=36, crop_size=32, seed=7)
    one, two = ds[(2, 4)], ds[(2, 4)]
    assert torch.equal(one["A"], two["A"]) and torch.equal(one["B"], two["B"])
    assert one["A"].shape == (3, 32, 32) and -1 <= one["A"].min() and one["A"].max() <= 1
    assert not torch.equal(ds[(3, 4)]["A"], one["A"])  # another epoch crops and flips anew
    assert data.epoch_order(5, 7, 2) == data.epoch_order(5, 7, 2) != data.epoch_order(5, 7, 3)
    batches = list(data.EpochBatches(5, 2, seed=7, epoch=2, start=1))
    order = data.epoch_order(5, 7, 2)
    assert batches == [[(2, order[2]), (2, order[3])], [(2, order[4])]]
