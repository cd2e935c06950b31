"""``cyc doctor``: the facts match this machine, the auto picks are the rule's own, and a broken probe is one row."""

from __future__ import annotations

import importlib.util
import json
import platform
import re
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from cyclegan_cli import __version__
from cyclegan_cli.cli import cli
from cyclegan_cli.commands import doctor_facts as doctor
from cyclegan_cli.plugin_api import ModelSource
from cyclegan_cli.translation.engine_choice import choose_engine, workload

WIDE = {"COLUMNS": "400"}  # one row per line, so that a row's text can be searched for
JOBS = {"photos": [(1, 256, 256)] * 100, "video": [(1800, 1920, 1080)]}  # as the help text describes them


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """CYC_CACHE_DIR set to a folder holding 1536 bytes in two files, one in a subfolder."""
    root = tmp_path / "cyc-cache"
    (root / "models").mkdir(parents=True)
    (root / "models" / "a.bin").write_bytes(b"x" * 1024)
    (root / "b.bin").write_bytes(b"y" * 512)
    monkeypatch.setenv("CYC_CACHE_DIR", str(root))
    return root


def proc_cpu_flags() -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (the first "flags" line), read here rather than through
    the code under test; none where there is no /proc/cpuinfo (then doctor must report none either)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    found = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return set(found.group(1).split()) if found else set()


def invoke(*args: str):
    result = CliRunner().invoke(cli, ["doctor", "--device", "cpu", *args], env=WIDE)
    assert result.exit_code == 0, result.output
    return result


def facts(*args: str) -> dict:
    return json.loads(invoke("--json", *args).stdout)


def expected_pick(device: str, sizes, tmp_path):
    model = ModelSource(path=tmp_path / "no-export" / "G_AB.safetensors", direction="AtoB")
    return choose_engine("auto", model, device, "auto", workload(sizes))


def test_json_holds_the_documented_keys_and_this_machines_facts(cache, tmp_path):
    data = facts()
    assert set(data) == {"versions", "devices", "plugins", "cache", "auto"}
    versions = data["versions"]
    assert set(versions) == {"python", "cyc", "torch", "tensorrt", "onnxruntime", "openvino", "torch_fidelity", "av"}
    assert versions["python"]["version"] == platform.python_version()
    assert versions["cyc"]["version"] == __version__ == metadata.version("cyclegan-cli")
    installed = (("torch", "torch"), ("onnxruntime", "onnxruntime"), ("openvino", "openvino"), ("av", "av"))
    for key, dist in (*installed, ("torch_fidelity", "torch-fidelity")):
        assert versions[key]["status"] == "ok", versions[key]
        assert versions[key]["version"] == metadata.version(dist)
    if importlib.util.find_spec("tensorrt") is None:
        assert versions["tensorrt"] == {"status": "not installed", "install": "pip install 'cyclegan-cli[tensorrt]'"}
    import av
    import onnxruntime
    import torch

    assert versions["torch"]["cuda"] == torch.version.cuda
    assert versions["onnxruntime"]["providers"] == onnxruntime.get_available_providers()
    assert versions["av"]["ffmpeg"] == av.ffmpeg_version_info
    assert set(versions["av"]["encoders"]) == {"libx264", "libx265", "aac", "libopus"}
    assert versions["av"]["encoders"]["libx264"] is ("libx264" in av.codecs_available)

    devices = data["devices"]
    cpu = devices["cpu"]
    flags = proc_cpu_flags()
    assert cpu["features"] == {
        "AVX2": "avx2" in flags,
        "AVX512F": "avx512f" in flags,
        "AVX512-VNNI": "avx512_vnni" in flags,
        "AVX512-BF16": "avx512_bf16" in flags,
        "AMX-BF16": "amx_bf16" in flags,
    }
    assert cpu["torch_threads"] == torch.get_num_threads() and cpu["cpus"] >= 1 and cpu["model"]
    assert devices["mps"]["status"] == "ok"
    assert len(devices["cuda"]["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)

    engines = data["plugins"]["engines"]
    assert {"torch", "torch-compile", "onnxruntime", "openvino", "tensorrt"} <= set(engines)
    assert engines["torch"] == {"status": "available", "provider": "cyclegan-cli", "reason": None}
    assert set(data["plugins"]["readers"]) >= {"image", "video"}

    assert data["cache"] == {"status": "ok", "path": str(cache), "from_env": True, "exists": True, "size_bytes": 1536}

    auto = data["auto"]
    assert auto["device_option"] == "cpu" and auto["device"] == "cpu"
    for key, sizes in JOBS.items():
        choice = expected_pick("cpu", sizes, tmp_path)
        job = auto["jobs"][key]
        assert (job["engine"], job["precision"], job["reason"]) == (choice.name, choice.precision, choice.reason)
    assert auto["jobs"]["video"]["megapixel_frames"] == pytest.approx(1800 * 1920 * 1080 / 1e6, abs=0.1)


def test_screen_shows_the_same_facts_on_one_screen(cache, tmp_path):
    result = invoke()
    out = result.stdout
    assert result.stderr == ""
    lines = out.splitlines()
    assert len(lines) <= 45, out
    for heading in ("Versions", "Devices", "Plugins", "Cache", "--engine auto"):
        assert any(line.startswith(heading) for line in lines), heading
    assert re.search(rf"^  torch +{re.escape(metadata.version('torch'))}, ", out, re.MULTILINE)
    assert f"{cache}" in out and "1.5 KiB" in out and "CYC_CACHE_DIR" in out
    assert "cyclegan-cli[tensorrt]" in out  # the install hint as it is, not read as rich markup
    for label, sizes in (("100 photos 256x256", JOBS["photos"]), ("1080p30 video 1 min", JOBS["video"])):
        choice = expected_pick("cpu", sizes, tmp_path)
        row = next(line for line in lines if line.strip().startswith(label))
        assert f"{choice.name} {choice.precision}: {choice.reason}" in row


def test_a_failing_probe_is_its_own_error_row_and_the_command_succeeds(monkeypatch, cache):
    def broken():
        raise RuntimeError("DLL load failed\nsecond line")

    monkeypatch.setattr(doctor, "probe_onnxruntime", broken)
    data = facts()
    assert data["versions"]["onnxruntime"] == {"status": "error", "error": "RuntimeError: DLL load failed"}
    assert data["versions"]["torch"]["status"] == "ok" and data["auto"]["status"] == "ok"
    out = invoke().stdout
    row = next(line for line in out.splitlines() if line.strip().startswith("ONNX Runtime"))
    assert "error: RuntimeError: DLL load failed" in row and "second line" not in out
    debug = invoke("--debug")
    assert "Traceback" in debug.stderr and "DLL load failed" in debug.stderr


def test_a_missing_library_names_its_extra_and_the_auto_rule_follows(monkeypatch, cache, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == "openvino" else real(name, *a, **k)
    )
    data = facts()
    assert data["versions"]["openvino"] == {
        "status": "not installed",
        "install": "pip install 'cyclegan-cli[openvino]'",
    }
    assert data["plugins"]["engines"]["openvino"]["status"] == "unavailable"
    assert "cyclegan-cli[openvino]" in data["plugins"]["engines"]["openvino"]["reason"]
    for key, sizes in JOBS.items():
        choice = expected_pick("cpu", sizes, tmp_path)
        assert choice.name != "openvino" and data["auto"]["jobs"][key]["engine"] == choice.name
    assert "not installed: pip install 'cyclegan-cli[openvino]'" in invoke().stdout


def test_cuda_rows_and_the_cuda_rule_without_a_gpu(monkeypatch, cache, tmp_path):
    """The GPU rows and the CUDA half of the auto rule, on a machine that has no GPU: the device is faked."""
    import cyclegan_cli.devices

    gpu = {"index": 0, "name": "NVIDIA H200", "compute_capability": "9.0", "memory_gib": 139.8}
    monkeypatch.setattr(doctor, "probe_cuda", lambda: {"gpus": [gpu], "note": None})
    monkeypatch.setattr(cyclegan_cli.devices, "resolve_device", lambda device: "cuda")
    data = facts()
    assert data["auto"]["device"] == "cuda"
    for key, sizes in JOBS.items():
        choice = expected_pick("cuda", sizes, tmp_path)
        job = data["auto"]["jobs"][key]
        assert (job["engine"], job["precision"], job["reason"]) == (choice.name, choice.precision, choice.reason)
    assert data["auto"]["jobs"]["photos"]["engine"] == "torch" and data["auto"]["jobs"]["photos"]["precision"] == "fp16"
    out = invoke().stdout
    assert re.search(r"^  CUDA 0 +NVIDIA H200, compute capability 9\.0, 139\.8 GiB", out, re.MULTILINE)
    assert "picks on cuda (--device cpu)" in out


def test_a_device_that_is_not_here_is_an_error_row(cache):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    result = CliRunner().invoke(cli, ["doctor", "--device", "cuda", "--json"])
    assert result.exit_code == 0
    auto = json.loads(result.stdout)["auto"]
    assert auto["status"] == "error" and "no CUDA GPU is visible" in auto["error"]
    assert not auto["error"].startswith("UsageError")


def test_sizes_and_cudnn_versions_read_as_people_write_them():
    assert doctor.human_size(512) == "512 bytes"
    assert doctor.human_size(1536) == "1.5 KiB"
    assert doctor.human_size(3 * 2**30) == "3.0 GiB"
    assert doctor._cudnn_text(92400) == "9.24.0" and doctor._cudnn_text(8907) == "8.9.7"
    assert doctor._cudnn_text(None) is None
