"""Which model, which engine: ``--checkpoint`` and ``--engine auto`` resolved into something that runs.

The ``auto`` rule is fixed and documented (``cyc run --help``), not a measurement at start-up:

* an exported file runs in the first engine, in the order of :data:`AUTO_ORDER`, that claims its suffix
  (``Engine.file_suffixes``), runs on the device and computes the file's precision (an fp32 ``.onnx`` on a CPU:
  openvino, else onnxruntime; an fp16 ``.onnx``: onnxruntime; a TensorRT ``.engine``: tensorrt);
* on CUDA: a prebuilt engine that matches this GPU (``cyc export``) if one exists, else torch-compile fp16
  (CUDA graphs) for long jobs, torch fp16 for short ones;
* on a CPU: torch-compile bf16 when the CPU has AMX, a C++ compiler exists, and one frame size has enough work
  to repay compiling (``COMPILE_MIN_MEGAPIXEL_FRAMES``); else OpenVINO (bf16 where native, else fp32), which
  compiles in seconds; else ONNX Runtime; else torch eager.

Why AMX and not any bf16 CPU: on an AVX512-BF16 CPU without AMX (AMD EPYC, 2 threads, 256x256) OpenVINO bf16 ran
4.2 frames/s after 1.5 s and torch-compile bf16 3.8-4.0 frames/s after 9-25 s, so compiling never pays there.
With AMX (a 2-core Xeon, 256x256: 0.15 s/frame OpenVINO bf16, 0.084 compiled bf16 channels_last, about 25 s to
compile before the first frame) compiling saves
about 1 s per megapixel-frame and repays its cost after about 25 megapixel-frames; the threshold of 40 leaves
a margin for the recompiles of a last short batch and a slower compiler.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cyclegan_cli import pretrained, registry
from cyclegan_cli.devices import cpu_bf16_unit, has_cxx_compiler, resolve_precision
from cyclegan_cli.errors import EngineUnavailable, UsageError
from cyclegan_cli.plugin_api import ModelSource
from cyclegan_cli.weights import find_latest_run, load_generator

# Compile pays off when one frame size has at least this many megapixel-frames (frames x width x height / 1e6).
# 40 megapixel-frames is about 600 frames at 256x256, or 45 frames of 720p.
COMPILE_MIN_MEGAPIXEL_FRAMES = 40.0
# The auto rule's order of preference; third-party engines come after these, by name.
AUTO_ORDER = ("tensorrt", "torch-compile", "openvino", "onnxruntime", "torch")


@dataclass
class EngineChoice:
    name: str
    precision: str
    reason: str


def load_model_source(checkpoint: str | None, runs_dir: str, direction: str) -> tuple[ModelSource, str | None]:
    """The model to run, and a note on where it came from when the user did not name it (or when a pretrained
    model's published partner stands in for ``direction``). A bare name such as ``horse2zebra`` that is no path
    is a pretrained model, fetched into the cache on first use."""
    note, stored = None, direction
    if checkpoint is None:
        path = find_latest_run(runs_dir)
        note = f"using the latest run: {path}"
    else:
        try:
            path, stored, note = pretrained.resolve(checkpoint, direction)
        except UsageError as error:
            raise UsageError(f"--checkpoint {error}") from None
    if path.suffix.lower() in registry.exported_suffixes():
        _check_exported_direction(path, direction)
        return ModelSource(path=path, direction=direction, exported=path), note
    generator, info = load_generator(path, stored)
    return ModelSource(path=path, direction=direction, generator=generator, info=info), note


def _check_exported_direction(path: Path, direction: str) -> None:
    """An exported file translates one way; its sidecar says which."""
    from cyclegan_cli.export import read_sidecar

    stored = (read_sidecar(path) or {}).get("direction")
    if stored is not None and stored != direction:
        raise UsageError(
            f"{path}: this file translates {stored}, not {direction}: pass --direction {stored}, "
            "or the other direction's file"
        )


def workload(frame_sizes: list[tuple[int, int, int]]) -> Counter:
    """Megapixel-frames per distinct frame size, from (frames, width, height) per input."""
    per_size: Counter = Counter()
    for frames, width, height in frame_sizes:
        per_size[(width, height)] += frames * width * height / 1e6
    return per_size


def choose_engine(requested: str, model: ModelSource, device: str, precision: str, per_size: Counter) -> EngineChoice:
    if model.exported is not None:
        return _engine_for_file(requested, model.exported, device, precision)
    if requested != "auto":
        cls = registry.load("engines", requested)
        reason = cls.unavailable_reason()
        if reason:
            raise EngineUnavailable(f"--engine {requested}: {reason}")
        return EngineChoice(requested, _precision_for(cls, precision, device), "chosen with --engine")
    name, reason = _auto_engine(model, device, per_size)
    cls = registry.load("engines", name)
    return EngineChoice(name, _precision_for(cls, precision, device), reason)


def engine_order() -> list[str]:
    """The installed engines that load, in the auto rule's order of preference."""
    installed = registry.load_all("engines")
    return [n for n in AUTO_ORDER if n in installed] + sorted(n for n in installed if n not in AUTO_ORDER)


def exported_precision(path: Path) -> str | None:
    """The precision an exported file was built in: its sidecar says, else an ONNX graph's own metadata;
    None when neither tells (a file made elsewhere)."""
    from cyclegan_cli.export import read_sidecar

    stored = (read_sidecar(path) or {}).get("precision")
    if stored is None and path.suffix.lower() == ".onnx":
        from cyclegan_cli.onnx_graph import graph_precision

        stored = graph_precision(path)
    return stored


def _engine_for_file(requested: str, path: Path, device: str, precision: str) -> EngineChoice:
    """The engine for an exported file: the one asked for, else the first in the auto order that claims the
    file's suffix, runs on ``device`` and computes the file's precision (fixed when it was exported)."""
    suffix, built = path.suffix.lower(), exported_precision(path)
    if built is not None and precision not in ("auto", built):
        raise UsageError(f"--precision {precision}: {path.name} was exported in {built}, which is fixed in the file")
    if requested != "auto":
        cls = registry.load("engines", requested)  # a plugin that fails to load says so here
        if suffix not in cls.file_suffixes:
            claimants = [n for n in engine_order() if suffix in registry.load("engines", n).file_suffixes]
            raise UsageError(
                f"--engine {requested} does not run '{suffix}' files; {', '.join(claimants) or 'no engine'} does"
            )
        candidates = [requested]
    else:
        candidates = [n for n in engine_order() if suffix in registry.load("engines", n).file_suffixes]
    problems = []
    for name in candidates:
        cls = registry.load("engines", name)
        # a file that does not say its precision runs in the engine's first (its default) precision
        wanted = built or (precision if precision in cls.precisions else cls.precisions[0])
        reason = cls.unavailable_reason()
        if reason is None and device.split(":")[0] not in cls.devices:
            reason = f"runs on {', '.join(cls.devices)}, not {device}"
        if reason is None and wanted not in cls.precisions:
            reason = f"does not compute {wanted}"
        if reason is None:
            why = "chosen with --engine" if requested != "auto" else f"the first engine that runs '{suffix}' files here"
            return EngineChoice(name, wanted, why)
        problems.append(f"{name} {reason}")
    what = f"{built} '{suffix}'" if built else f"'{suffix}'"
    raise EngineUnavailable(f"{path}: no engine here runs this {what} file ({'; '.join(problems)})")


def _auto_engine(model: ModelSource, device: str, per_size: Counter) -> tuple[str, str]:
    biggest = max(per_size.values(), default=0.0)
    if device.startswith("cuda"):
        for name in engine_order():
            cls = registry.load("engines", name)
            if cls.unavailable_reason() is None and cls.prebuilt_for(model, device) is not None:
                return name, f"a prebuilt {name} engine matches this GPU"
        if biggest >= COMPILE_MIN_MEGAPIXEL_FRAMES:
            return "torch-compile", f"CUDA, long job ({_describe_job(biggest)}): CUDA graphs pay off"
        return "torch", f"CUDA, short job ({_describe_job(biggest)})"
    if device != "cpu":
        return "torch", f"{device}: only the torch engine runs there"
    available = {n for n in engine_order() if registry.load("engines", n).unavailable_reason() is None}
    return cpu_engine(available, cpu_bf16_unit(), has_cxx_compiler(), biggest)


def cpu_engine(available: set[str], bf16_unit: str | None, compiler: bool, biggest: float) -> tuple[str, str]:
    """The CPU half of the auto rule, from the engines installed, the bf16 unit, and the largest one-size work."""
    job = _describe_job(biggest)
    if bf16_unit == "AMX" and "torch-compile" in available and compiler and biggest >= COMPILE_MIN_MEGAPIXEL_FRAMES:
        return "torch-compile", f"CPU with AMX and a long job ({job}): compiled bf16 is fastest and repays compiling"
    if "openvino" in available:
        if bf16_unit == "AMX":
            why = f"CPU with AMX but a short job or many sizes ({job})" if compiler else "CPU with AMX but no g++"
        elif bf16_unit:
            why = f"CPU with {bf16_unit} but no AMX: compiling would not be faster"
        else:
            why = "CPU without native bf16"
        return "openvino", f"{why}; OpenVINO compiles in seconds"
    if "onnxruntime" in available:
        return "onnxruntime", "CPU without OpenVINO installed"
    return "torch", "CPU without OpenVINO or ONNX Runtime installed"


def _describe_job(biggest: float) -> str:
    return f"{biggest:.0f} megapixel-frames at one size, threshold {COMPILE_MIN_MEGAPIXEL_FRAMES:.0f}"


def _precision_for(cls, precision: str, device: str) -> str:
    if precision == "auto":
        wanted = resolve_precision("auto", device)
        return wanted if wanted in cls.precisions else "fp32"
    if precision not in cls.precisions:
        raise UsageError(f"--precision {precision}: the {cls.name} engine runs {', '.join(cls.precisions)}")
    return precision


def check_device(cls, device: str) -> None:
    kind = device.split(":")[0]
    if kind not in cls.devices:
        raise UsageError(f"--engine {cls.name} runs on {', '.join(cls.devices)}, not {device}")
