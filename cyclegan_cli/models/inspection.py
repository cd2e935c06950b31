"""``cyc inspect``: what a weights file, a run folder or an exported file is, read without running it.

:func:`inspect_path` gathers the facts as a dict (``--json`` prints it); :func:`render` turns them into lines.
A file that can be read is always described, never refused: what could not be made of it is in ``problem``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cyclegan_cli.errors import CycError, UsageError, first_line
from cyclegan_cli.models.weights import CHECKPOINT_FORMAT, DIRECTIONS, GeneratorInfo, read_generator_state

EXPORTED_SUFFIXES = (".onnx", ".engine", ".xml")
MACS_SIZE = (256, 256)  # the frame MACs are counted for (the size CycleGAN trains at)


def inspect_path(path: Path) -> dict[str, Any]:
    """The facts about ``path``; a UsageError only where there is nothing to read."""
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    facts: dict[str, Any] = {"path": str(path)}
    try:
        if path.suffix.lower() in EXPORTED_SUFFIXES:
            facts.update(_exported(path))
        else:
            facts.update(_weights(path))
    except CycError as error:
        facts["problem"] = first_line(error)
    return facts


def render(facts: dict[str, Any]) -> list[str]:
    """The facts as ``name: value`` lines, a generator's on lines of their own."""
    lines = []
    for key, value in facts.items():
        if key == "generators":
            for direction, generator in value.items():
                lines.append(f"{direction}: " + ", ".join(f"{k} {v}" for k, v in generator.items()))
        elif isinstance(value, dict):
            lines.append(f"{key}: " + ", ".join(f"{k} {v}" for k, v in value.items()))
        else:
            lines.append(f"{key}: {value}")
    return lines


def generator_facts(info: GeneratorInfo, state: dict) -> dict[str, Any]:
    """A generator's shape and variant, its parameters and its MACs on a 256x256 frame."""
    width, height = MACS_SIZE
    parameters = sum(t.numel() for k, t in state.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    return {
        "ngf": info.ngf,
        "blocks": info.n_blocks,
        "block_convs": "depthwise-separable" if info.blocks == "separable" else "full 3x3",
        "norm": info.norm,
        "upsampling": "transposed conv" if info.upsample == "transposed" else "upsample + conv",
        "conv_bias": info.bias,
        "parameters": parameters,
        f"gmacs_{width}x{height}": round(info.macs(width, height) / 1e9, 2),
    }


def _weights(path: Path) -> dict[str, Any]:
    """A run folder, a cyc checkpoint or safetensors generator, or another implementation's file."""
    generators, infos = {}, []
    for direction in DIRECTIONS:
        try:
            state, info = read_generator_state(path, direction)
        except UsageError:  # a file of one direction: the other is not in it
            continue
        generators[direction] = generator_facts(info, state)
        infos.append(info)
    if not infos:  # neither way reads: say why, the way cyc run would
        read_generator_state(path, "AtoB")
    info = infos[0]
    facts: dict[str, Any] = {"format": _format(path, info)}
    if info.family:
        facts["family"] = info.family
    facts["domains"] = f"{info.domain_a} -> {info.domain_b}"
    facts["generators"] = generators
    if info.distillation:
        facts["distilled"] = info.distillation
    return facts | _training(Path(info.source))


def _format(path: Path, info: GeneratorInfo) -> str:
    if path.is_dir():
        return f"cyc run folder (read from {Path(info.source).name})"
    return {
        "checkpoint": "cyc training checkpoint",
        "safetensors": "cyc safetensors generator" if not info.family else "safetensors (not written by cyc)",
        "official": "PyTorch weights (not written by cyc)",
    }.get(info.kind, info.kind)


def _training(source: Path) -> dict[str, Any]:
    """The step and the settings a cyc checkpoint records."""
    if source.suffix != ".pt":
        return {}
    from cyclegan_cli.models.weights import torch_load

    payload = torch_load(source)
    if not (isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT):
        return {}
    config = payload.get("config", {})
    kept = ("ngf", "n_blocks", "load_size", "crop_size", "batch_size", "lr", "gan_mode", "precision", "epochs")
    return {
        "step": payload.get("step"),
        "epoch": payload.get("epoch"),
        "settings": {k: config[k] for k in kept if k in config},
    }


def _exported(path: Path) -> dict[str, Any]:
    """An exported file: its sidecar's facts, and whether the weights it was made from are still the source's."""
    from cyclegan_cli.models.artifacts import digest_problem, exported_precision, read_sidecar, recorded_sha256

    sidecar = read_sidecar(path)
    kinds = {".onnx": "ONNX graph", ".engine": "TensorRT engine", ".xml": "OpenVINO model"}
    facts: dict[str, Any] = {"format": kinds[path.suffix.lower()], "precision": exported_precision(path)}
    if sidecar is None:
        facts["sidecar"] = "none: made elsewhere, or its .json was not kept"
        return facts
    for key in ("direction", "ngf", "n_blocks", "opset", "created"):
        if sidecar.get(key) is not None:
            facts[key] = sidecar[key]
    if "gpu" in sidecar:
        facts["gpu"] = sidecar["gpu"]
    weights = sidecar.get("weights") or {}
    facts["weights"] = {"sha256": (recorded_sha256(sidecar) or "not recorded")[:16], "step": weights.get("step")}
    source = weights.get("source")
    if source and Path(source).exists():
        from cyclegan_cli.models.weights import load_generator

        try:
            generator, _ = load_generator(source, sidecar.get("direction", "AtoB"))
        except CycError as error:  # the file's own facts still stand
            facts["digest"] = f"not checked: its source cannot be read ({first_line(error)})"
        else:
            facts["digest"] = digest_problem(sidecar, generator) or f"matches {source}"
    else:
        facts["digest"] = f"not checked: its source {source or '(not recorded)'} is not here"
    return facts
