"""``cyc export``: ONNX graphs (dynamic shapes, fp16 structure, parity), sidecars, TensorRT messages and checks.

What touches TensorRT is tested around it (shape profiles, sidecar matching, engine discovery, the messages and
exit codes); the GPU check is ``benchmarks/gpu_check.py``. Tests about TensorRT being absent make it absent
(``no_tensorrt``), so they mean the same on a machine that has it.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from cyclegan_cli.cli import cli
from tests.helpers import make_generator, write_run

TRT_HINT = "pip install 'cyclegan-cli[tensorrt]'"
SIDECAR_KEYS = {
    "format",
    "kind",
    "file",
    "direction",
    "generator",
    "domains",
    "input",
    "output",
    "shapes",
    "precision",
    "opset",
    "versions",
    "created",
    "parity",
    "architecture",
}


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["export", *args, "--device", "cpu"], catch_exceptions=False)


def _hide_tensorrt(monkeypatch) -> None:
    from cyclegan_cli.export import tensorrt_build

    monkeypatch.setattr(tensorrt_build, "tensorrt_installed", lambda: False)


@pytest.fixture
def no_tensorrt(monkeypatch):
    """TensorRT is not installed, whatever this machine has."""
    _hide_tensorrt(monkeypatch)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny run exported twice through the CLI: fp32 (--format onnx) and fp16 (--format auto, TensorRT absent)."""
    runs = tmp_path_factory.mktemp("runs")
    run = write_run(runs)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _hide_tensorrt(monkeypatch)
        fp32 = _invoke(str(run), "--format", "onnx")
        fp16 = _invoke("--runs-dir", str(runs), "--fp16")  # the latest run, found by itself
    return run, fp32, fp16


# --- ONNX: files, dynamic shapes, structure, parity ------------------------------------------------------------


def test_export_writes_both_directions(exported):
    run, fp32, fp16 = exported
    assert fp32.exit_code == 0, fp32.output
    assert fp16.exit_code == 0, fp16.output
    export = run / "export"
    for name in ("G_AB.onnx", "G_BA.onnx", "G_AB.fp16.onnx", "G_BA.fp16.onnx"):
        assert (export / name).is_file()
        assert (export / f"{name}.json").is_file()
        assert str(export / name) in fp32.output + fp16.output
    assert f"using the latest run: {run}" in fp16.output
    assert not list(export.glob(".*cyc-tmp*")), "temporary files left behind"
    assert "max abs error" in fp32.output and "PSNR" in fp16.output


def test_dynamic_shapes_two_sizes_two_batches(exported):
    import onnxruntime as ort
    import torch

    from cyclegan_cli.models.weights import load_generator

    run, *_ = exported
    generator, _ = load_generator(run, "BtoA")
    session = ort.InferenceSession(str(run / "export" / "G_BA.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 32, 48), (3, 3, 64, 40)]:
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        (y,) = session.run(["output"], {"input": x})
        with torch.inference_mode():
            expected = generator(torch.from_numpy(x)).numpy()
        assert y.shape == shape and y.dtype == np.float32
        assert np.abs(y - expected).max() <= 1e-3


def test_graph_interface_and_checker(exported):
    import onnx

    run, *_ = exported
    for name in ("G_AB.onnx", "G_AB.fp16.onnx"):
        model = onnx.load(str(run / "export" / name))
        onnx.checker.check_model(model, full_check=True)
        for value, expected in ((model.graph.input, "input"), (model.graph.output, "output")):
            assert [v.name for v in value] == [expected]
            tensor = value[0].type.tensor_type
            assert tensor.elem_type == onnx.TensorProto.FLOAT
            dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
            assert dims == ["N", 3, "H", "W"]


def test_fp16_graph_keeps_instance_norm_in_fp32(exported):
    import onnx

    from cyclegan_cli.export.onnx_graph import conv_weight_dtypes, instance_norm_dtypes

    run, *_ = exported
    model = onnx.load(str(run / "export" / "G_AB.fp16.onnx"))
    norms = instance_norm_dtypes(model)
    assert len(norms) == 9  # 3 down/stem + 2 per block x 2 blocks + 2 up
    assert all(n.input == "float32" and n.output == "float32" for n in norms), norms
    assert conv_weight_dtypes(model) == {"float16"}
    # The fp32 islands are made by Casts: FLOAT before every norm, FLOAT16 after; the edges cast too.
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def cast_to(node):
        return next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "to")

    for node in model.graph.node:
        if node.op_type != "InstanceNormalization":
            continue
        before = producer[node.input[0]]
        assert before.op_type == "Cast" and cast_to(before) == onnx.TensorProto.FLOAT
        after = consumers[node.output[0]]
        assert [n.op_type for n in after] == ["Cast"] and cast_to(after[0]) == onnx.TensorProto.FLOAT16
    first = consumers["input"]
    assert [n.op_type for n in first] == ["Cast"] and cast_to(first[0]) == onnx.TensorProto.FLOAT16
    assert producer["output"].op_type == "Cast" and cast_to(producer["output"]) == onnx.TensorProto.FLOAT
    # fp32 graph: no casts at all
    plain = onnx.load(str(run / "export" / "G_AB.onnx"))
    assert "Cast" not in {n.op_type for n in plain.graph.node}
    assert conv_weight_dtypes(plain) == {"float32"}


def test_fp16_graph_runs_close_to_fp32(exported):
    """ORT's CPU provider computes fp16 in fp32, so this is only a sanity check (the GPU check proves fp16)."""
    import onnxruntime as ort

    run, *_ = exported
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 48, 64)).astype(np.float32)
    outs = [
        ort.InferenceSession(str(run / "export" / n), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        for n in ("G_AB.onnx", "G_AB.fp16.onnx")
    ]
    mse = float(np.mean((outs[0] - outs[1]) ** 2))
    assert 10 * np.log10(4.0 / mse) >= 35


def test_sidecars_complete(exported):
    run, *_ = exported
    for name, precision, direction in (("G_AB.onnx", "fp32", "AtoB"), ("G_BA.fp16.onnx", "fp16", "BtoA")):
        data = json.loads((run / "export" / f"{name}.json").read_text())
        assert SIDECAR_KEYS <= data.keys(), SIDECAR_KEYS - data.keys()
        assert data["kind"] == "onnx" and data["file"] == name
        assert data["direction"] == direction and data["precision"] == precision and data["opset"] == 18
        assert data["domains"]["a"] == "horse" and data["domains"]["b"] == "zebra"
        assert data["domains"]["to"] == ("zebra" if direction == "AtoB" else "horse")
        assert data["input"] == {
            "name": "input",
            "layout": "NCHW",
            "channels": "RGB",
            "range": [-1.0, 1.0],
            "dtype": "float32",
            "height_width_multiple_of": 4,
        }
        assert data["output"]["name"] == "output"
        assert data["shapes"]["dynamic_axes"] == {"0": "N", "2": "H", "3": "W"}
        assert {"cyc", "torch", "onnx", "onnxruntime", "tensorrt"} <= data["versions"].keys()
        assert [p["input"] for p in data["parity"]] == ["random", "image"]
        if precision == "fp32":
            assert all(p["max_abs_error"] <= 1e-3 for p in data["parity"])
        # the weights it was made from: the checkpoint's generator of that direction, digested here
        assert data["weights"]["sha256"] == weights_digest(run / "checkpoints" / "last.pt", direction)


def weights_digest(checkpoint, direction: str) -> str:
    """sha256 of a checkpoint's generator as cyc documents it: its tensors in sorted name order, each as
    "name|dtype|shape|" then its bytes."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["models"][
        "G_AB" if direction == "AtoB" else "G_BA"
    ]
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def test_fp32_parity_failure_exits_1_and_keeps_nothing(tmp_path, monkeypatch):
    from cyclegan_cli.export import onnx_graph

    run = write_run(tmp_path)
    real = onnx_graph.compare_with_torch

    def off_by_a_lot(*args, **kwargs):
        return [onnx_graph.Parity(p.label, p.shape, 0.5, 20.0) for p in real(*args, **kwargs)]

    monkeypatch.setattr(onnx_graph, "compare_with_torch", off_by_a_lot)
    result = _invoke(str(run), "--format", "onnx", "--direction", "AtoB")
    assert result.exit_code == 1
    assert "disagrees with PyTorch" in result.output and "max abs error 5.00e-01" in result.output
    export = run / "export"
    assert not export.exists() or not [p.name for p in export.iterdir()]


@pytest.mark.parametrize("wrong", ["one weight nudged", "another generator's weights"])
def test_a_wrong_graph_fails_the_real_parity_check(tmp_path, monkeypatch, wrong):
    """The exporter writes a graph that is not the checkpoint's: the real comparison in ONNX Runtime sees it,
    exit 1, nothing kept. Measured max abs errors: 2.9e-2 (random input) and 4.5e-2 (picture) for one weight of
    the last convolution nudged by 0.01, 29x the 1e-3 allowed; 2.0 for another generator's weights."""
    import onnx
    from onnx import numpy_helper

    from cyclegan_cli.export import onnx_graph

    run = write_run(tmp_path)
    real_export = onnx_graph.export_onnx

    def wrong_export(generator, path, **kwargs):
        if wrong == "another generator's weights":
            return real_export(make_generator(7), path, **kwargs)
        real_export(generator, path, **kwargs)
        model = onnx.load(str(path))
        last = next(t for t in model.graph.initializer if list(t.dims)[:2] == [3, 8])  # the last conv, 8 -> 3
        weights = numpy_helper.to_array(last).copy()
        weights.flat[0] += 0.01
        last.CopyFrom(numpy_helper.from_array(weights, last.name))
        onnx.save_model(model, str(path))
        return path

    monkeypatch.setattr(onnx_graph, "export_onnx", wrong_export)
    result = _invoke(str(run), "--format", "onnx", "--direction", "AtoB")
    assert result.exit_code == 1, result.output
    assert "disagrees with PyTorch" in result.output and "not written" in result.output
    errors = [float(e) for e in re.findall(r"max abs error ([0-9.e+-]+)", result.output)]
    assert errors and max(errors) > 1e-3, result.output
    export = run / "export"
    assert not export.exists() or not [p.name for p in export.iterdir()]
    assert sorted(p.name for p in run.rglob("*") if p.is_file()) == ["last.pt"]  # no temporary file left either


def test_official_pth_exports_atob_beside_it(tmp_path):
    import torch

    weights = tmp_path / "models" / "horse2zebra.pth"
    weights.parent.mkdir()
    torch.save(make_generator(3).state_dict(), weights)
    result = _invoke(str(weights), "--format", "onnx")
    assert result.exit_code == 0, result.output
    export = tmp_path / "models" / "export"
    assert sorted(p.name for p in export.iterdir()) == ["G_AB.onnx", "G_AB.onnx.json"]
    bad = _invoke(str(weights), "--format", "onnx", "--direction", "BtoA")
    assert bad.exit_code == 2 and "zebra2horse" in bad.output


# --- TensorRT absent: messages and exit codes -------------------------------------------------------------------


def test_auto_fp16_without_tensorrt_says_one_line(exported):
    _, _, fp16 = exported
    lines = [line for line in fp16.output.splitlines() if TRT_HINT in line]
    assert len(lines) == 1 and "NVIDIA GPU" in lines[0] and lines[0].startswith("TensorRT engine not built")
    assert fp16.exit_code == 0


def test_format_tensorrt_without_tensorrt_exits_1(tmp_path, no_tensorrt):
    run = write_run(tmp_path)
    result = _invoke(str(run), "--format", "tensorrt", "--fp16")
    assert result.exit_code == 1
    assert TRT_HINT in result.output and "NVIDIA GPU" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (run / "export").exists()


def test_no_gpu_reason(monkeypatch):
    import torch

    from cyclegan_cli.export import tensorrt_build

    monkeypatch.setattr(tensorrt_build, "tensorrt_installed", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    reason = tensorrt_build.tensorrt_unavailable_reason("auto")
    assert reason.startswith("no NVIDIA GPU") and TRT_HINT in reason
    assert "NVIDIA GPU" in tensorrt_build.tensorrt_unavailable_reason("cpu")


def test_engine_unavailable_reason_is_clear(no_tensorrt):
    from cyc_engines.tensorrt import TensorRTEngine

    reason = TensorRTEngine.unavailable_reason()
    assert isinstance(reason, str) and TRT_HINT in reason and "\n" not in reason
    assert TensorRTEngine.name == "tensorrt" and TensorRTEngine.devices == ("cuda",)
    assert TensorRTEngine.file_suffixes == (".engine", ".plan")


# --- shape profiles ---------------------------------------------------------------------------------------------


def test_parse_shape_and_defaults():
    from cyclegan_cli.export.exporter import (
        DEFAULT_MAX_SHAPE,
        DEFAULT_MIN_SHAPE,
        DEFAULT_OPT_SHAPE,
        make_profile,
        parse_shape,
    )

    assert parse_shape("4x3x720x1280") == (4, 3, 720, 1280)
    profile = make_profile(DEFAULT_MIN_SHAPE, DEFAULT_OPT_SHAPE, DEFAULT_MAX_SHAPE)
    assert profile.min == (1, 3, 256, 256) and profile.max == (4, 3, 1088, 1920)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--min-shape", "1x4x256x256"], "C must be 3"),
        (["--opt-shape", "1x3x722x1280"], "not a multiple of 4"),
        (["--max-shape", "4x3x1080"], "expected NxCxHxW"),
        (["--max-shape", "0x3x256x256"], "positive"),
        (["--min-shape", "1x3x512x512", "--opt-shape", "1x3x256x256"], "min <= opt <= max"),
        (["--opt-shape", "8x3x720x1280"], "min <= opt <= max"),
    ],
)
def test_bad_shapes_exit_2(tmp_path, args, message):
    run = write_run(tmp_path)
    result = _invoke(str(run), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (run / "export").exists()


# --- engine files: sidecar checks and discovery -------------------------------------------------------------------


def _engine_sidecar(gpu="NVIDIA H200", cc="9.0", trt="10.12.0.36", direction="AtoB", precision="fp16"):
    return {
        "format": "cyc-export",
        "kind": "tensorrt",
        "direction": direction,
        "precision": precision,
        "gpu": {"name": gpu, "compute_capability": cc},
        "tensorrt": trt,
        "shapes": {"profile": {"min": [1, 3, 256, 256], "opt": [1, 3, 720, 1280], "max": [4, 3, 1088, 1920]}},
    }


def test_sidecar_mismatch():
    from cyc_engines.tensorrt import sidecar_mismatch
    from cyclegan_cli.export.tensorrt_build import GpuIdentity

    here = GpuIdentity("NVIDIA H200", "9.0", "10.12.0.36")
    assert sidecar_mismatch(_engine_sidecar(), here) is None
    other_gpu = sidecar_mismatch(_engine_sidecar(gpu="NVIDIA A100-SXM4-80GB", cc="8.0"), here)
    assert "A100" in other_gpu and "H200" in other_gpu and "TensorRT" not in other_gpu
    other_trt = sidecar_mismatch(_engine_sidecar(trt="11.0.0.1"), here)
    assert "TensorRT 11.0.0.1" in other_trt and "TensorRT 10.12.0.36" in other_trt
    assert "sidecar" in sidecar_mismatch(None, here)
    assert "not describe" in sidecar_mismatch({"format": "cyc-export", "kind": "onnx"}, here)
    assert here.tag == "h200-trt10.12.0.36"


def test_find_engine_picks_the_matching_one(tmp_path):
    import os

    from cyc_engines.tensorrt import find_engine
    from cyclegan_cli.export.tensorrt_build import GpuIdentity
    from cyclegan_cli.models.artifacts import write_sidecar

    here = GpuIdentity("NVIDIA H200", "9.0", "10.12.0.36")
    files = {
        "G_AB.fp16.a100-trt10.12.0.36.engine": _engine_sidecar(gpu="NVIDIA A100", cc="8.0"),
        "G_AB.fp16.h200-trt10.11.0.33.engine": _engine_sidecar(trt="10.11.0.33"),
        "G_AB.fp32.h200-trt10.12.0.36.engine": _engine_sidecar(precision="fp32"),
        "G_AB.fp16.h200-trt10.12.0.36.engine": _engine_sidecar(),
        "G_BA.fp16.h200-trt10.12.0.36.engine": _engine_sidecar(direction="BtoA"),
    }
    for i, (name, data) in enumerate(files.items()):
        (tmp_path / name).write_bytes(b"engine")
        write_sidecar(tmp_path / name, data)
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    assert find_engine(tmp_path, "AtoB", here).name == "G_AB.fp16.h200-trt10.12.0.36.engine"
    assert find_engine(tmp_path, "AtoB", here, "fp32").name == "G_AB.fp32.h200-trt10.12.0.36.engine"
    assert find_engine(tmp_path, "BtoA", here).name.startswith("G_BA.")
    assert find_engine(tmp_path, "AtoB", GpuIdentity("NVIDIA L4", "8.9", "10.12.0.36")) is None
    assert find_engine(tmp_path / "missing", "AtoB", here) is None


def test_profile_violation_names_the_range():
    from cyc_engines.tensorrt import profile_violation

    lo, hi = (1, 3, 256, 256), (4, 3, 1088, 1920)
    assert profile_violation((2, 3, 720, 1280), lo, hi) is None
    message = profile_violation((1, 3, 1920, 1080), lo, hi)
    assert "1x3x1920x1080" in message and "H 256..1088" in message and "W 256..1920" in message


def test_export_command_imports_nothing_heavy():
    code = (
        "import sys; from cyclegan_cli.cli import cli; import cyclegan_cli.commands.export, cyclegan_cli.export.exporter;"
        "import cyc_engines.tensorrt; "
        "bad = {'torch', 'onnx', 'onnxruntime', 'tensorrt'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_exported_file_format_imports_no_torch():
    code = "import sys; import cyclegan_cli.models.artifacts; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the exported graph in `cyc run` ----------------------------------------------------------------------------


def test_cyc_run_with_exported_onnx(exported, tmp_path):
    from PIL import Image

    from cyclegan_cli.export.onnx_graph import synthetic_image

    run, *_ = exported
    image = tmp_path / "in.png"
    Image.fromarray(synthetic_image(50, 66)).save(image)
    for graph, engine in (("G_AB.onnx", "openvino fp32"), ("G_AB.fp16.onnx", "onnxruntime fp16")):
        out = tmp_path / f"{graph}.png"
        args = ["run", str(image), "--checkpoint", str(run / "export" / graph), "--out", str(out), "--device", "cpu"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert f"engine: {engine} on cpu" in result.output  # the graph's own precision, not the default
        assert Image.open(out).size == (66, 50)
    refused = CliRunner().invoke(cli, [*args, "--precision", "bf16", "--overwrite"])
    assert refused.exit_code == 2 and "was exported in fp16" in refused.output
