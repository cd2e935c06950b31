"""Engines agree with each other on the same generator and image; pre/post-processing is exact."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cyclegan_cli import registry
from cyclegan_cli.framing import from_output_array, to_input_array, to_input_tensor, to_uint8_frames
from cyclegan_cli.plugin_api import ModelSource
from tests.helpers import make_generator


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def model() -> ModelSource:
    return ModelSource(path=Path("tiny"), direction="AtoB", generator=make_generator(3))


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Two 46x70 frames (not multiples of 4) with structure, so padding and per-image norms matter."""
    y, x = np.mgrid[0:46, 0:70]
    base = np.stack([x * 3.6, y * 5.5, (x + y) * 2.2], axis=-1)
    noise = np.random.default_rng(0).integers(0, 40, size=(2, 46, 70, 3))
    return np.clip(base[None] + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def reference(model, frames) -> np.ndarray:
    return registry.load("engines", "torch")(model, device="cpu", precision="fp32")(frames)


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_fp32_engines_match_torch(name, model, frames, reference):
    engine = registry.load("engines", name)(model, device="cpu", precision="fp32")
    out = engine(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert psnr(out, reference) >= 60
    if name == "openvino":  # it would silently compute bf16 on an AMX CPU without the hint
        assert engine.inference_precision == "f32"


def cpu_has_bf16_unit() -> bool:
    """AVX512-BF16 or AMX-BF16 in /proc/cpuinfo's flags (read here, not through cyc's own probe)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    found = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return bool(found) and bool({"avx512_bf16", "amx_bf16"} & set(found.group(1).split()))


@pytest.mark.parametrize("name", ["torch", "openvino", "torch-compile"])
def test_bf16_engines_stay_close_to_fp32(name, model, frames, reference):
    """bf16 is computed in bf16 (its output is not fp32's) and stays within 30 dB PSNR of fp32. Measured on an AMD EPYC
    with AVX512-BF16: 40.0 dB torch, 40.5 dB OpenVINO, 29-30 levels apart at most, 41-47 % of the values differ."""
    import torch

    engine = registry.load("engines", name)(model, device="cpu", precision="bf16", batch_size=2)
    out = engine(frames)
    assert out.shape == frames.shape
    assert psnr(out, reference) >= 30
    if name == "openvino":
        if not cpu_has_bf16_unit():
            return  # OpenVINO may compute f32 where the CPU has no bf16 unit: nothing more to hold it to
        assert engine.inference_precision == "bf16"
    else:  # PyTorch computes bf16 on any CPU (emulated where there is no unit)
        assert {p.dtype for p in engine._eager.parameters()} == {torch.bfloat16}
    assert not np.array_equal(out, reference)  # an engine that silently ran fp32 would give the reference


def test_compiled_engine_tops_up_a_short_batch(model, frames, reference):
    engine = registry.load("engines", "torch-compile")(model, device="cpu", precision="fp32", batch_size=2)
    assert psnr(engine(frames[:1]), reference[:1]) >= 50


def test_onnxruntime_runs_an_exported_file(model, frames, reference, tmp_path):
    from cyclegan_cli.export.onnx_graph import export_onnx

    graph = export_onnx(model.generator, tmp_path / "g.onnx")
    exported = ModelSource(path=graph, direction="AtoB", exported=graph)
    assert psnr(registry.load("engines", "onnxruntime")(exported, device="cpu")(frames), reference) >= 60


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["torch", "onnxruntime"])
def test_cuda_engines_match_the_cpu(name, model, frames, reference):
    if name == "onnxruntime":
        ort = pytest.importorskip("onnxruntime")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            pytest.skip("this ONNX Runtime has no CUDA provider (pip install onnxruntime-gpu)")
    engine = registry.load("engines", name)(model, device="cuda", precision="fp32")
    assert psnr(engine(frames), reference) >= 40  # cuDNN picks other algorithms than the CPU: close, not equal


def test_padding_and_cropping_round_trip():
    batch = np.random.default_rng(1).integers(0, 256, size=(1, 5, 7, 3), dtype=np.uint8)
    x, size = to_input_array(batch)
    assert x.shape == (1, 3, 8, 8) and size == (5, 7)
    assert np.array_equal(from_output_array(x, size), batch)
    t, size = to_input_tensor(batch, "cpu", __import__("torch").float32)
    assert tuple(t.shape) == (1, 3, 8, 8)
    assert np.array_equal(to_uint8_frames(t, size), batch)


def test_outputs_are_rounded_and_clamped_not_truncated():
    y = np.array([0.999, -1.5, 1.5, 0.0039], dtype=np.float32).reshape(1, 1, 1, 4)
    out = from_output_array(np.repeat(y, 3, axis=1), (1, 4))
    assert out[0, 0, :, 0].tolist() == [255, 0, 255, 128]


def test_an_exported_model_runs_without_importing_torch_where_no_gpu_can_be(model, tmp_path):
    """``--device auto`` on Linux with no GPU device node is the CPU without asking torch (2 s to import on 2
    cores), and an exported file then runs in OpenVINO or ONNX Runtime alone: the student's fastest start."""
    import subprocess
    import sys

    from cyclegan_cli import devices
    from cyclegan_cli.export.onnx_graph import export_onnx

    if devices._gpu_device_nodes():
        pytest.skip("a GPU may be here: --device auto asks torch")
    from PIL import Image

    onnx = export_onnx(model.generator, tmp_path / "G_AB.onnx")
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(tmp_path / "a.png")
    script = (
        "import sys; from cyclegan_cli.cli import main; sys.argv = ['cyc', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as end:\n    print('torch' in sys.modules, end.code)"
    )
    ran = subprocess.run([sys.executable, "-c", script, "run", str(tmp_path / "a.png"), "--checkpoint", str(onnx),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True)  # fmt: skip
    assert ran.stdout.split()[-2:] == ["False", "0"], ran.stdout + ran.stderr
    assert (tmp_path / "out" / "a.png").is_file()


def test_openvino_converts_weights_once_and_reads_the_kept_model_after(model, frames, reference, tmp_path, monkeypatch):
    """The first engine converts and keeps the fp32 IR in the cache; the next reads it (converting is made to fail
    to prove it) with the same output; a damaged kept file is converted again."""
    pytest.importorskip("openvino")
    from cyclegan_cli.export import openvino_graph

    monkeypatch.setenv("CYC_CACHE_DIR", str(tmp_path))
    engine = registry.load("engines", "openvino")
    first = engine(model, device="cpu", precision="fp32")(frames)
    kept = list((tmp_path / "openvino").glob("*.xml"))
    assert len(kept) == 1 and kept[0].with_suffix(".bin").is_file()
    assert not [p for p in kept[0].parent.iterdir() if "cyc-tmp" in p.name]
    convert = openvino_graph.openvino_model

    def no_conversion(generator):
        raise AssertionError("converted again")

    monkeypatch.setattr(openvino_graph, "openvino_model", no_conversion)
    assert np.array_equal(engine(model, device="cpu", precision="fp32")(frames), first)
    kept[0].write_text("damaged")
    monkeypatch.setattr(openvino_graph, "openvino_model", convert)
    assert np.array_equal(engine(model, device="cpu", precision="fp32")(frames), first)
    # the fp32 engines' bound (test_fp32_engines_match_torch); measured 91.0 dB on a 2-core AVX2-only EPYC
    assert psnr(first, reference) >= 60


def test_openvino_and_nncf_send_no_telemetry(tmp_path):
    """OpenVINO's converter and NNCF send usage telemetry from a process forked off a thread unless the environment
    says CI; that fork once hung the test suite (OpenBLAS deadlocked in numpy's eigvals). A fresh process without
    CI set converts a generator and imports NNCF as cyc does: consent stays off and the environment is restored."""
    import os
    import subprocess
    import sys

    pytest.importorskip("openvino_telemetry")
    script = (
        "import os, openvino_telemetry\n"
        "from cyclegan_cli.export.openvino_graph import openvino_model\n"
        "from cyclegan_cli.export.quantize import import_nncf\n"
        "from tests.helpers import make_generator\n"
        "openvino_model(make_generator(3))\n"
        "import_nncf()\n"
        "print(openvino_telemetry.Telemetry().consent, 'CI' in os.environ)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["HOME"] = str(tmp_path)  # no consent file left by another run
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
    assert ran.stdout.split()[-2:] == ["False", "False"], ran.stdout + ran.stderr
