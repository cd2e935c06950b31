"""Where outputs go, and what is refused before any work starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclegan_cli.errors import UsageError
from cyclegan_cli.translation.engine_choice import cpu_engine
from cyclegan_cli.translation.jobs import plan_jobs


def image(path: Path, size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(path)
    return path


def outputs(plan) -> list[Path]:
    return [job.output for job in plan.jobs]


def test_a_file_goes_beside_its_input(tmp_path):
    src = image(tmp_path / "photo.jpg")
    assert outputs(plan_jobs([str(src)], direction="BtoA")) == [tmp_path / "photo_BtoA.jpg"]


def test_a_folder_is_mirrored_into_a_sibling_folder(tmp_path):
    image(tmp_path / "trip" / "a.png")
    image(tmp_path / "trip" / "day2" / "b.jpg")
    (tmp_path / "trip" / "notes.txt").write_text("not an image")
    plan = plan_jobs([str(tmp_path / "trip")], direction="AtoB")
    assert outputs(plan) == [tmp_path / "trip_AtoB" / "a.png", tmp_path / "trip_AtoB" / "day2" / "b.jpg"]
    assert plan.ignored == [tmp_path / "trip" / "notes.txt"]


def test_out_names_a_file_or_a_folder(tmp_path):
    src = image(tmp_path / "photo.jpg")
    assert outputs(plan_jobs([str(src)], direction="AtoB", out=str(tmp_path / "x.png"))) == [tmp_path / "x.png"]
    assert outputs(plan_jobs([str(src)], direction="AtoB", out=str(tmp_path / "o"))) == [tmp_path / "o" / "photo.jpg"]


def test_folder_into_out_and_ext_changes_image_format(tmp_path):
    image(tmp_path / "in" / "sub" / "a.jpg")
    plan = plan_jobs([str(tmp_path / "in")], direction="AtoB", out=str(tmp_path / "out"), ext="png")
    assert outputs(plan) == [tmp_path / "out" / "sub" / "a.png"]


def test_out_inside_the_input_tree_is_not_read_back(tmp_path):
    image(tmp_path / "in" / "a.jpg")
    image(tmp_path / "in" / "out" / "a.jpg")  # an earlier run's output
    plan = plan_jobs([str(tmp_path / "in")], direction="AtoB", out=str(tmp_path / "in" / "out"), skip_existing=True)
    assert [job.source for job in plan.jobs] == []
    assert plan.skipped_existing == [tmp_path / "in" / "out" / "a.jpg"]


def test_glob(tmp_path):
    image(tmp_path / "a.png")
    image(tmp_path / "b.png")
    image(tmp_path / "c.jpg")
    plan = plan_jobs([str(tmp_path / "*.png")], direction="AtoB")
    assert outputs(plan) == [tmp_path / "a_AtoB.png", tmp_path / "b_AtoB.png"]


def test_existing_outputs_are_refused_skipped_or_replaced(tmp_path):
    src = image(tmp_path / "a.png")
    image(tmp_path / "a_AtoB.png")
    with pytest.raises(UsageError, match="--overwrite"):
        plan_jobs([str(src)], direction="AtoB")
    assert plan_jobs([str(src)], direction="AtoB", skip_existing=True).jobs == []
    assert len(plan_jobs([str(src)], direction="AtoB", overwrite=True).jobs) == 1


def test_an_input_is_never_overwritten(tmp_path):
    src = image(tmp_path / "a.png")
    with pytest.raises(UsageError, match="overwrite an input"):
        plan_jobs([str(src)], direction="AtoB", out=str(src), overwrite=True)


def test_two_inputs_into_one_output_are_refused(tmp_path):
    a = image(tmp_path / "x" / "a.png")
    b = image(tmp_path / "y" / "a.png")
    with pytest.raises(UsageError, match="several inputs"):
        plan_jobs([str(a), str(b)], direction="AtoB", out=str(tmp_path / "o"))


@pytest.mark.parametrize("spec", ["missing.png", "missing/*.png"])
def test_missing_inputs_are_usage_errors(tmp_path, spec):
    with pytest.raises(UsageError):
        plan_jobs([str(tmp_path / spec)], direction="AtoB")


@pytest.mark.parametrize(
    "unit, compiler, megapixel_frames, expected",
    [
        ("AMX", True, 100.0, "torch-compile"),  # long job on AMX: compiling pays
        ("AMX", True, 5.0, "openvino"),  # short job: compiling would cost more than it saves
        ("AMX", False, 100.0, "openvino"),  # torch.compile needs g++ on a CPU
        ("AVX512-BF16", True, 1000.0, "openvino"),  # measured: compiled bf16 is no faster than OpenVINO bf16
        (None, True, 1000.0, "openvino"),
    ],
)
def test_cpu_auto_rule(unit, compiler, megapixel_frames, expected):
    name, reason = cpu_engine({"torch", "torch-compile", "onnxruntime", "openvino"}, unit, compiler, megapixel_frames)
    assert name == expected and reason


def test_cpu_auto_rule_falls_back_to_what_is_installed():
    assert cpu_engine({"torch", "onnxruntime"}, "AMX", True, 5.0)[0] == "onnxruntime"
    assert cpu_engine({"torch"}, None, False, 5.0)[0] == "torch"


def test_the_current_folder_goes_to_a_sibling_folder(tmp_path, monkeypatch):
    (tmp_path / "shots").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "shots" / "a.png")
    monkeypatch.chdir(tmp_path / "shots")
    plan = plan_jobs(["."], direction="AtoB")
    assert [job.output.resolve() for job in plan.jobs] == [tmp_path / "shots_AtoB" / "a.png"]


def test_a_file_name_for_several_inputs_and_contradicting_flags_are_refused(tmp_path):
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    with pytest.raises(UsageError, match="names one file"):
        plan_jobs([str(tmp_path / "a.png"), str(tmp_path / "b.png")], direction="AtoB", out=str(tmp_path / "y.png"))
    with pytest.raises(UsageError, match="contradict"):
        plan_jobs([str(tmp_path / "a.png")], direction="AtoB", overwrite=True, skip_existing=True)
