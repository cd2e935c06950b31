"""Devices and precisions: turn ``--device auto`` / ``--precision auto`` into concrete choices, with reasons."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from cyclegan_cli.errors import UsageError

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def cuda_index(device: str) -> int:
    """The GPU a device string names: N for ``cuda:N``, 0 for ``cuda``."""
    return int(device.split(":")[1]) if device.startswith("cuda:") else 0


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA GPU is visible, else ``mps`` on Apple silicon, else ``cpu``."""
    if device == "cpu" or (device == "auto" and not _gpu_device_nodes()):
        return "cpu"  # without importing torch (2.3 s on a 2-core AVX2-only EPYC): an exported model may never need it
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA GPU is visible here; use --device cpu")
        if cuda_index(device) >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: Apple's Metal backend is not available here; use --device cpu")
    return device


def _gpu_device_nodes() -> bool:
    """Whether this machine may have a GPU torch can use: anywhere but Linux, yes (Apple's MPS); on Linux, only
    with an NVIDIA, WSL or ROCm device node (no CUDA device is visible without one)."""
    import sys

    if not sys.platform.startswith("linux"):
        return True
    return any(Path(node).exists() for node in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd"))


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_bf16_unit() -> str | None:
    """The CPU's native bf16 unit: "AMX" (tile matrix multiply), "AVX512-BF16" (dot products), or None.

    Both make bf16 about twice as fast as fp32 or more; only AMX makes compiled bf16 clearly beat OpenVINO bf16
    (benchmarks/run_throughput.py), which is what ``--engine auto`` needs to know.
    """
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return None


def cpu_int8_path() -> str | None:
    """How the CPU multiplies int8: "AMX-INT8" (tile matrix multiply), "AVX512-VNNI" or "AVX-VNNI" (int8 dot
    products), "AVX2" (no int8 unit: OpenVINO multiplies u8 x s8 pairs and adds them with AVX2's
    multiply-add instructions), or None (no AVX2).

    On every one of them an int8 model has measured faster than fp32 (1.75x on an AVX2-only EPYC, several
    times with VNNI or AMX: :mod:`cyclegan_cli.translation.break_even`); ``--engine auto`` weighs it there.
    """
    flags = cpu_flags()
    if "amx_int8" in flags:
        return "AMX-INT8"
    if "avx512_vnni" in flags:
        return "AVX512-VNNI"
    if "avx_vnni" in flags:
        return "AVX-VNNI"
    if "avx2" in flags:
        return "AVX2"
    return None


@functools.cache
def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_kind() -> str:
    """The CPU model and its int8 and bf16 units, in one line: what an int8 model measured here is valid for."""
    return f"{cpu_model_name()}; int8 unit {cpu_int8_path() or 'none'}; bf16 unit {cpu_bf16_unit() or 'none'}"


def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AMX or AVX512-BF16): there bf16 is about 2x fp32 or better."""
    return cpu_bf16_unit() is not None


def has_cxx_compiler() -> bool:
    """torch.compile on a CPU generates C++: without a compiler it cannot run."""
    return any(shutil.which(cc) for cc in ("g++", "c++", "clang++"))


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> fp16 on CUDA, bf16 on a CPU that computes it natively, else fp32."""
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "fp16"
    if device == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def torch_dtype(precision: str):
    import torch

    return getattr(torch, TORCH_DTYPES[precision])
