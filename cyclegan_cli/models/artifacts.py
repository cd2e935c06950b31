"""What an exported file is: its name, the folder it goes in, its JSON sidecar, the weights it was made from, and
its precision. ``cyc export`` writes these files; the engines and the auto rule read them; both sides use this
module.

Files, in a run's ``export/`` folder (or ``cyc export --out``), per direction (G_AB translates AtoB, G_BA BtoA)::

    G_AB.onnx                                   fp32 graph
    G_AB.fp16.onnx                              fp16 graph, InstanceNorm in fp32, float32 I/O
    G_AB.fp16.<gpu-slug>-trt<version>.engine    TensorRT engine built from the graph of that precision
    G_AB.int8.xml + G_AB.int8.bin               OpenVINO int8 model

and beside each ``<file>.json``, its sidecar (``"format": SIDECAR_FORMAT``), which records among the rest the
weights' sha256 (:func:`weights_record`): a file made from other weights is stale (:func:`digest_problem`).

Nothing heavy is imported here: torch (for a digest and its version) and onnx (for a graph's precision) only
inside functions.
"""

from __future__ import annotations

import hashlib
import json
import sys
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cyclegan_cli import __version__
from cyclegan_cli.atomic import atomic_write_bytes
from cyclegan_cli.measured import to_json
from cyclegan_cli.models.run_folder import RunFolder
from cyclegan_cli.models.weights import generator_key

SIDECAR_FORMAT = "cyc-export"
# The graph's interface (ONNX input and output names, and the axes that may vary), recorded in every sidecar.
INPUT_NAME = "input"
OUTPUT_NAME = "output"
DYNAMIC_AXES = {0: "N", 2: "H", 3: "W"}
ONNX_PRECISION_KEY = "cyc.precision"  # the ONNX metadata entry that records a graph's precision
# A TensorRT engine's default shape profile (cyc export --min-shape/--opt-shape/--max-shape), N x C x H x W; the
# profile an engine was built with is recorded in its sidecar.
DEFAULT_MIN_SHAPE = "1x3x256x256"
DEFAULT_OPT_SHAPE = "1x3x720x1280"
DEFAULT_MAX_SHAPE = "4x3x1088x1920"


@dataclass(frozen=True)
class ShapeProfile:
    """The optimization profile of the ``input`` tensor: NCHW shapes the engine accepts, and the one it is tuned for."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def as_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


# --- names and folders ----------------------------------------------------------------------------------------------


def file_names(direction: str, precision: str, gpu_tag: str | None = None) -> tuple[str, str]:
    """(onnx name, engine name) for a direction and precision; the engine name needs the GPU tag."""
    key = generator_key(direction)
    onnx_name = f"{key}.onnx" if precision == "fp32" else f"{key}.{precision}.onnx"
    engine_name = f"{key}.{precision}.{gpu_tag}.engine" if gpu_tag else ""
    return onnx_name, engine_name


def int8_name(direction: str) -> str:
    return f"{generator_key(direction)}.int8.xml"


def engine_pattern(direction: str) -> str:
    """The glob that matches the TensorRT engines of ``direction`` in an export folder."""
    return f"{generator_key(direction)}.*.engine"


def export_dir(source: Path) -> Path:
    """A run folder's ``export/``; for ``<run>/checkpoints/x.pt`` the run's; for a lone file, ``export/`` beside it."""
    run = RunFolder.holding(source)
    return (run or RunFolder(Path(source).parent)).export


# --- sidecars -------------------------------------------------------------------------------------------------------


def from_to(info, direction: str) -> tuple[str, str]:
    """(source domain, target domain) of ``direction``: AtoB translates domain a to b, BtoA b to a."""
    a, b = info.domain_a, info.domain_b
    return (a, b) if direction == "AtoB" else (b, a)


def library_versions(tensorrt: str | None = None) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    def dist(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    import torch

    return {
        "cyc": __version__,
        "torch": torch.__version__,
        "onnx": dist("onnx"),
        "onnxruntime": dist("onnxruntime") or dist("onnxruntime-gpu"),
        "tensorrt": tensorrt or dist("tensorrt"),
        "openvino": dist("openvino"),
        "nncf": dist("nncf"),
        "python": sys.version.split()[0],
    }


def build_sidecar(
    *,
    kind: str,
    file: Path,
    info,
    precision: str,
    opset: int | None,
    versions: dict,
    profile: ShapeProfile | None = None,
    gpu=None,
    parity: list | None = None,
    onnx_file: str | None = None,
    extra: dict | None = None,
) -> dict[str, Any]:
    """The JSON that describes an exported file: what it is, its interface, shapes, versions, and for an engine the
    GPU and shape profile (``extra`` adds the weights record, calibration, fidelity...)."""
    a, b = info.domain_a, info.domain_b
    src, dst = from_to(info, info.direction)
    tensor = {"layout": "NCHW", "channels": "RGB", "range": [-1.0, 1.0], "dtype": "float32"}
    data: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "kind": kind,
        "file": file.name,
        "direction": info.direction,
        "generator": generator_key(info.direction),
        "domains": {"a": a, "b": b, "from": src, "to": dst},
        "architecture": info.architecture,
        "ngf": info.ngf,
        "n_blocks": info.n_blocks,
        "source": str(info.source),
        "input": {"name": INPUT_NAME, **tensor, "height_width_multiple_of": 4},
        "output": {"name": OUTPUT_NAME, **tensor},
        "precision": precision,
        "opset": opset,
        "versions": versions,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if kind in ("onnx", "openvino"):
        data["shapes"] = {
            "input": ["N", 3, "H", "W"],
            "output": ["N", 3, "H", "W"],
            "dynamic_axes": {str(k): v for k, v in DYNAMIC_AXES.items()},
        }
        if precision == "fp16":
            data["instance_norm"] = "float32 (Cast nodes around every InstanceNormalization)"
        if kind == "openvino":
            data["weights_file"] = file.with_suffix(".bin").name
    else:
        data["shapes"] = {"input": "profile", "profile": profile.as_dict() if profile else None}
        data["onnx"] = onnx_file
        if gpu is not None:
            data["gpu"] = {"name": gpu.name, "compute_capability": gpu.compute_capability}
            data["tensorrt"] = gpu.tensorrt
    if parity:
        data["parity"] = [
            {"input": p.label, "shape": list(p.shape), "max_abs_error": to_json(p.max_abs), "psnr_db": to_json(p.psnr)}
            for p in parity
        ]
    data.update(extra or {})
    return data


def sidecar_path(file: Path) -> Path:
    return file.with_name(file.name + ".json")


def write_sidecar(file: Path, data: dict) -> Path:
    path = sidecar_path(file)
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())
    return path


def read_sidecar(file: Path) -> dict | None:
    try:
        return json.loads(sidecar_path(file).read_text())
    except (OSError, ValueError):
        return None


# --- the weights a file was made from -------------------------------------------------------------------------------

_digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def weights_sha256(generator) -> str:
    """sha256 of the generator's tensors (names, dtypes, shapes, bytes, in sorted key order): the same weights
    give the same digest whether they came from ``last.pt``, a ``.safetensors`` or an official ``.pth``."""
    if generator not in _digests:
        _digests[generator] = state_sha256(generator.state_dict())
    return _digests[generator]


def state_sha256(state: dict) -> str:
    """:func:`weights_sha256` of a state dict."""
    import torch

    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def source_step(generator, info) -> int | None:
    """The training step the weights are from: a checkpoint's own, or for the generator a run wrote when training
    ended, its run's ``last.pt``'s when that holds the same weights; None where nothing records it (a .pth)."""
    source = Path(getattr(info, "source", "") or ".")
    if info.kind == "checkpoint":
        checkpoint = source
    elif info.kind == "safetensors" and RunFolder(source.parent).last_checkpoint.is_file():
        checkpoint = RunFolder(source.parent).last_checkpoint
    else:
        return None
    import torch

    try:
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        if checkpoint != source and state_sha256(payload["models"][generator_key(info.direction)]) != (
            weights_sha256(generator)
        ):
            return None
        return int(payload["step"])
    except Exception:  # noqa: BLE001 - the step is a courtesy: a checkpoint that does not say gives None
        return None


def weights_record(generator, info) -> dict[str, Any]:
    """What a sidecar records of the weights it was made from."""
    return {
        "sha256": weights_sha256(generator),
        "step": source_step(generator, info),
        "source": str(getattr(info, "source", "")),
    }


def recorded_sha256(sidecar: dict | None) -> str | None:
    return ((sidecar or {}).get("weights") or {}).get("sha256")


def digest_problem(sidecar: dict | None, generator) -> str | None:
    """None when an exported file's sidecar records these weights, else why it does not match."""
    recorded = recorded_sha256(sidecar)
    if recorded is None:
        return "its sidecar records no weights digest (exported before cyc recorded one): re-export it"
    here = weights_sha256(generator)
    if recorded != here:
        return f"made from other weights (sha256 {recorded[:12]}, these are {here[:12]}): stale, re-export it"
    return None


# --- a file's precision ---------------------------------------------------------------------------------------------


def exported_precision(path: Path) -> str | None:
    """The precision an exported file was built in: its sidecar says, else an ONNX graph's own metadata;
    None when neither tells (a file made elsewhere)."""
    stored = (read_sidecar(path) or {}).get("precision")
    if stored is None and path.suffix.lower() == ".onnx":
        stored = graph_precision(path)
    if stored is None and path.suffix.lower() == ".xml":
        stored = "int8" if is_int8_xml(path) else None
    return stored


def graph_precision(path: Path) -> str | None:
    """The precision recorded in a graph's metadata (:data:`ONNX_PRECISION_KEY`, "fp16" / "fp32"); for a graph
    made elsewhere, "fp16" when its weights are float16, else None. Reads the structure only, not external data."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - no onnx package, or no readable graph: the engine that opens it says why
        return None
    recorded = {entry.key: entry.value for entry in model.metadata_props}.get(ONNX_PRECISION_KEY)
    if recorded:
        return recorded
    if any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer):
        return "fp16"
    return None


def is_int8_xml(path: Path) -> bool:
    """An OpenVINO IR that holds FakeQuantize operations (a quantized model), by its text."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return any('type="FakeQuantize"' in line for line in f)
    except OSError:
        return False
