"""``cyc export``: a trained generator -> ONNX graphs (checked against PyTorch) -> TensorRT engines, or an int8
OpenVINO model (measured against fp32), with sidecars.

The files and where they go are :mod:`cyclegan_cli.models.artifacts`'s (names, folder, sidecar I/O, weights digest);
the int8 model is made by ``cyclegan_cli.export.quantize`` (NNCF). Beside each file, a ``<file>.json`` sidecar (what
the file is, its interface, shapes, versions, the weights' sha256 and training step; for an engine the GPU; for
int8 the calibration and the measured fidelity). Every ONNX export is
run in ONNX Runtime and compared with PyTorch before it is kept; every int8 model is measured against fp32 on
held-out calibration frames, and below the gate nothing is kept. Every file is written under a temporary name and
renamed when whole. Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cyclegan_cli import registry
from cyclegan_cli.atomic import atomic_path
from cyclegan_cli.errors import CycError, EngineUnavailable, UsageError
from cyclegan_cli.export.onnx_graph import FP32_MAX_ABS_ERROR
from cyclegan_cli.export.quantize import MIN_PSNR
from cyclegan_cli.hub.sources import find_model, resolve_directions
from cyclegan_cli.models.artifacts import (
    DEFAULT_MAX_SHAPE,
    DEFAULT_MIN_SHAPE,
    DEFAULT_OPT_SHAPE,
    ShapeProfile,
    build_sidecar,
    export_dir,
    file_names,
    from_to,
    int8_name,
    library_versions,
    sidecar_path,
    weights_record,
    write_sidecar,
)
from cyclegan_cli.models.run_folder import RUNS_DIR

DIRECTION_CHOICES = ("AtoB", "BtoA", "both")
FORMATS = ("onnx", "tensorrt", "openvino", "auto")
PRECISIONS = ("fp32", "fp16", "int8")
FP16_MIN_PSNR = 25.0  # dB: a sanity bound only; ONNX Runtime's CPU provider computes fp16 graphs in fp32


# --- shapes ---------------------------------------------------------------------------------------------------------


def parse_shape(text: str, option: str = "shape") -> tuple[int, int, int, int]:
    """'1x3x256x256' -> (1, 3, 256, 256): N x C x H x W, C = 3, H and W multiples of 4, all positive."""
    parts = re.split(r"[x,]", str(text).strip().lower())
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"{option} {text!r}: expected NxCxHxW, e.g. 1x3x720x1280")
    n, c, h, w = (int(p) for p in parts)
    if min(n, c, h, w) <= 0:
        raise UsageError(f"{option} {text!r}: every dimension must be positive")
    if c != 3:
        raise UsageError(f"{option} {text!r}: C must be 3 (RGB), not {c}")
    for name, value in (("H", h), ("W", w)):
        if value % 4:
            raise UsageError(
                f"{option} {text!r}: {name} = {value} is not a multiple of 4 "
                f"(frames are padded up to one: use {value + (-value) % 4})"
            )
    return n, c, h, w


def make_profile(min_shape: str, opt_shape: str, max_shape: str) -> ShapeProfile:
    """The engine's optimization profile, checked: min <= opt <= max in every dimension."""
    lo = parse_shape(min_shape, "--min-shape")
    opt = parse_shape(opt_shape, "--opt-shape")
    hi = parse_shape(max_shape, "--max-shape")
    for axis, a, b, c in zip("NCHW", lo, opt, hi):
        if not a <= b <= c:
            raise UsageError(
                f"shape profile: {axis} must satisfy min <= opt <= max, got {a}, {b}, {c} "
                f"(--min-shape {format_shape(lo)} --opt-shape {format_shape(opt)} --max-shape {format_shape(hi)})"
            )
    return ShapeProfile(lo, opt, hi)


def format_shape(shape) -> str:
    return "x".join(str(int(d)) for d in shape)


# --- where from, where to --------------------------------------------------------------------------------------------


def resolve_source(source: str | None, runs_dir: str | Path, direction: str = "both") -> tuple[Path, str | None]:
    """The weights to export (:func:`sources.find_model`), and a note when they were not named by a path. A
    pretrained model translates AtoB only: its partner is exported as a model of its own."""
    from cyclegan_cli.hub import pretrained

    if source is not None and direction == "BtoA" and pretrained.names_one(source):
        model = pretrained.lookup(source)
        other = f"export its partner: cyc export {model.partner}" if model.partner else "it has no partner"
        raise UsageError(f"{source} translates {model.translation} (AtoB) only; for the other way {other}")
    path, _, note = find_model(source, runs_dir, direction)
    if path.suffix.lower() in registry.exported_suffixes():
        raise UsageError(f"{path}: already an exported file; export from a run folder or weights file")
    return path, note


# --- the command's work ----------------------------------------------------------------------------------------------


@dataclass
class ExportRequest:
    source: str | None = None
    runs_dir: str = RUNS_DIR
    direction: str = "both"
    format: str = "auto"
    precision: str = "fp32"
    opset: int = 18
    profile: ShapeProfile = field(
        default_factory=lambda: make_profile(DEFAULT_MIN_SHAPE, DEFAULT_OPT_SHAPE, DEFAULT_MAX_SHAPE)
    )
    workspace_gib: float = 4.0
    out: str | None = None
    device: str = "auto"
    timing_cache: str | None = None
    calibration: str | None = None  # int8: a folder, glob or video of the source domain
    min_psnr: float = MIN_PSNR  # int8: the gate, in dB against fp32


@dataclass
class ExportResult:
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def export_source(req: ExportRequest, say=_say) -> ExportResult:
    """Do what ``cyc export`` asks; messages go to ``say``; return the files written."""
    if req.direction not in DIRECTION_CHOICES:
        raise UsageError(f"--direction {req.direction}: use AtoB, BtoA or both")
    if req.format not in FORMATS:
        raise UsageError(f"--format {req.format}: use onnx, tensorrt, openvino or auto")
    if req.precision not in PRECISIONS:
        raise UsageError(f"--precision {req.precision}: cyc export writes fp32, fp16 or int8")
    if req.precision == "int8" or req.format == "openvino":
        return run_int8_export(req, say)
    if req.calibration is not None:
        raise UsageError("--calibration is for --int8 (the images an int8 model is calibrated and measured on)")

    # TensorRT first: an explicit --format tensorrt that cannot be honoured fails before any work is done.
    trt_reason = None
    if req.format != "onnx":
        from cyclegan_cli.export.tensorrt_build import tensorrt_unavailable_reason

        trt_reason = tensorrt_unavailable_reason(req.device)
        if trt_reason and req.format == "tensorrt":
            raise EngineUnavailable(trt_reason)
    build_engines = req.format != "onnx" and trt_reason is None

    source, directions, out_dir = _open_request(req, say)

    gpu = None
    if build_engines:
        from cyclegan_cli.export.tensorrt_build import current_gpu

        gpu = current_gpu(req.device if req.device != "auto" else "cuda")
    versions = library_versions(gpu.tensorrt if gpu else None)

    result = ExportResult()
    for direction in directions:
        onnx_file, parity, info, weights = export_checked_onnx(source, direction, out_dir, req, versions, say)
        result.files += [onnx_file, sidecar_path(onnx_file)]
        if build_engines:
            engine_file = build_checked_engine(onnx_file, info, req, gpu, versions, say, weights)
            result.files += [engine_file, sidecar_path(engine_file)]
    if trt_reason:
        line = f"TensorRT engine not built: {trt_reason}"
        result.notes.append(line)
        say(line)
    return result


def _open_request(req: ExportRequest, say) -> tuple[Path, list[str], Path]:
    """What every export starts from: the weights (``say``-ing where from when not named), the directions to
    export and the folder to write to, all checked before any work."""
    source, note = resolve_source(req.source, req.runs_dir, req.direction)
    if note:
        say(note)
    directions = resolve_directions(source, req.direction)
    if req.calibration is not None and len(directions) > 1:
        raise UsageError(
            f"--calibration {req.calibration}: {source} has both directions, whose source domains differ; "
            "pass --direction AtoB or --direction BtoA with it (or leave --calibration out: each direction then "
            "uses its domain's training images)"
        )
    out_dir = Path(req.out) if req.out else export_dir(source)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: exists and is not a folder")
    return source, directions, out_dir


def export_checked_onnx(source: Path, direction: str, out_dir: Path, req: ExportRequest, versions: dict, say):
    """Export one direction to ONNX, compare it with PyTorch in ONNX Runtime, keep it only if it agrees."""
    from cyclegan_cli.export.onnx_graph import compare_with_torch, default_check_inputs, export_onnx
    from cyclegan_cli.models.weights import load_generator

    generator, info = load_generator(source, direction)
    weights = weights_record(generator, info)
    onnx_name, _ = file_names(direction, req.precision)
    final = out_dir / onnx_name
    fp16 = req.precision == "fp16"
    src, dst = from_to(info, direction)
    say(f"{direction} ({src} -> {dst}): exporting {info.architecture} {req.precision} to {final}")
    with atomic_path(final) as tmp:
        export_onnx(generator, tmp, fp16=fp16, opset=req.opset)
        parity = compare_with_torch(generator, tmp, default_check_inputs())
        for p in parity:
            say(f"  ONNX Runtime vs PyTorch fp32, {p.line()}")
        _check_parity(final, parity, fp16)
    write_sidecar(
        final,
        build_sidecar(
            kind="onnx",
            file=final,
            info=info,
            precision=req.precision,
            opset=req.opset,
            versions=versions,
            parity=parity,
            extra={"weights": weights},
        ),
    )
    return final, parity, info, weights


def _check_parity(path: Path, parity, fp16: bool) -> None:
    for p in parity:
        if fp16:
            if not p.psnr >= FP16_MIN_PSNR:
                raise CycError(
                    f"{path}: the fp16 graph disagrees with PyTorch ({p.line()}; expected PSNR >= {FP16_MIN_PSNR} dB)"
                )
        elif not p.max_abs <= FP32_MAX_ABS_ERROR:
            raise CycError(
                f"{path}: the ONNX graph disagrees with PyTorch ({p.line()}; allowed {FP32_MAX_ABS_ERROR:g}); "
                "not written"
            )


def build_checked_engine(onnx_file: Path, info, req: ExportRequest, gpu, versions: dict, say, weights=None) -> Path:
    from cyclegan_cli.export.tensorrt_build import build_engine

    _, engine_name = file_names(info.direction, req.precision, gpu.tag)
    engine_file = onnx_file.with_name(engine_name)
    p = req.profile
    say(
        f"  TensorRT {gpu.tensorrt} on {gpu.name} (sm {gpu.compute_capability}): building {engine_file.name}, "
        f"shapes {format_shape(p.min)} .. {format_shape(p.opt)} .. {format_shape(p.max)}"
    )
    seconds = build_engine(
        onnx_file,
        engine_file,
        p,
        workspace_gib=req.workspace_gib,
        device=req.device if req.device != "auto" else "cuda",
        timing_cache=Path(req.timing_cache) if req.timing_cache else None,
        label=engine_file.name,
    )
    say(f"  built in {seconds:.0f} s")
    write_sidecar(
        engine_file,
        build_sidecar(
            kind="tensorrt",
            file=engine_file,
            info=info,
            precision=req.precision,
            opset=req.opset,
            versions=versions,
            profile=p,
            gpu=gpu,
            onnx_file=onnx_file.name,
            extra={"workspace_gib": req.workspace_gib, "build_seconds": round(seconds, 1), "weights": weights},
        ),
    )
    return engine_file


# --- int8 (OpenVINO + NNCF) ------------------------------------------------------------------------------------------


def run_int8_export(req: ExportRequest, say=_say) -> ExportResult:
    """``cyc export --int8``: per direction, calibrate on the source domain's images, quantize with NNCF, measure
    against fp32 on held-out frames; write ``G_AB.int8.xml`` + ``.bin`` + sidecar only when every direction asked
    for passes the gate (one that fails: exit 1 with its figure, nothing kept)."""
    from cyclegan_cli.devices import cpu_kind
    from cyclegan_cli.export import quantize
    from cyclegan_cli.export.openvino_graph import save_openvino_model
    from cyclegan_cli.models.weights import load_generator

    if req.format in ("onnx", "tensorrt"):
        raise UsageError(
            f"--precision int8 --format {req.format}: int8 models are OpenVINO models (.xml + .bin); "
            "use --format auto or openvino"
        )
    if req.precision != "int8":
        raise UsageError(
            f"--format openvino --precision {req.precision}: cyc export writes OpenVINO models in int8 only "
            "(add --int8); an fp32 .onnx runs in OpenVINO as it is"
        )
    reason = quantize.nncf_unavailable_reason()
    if reason:
        raise EngineUnavailable(f"--int8: {reason}")
    source, directions, out_dir = _open_request(req, say)
    plans = []
    for direction in directions:  # every usage error before any quantizing
        if req.calibration is not None:
            files, label = quantize.media_files(req.calibration), str(req.calibration)
        else:
            folder, label = quantize.training_images(source, direction)
            files = quantize.media_files(folder)
        plans.append((direction, files, label))
    ready = []
    for direction, files, label in plans:
        generator, info = load_generator(source, direction)
        calibration = quantize.calibration_from_files(files, label, quantize.EXPORT_FRAMES)
        src, dst = from_to(info, direction)
        xml = out_dir / int8_name(direction)
        say(f"{direction} ({src} -> {dst}): quantizing {info.architecture} to int8 for {xml}")
        say(f"  calibration: {calibration.line()}")
        quantize.need_frames(calibration)
        model, fidelity = quantize.quantize_generator(generator, calibration, req.min_psnr, say)
        extra = {"fidelity": fidelity.as_dict(), "calibration": calibration.as_dict(), "cpu": cpu_kind()}
        ready.append((xml, model, quantize.int8_sidecar(xml, generator, info, extra)))
    result = ExportResult()
    for xml, model, data in ready:
        result.files += save_openvino_model(model, xml, data)
    return result
