"""int8 generators: OpenVINO models quantized with NNCF, each measured against fp32 before anything uses it.

One recipe serves ``cyc export --int8`` and ``cyc run --precision int8`` (and ``--engine auto``'s at-start case):

1. calibration frames: a folder, glob or video (``--calibration``), the source domain's training images that the
   run's ``config.json`` names, or the job's own frames; each becomes a crop of at most 256x256 at its own scale
   (the textures the generator sees at run time); unreadable files are skipped and counted;
2. every fourth frame is held out; NNCF's post-training quantization (default preset: symmetric int8
   activations, per-channel int8 weights, fast bias correction) calibrates on the rest;
3. the int8 model and the fp32 model run the held-out frames in OpenVINO (f32 inference hint): PSNR (peak to peak
   2, the [-1, 1] range) and max abs error. Below the gate (:data:`MIN_PSNR`, ``--min-psnr``) nothing is kept.

What stays fp32, by measurement (docs/internals.md has the table): the input of every InstanceNorm (OpenVINO's
MVN). Leaving it unquantized gained 3-6 dB on the demo's trained generator and costs almost no time (the
convolutions still compute in int8 and hand fp32 to the norm: 0.125 against 0.122 s per 256x256 frame on the full
generator); keeping the
first/last convolutions and the upsampling in fp32 as well gained only 0.1-0.4 dB for 4-38 % more time, so they
are quantized.

Only this module imports NNCF; OpenVINO, NNCF and torch are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cyclegan_cli.errors import CycError, EngineUnavailable, UsageError, first_line
from cyclegan_cli.export.openvino_graph import openvino_model, save_openvino_model, without_telemetry
from cyclegan_cli.measured import GENERATOR_PEAK_TO_PEAK, from_json, psnr, squared_error, to_json
from cyclegan_cli.models.artifacts import build_sidecar, library_versions, weights_record, weights_sha256
from cyclegan_cli.models.run_folder import RunFolder
from cyclegan_cli.plugin_api import missing_library

MIN_PSNR = 30.0  # dB against fp32, on held-out calibration frames: the default gate
CROP = 256  # calibration and held-out frames are crops of at most CROP x CROP at the frame's own scale
HOLD_OUT_EVERY = 4  # every fourth calibration frame measures fidelity instead of calibrating
EXPORT_FRAMES = 40  # cyc export: 30 calibrate, 10 held out
AT_START_FRAMES = 20  # cyc run: 15 calibrate, 5 held out (quantizing costs time before the first frame)
MIN_FRAMES = 2  # one to calibrate, one to measure
FP32_KEPT = "the input of every InstanceNorm (MVN): convolutions compute in int8 and hand fp32 to the norm"
RECIPE = "nncf-ptq-default, MVN inputs fp32, 256 crops, v1"  # part of the cache key: change it when the recipe changes


# --- what a measurement says ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fidelity:
    """The int8 model against fp32 on held-out frames."""

    psnr_db: float
    max_abs_error: float
    frames: int
    min_psnr_db: float

    @property
    def passed(self) -> bool:
        return self.psnr_db >= self.min_psnr_db

    def line(self) -> str:
        verdict = "passes" if self.passed else "fails"
        return (
            f"{self.psnr_db:.1f} dB PSNR against fp32 on {self.frames} held-out frame(s), max abs error "
            f"{self.max_abs_error:.3f}; {verdict} the {self.min_psnr_db:g} dB gate"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "psnr_db": to_json(self.psnr_db, 2),
            "max_abs_error": to_json(self.max_abs_error, 4),
            "frames": self.frames,
            "min_psnr_db": self.min_psnr_db,
            "against": "OpenVINO fp32, held-out calibration frames, outputs in [-1, 1] (peak to peak 2)",
        }

    @classmethod
    def from_dict(cls, data: dict | None) -> Fidelity | None:
        try:
            return cls(
                from_json(data["psnr_db"]),
                from_json(data["max_abs_error"]),
                int(data["frames"]),
                float(data["min_psnr_db"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


class FidelityError(CycError):
    """The int8 model is too far from fp32: nothing was kept."""

    def __init__(self, message: str, fidelity: Fidelity):
        super().__init__(message)
        self.fidelity = fidelity


@dataclass
class Calibration:
    """Crops to calibrate on and to measure with, and where they came from."""

    frames: list  # H x W x 3 uint8 crops
    source: str
    files: int = 0  # files that gave frames
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why) for each unreadable one

    def split(self) -> tuple[list, list]:
        """(calibrate, held out): every HOLD_OUT_EVERY-th frame is held out, at least one."""
        held = {i for i in range(len(self.frames)) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1}
        held = held or {len(self.frames) - 1}
        calibrate = [f for i, f in enumerate(self.frames) if i not in held]
        return calibrate, [self.frames[i] for i in sorted(held)]

    def line(self) -> str:
        skipped = f", {len(self.skipped)} unreadable file(s) skipped" if self.skipped else ""
        first = f" (first: {self.skipped[0][1]})" if self.skipped else ""
        return f"{len(self.frames)} frame(s) from {self.files} file(s) of {self.source}{skipped}{first}"

    def as_dict(self) -> dict[str, Any]:
        calibrate, held = self.split()
        return {
            "source": self.source,
            "files": self.files,
            "skipped_files": len(self.skipped),
            "calibration_frames": len(calibrate),
            "held_out_frames": len(held),
            "crop": CROP,
        }


def nncf_unavailable_reason() -> str | None:
    return missing_library("openvino", "OpenVINO", "openvino") or missing_library("nncf", "NNCF", "openvino")


# --- calibration frames ----------------------------------------------------------------------------------------


def crop(image, rng) -> Any:
    """A crop of at most CROP x CROP at the image's own scale, at a random place."""
    import numpy as np

    height, width = image.shape[:2]
    h, w = min(height, CROP), min(width, CROP)
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    return np.ascontiguousarray(image[top : top + h, left : left + w, :3])


def media_files(spec: str | Path, option: str = "--calibration") -> list[Path]:
    """A folder (searched recursively), a glob or a file -> the files some installed reader takes. Folders and
    globs are expanded as ``cyc run`` expands its inputs (:mod:`cyclegan_cli.translation.jobs`)."""
    from cyclegan_cli import registry
    from cyclegan_cli.files import GLOB_CHARACTERS, glob_files, walk_files

    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        candidates = walk_files(path)
    elif path.is_file():
        return [path]
    elif GLOB_CHARACTERS & set(text):
        candidates = sorted(glob_files(text))  # in path order, as calibration has always taken them
    else:
        raise UsageError(f"{option} {text}: no such file, folder or glob match")
    readers = list(registry.load_all("readers").values())
    return [p for p in candidates if any(r.can_read(p) > 0 for r in readers)]


def _spread(items: list, count: int) -> list:
    """``count`` items spread evenly over ``items`` first, then the rest in order (replacements for bad ones)."""
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    first = sorted({int(i * step) for i in range(count)})
    chosen = set(first)
    return [items[i] for i in first] + [item for i, item in enumerate(items) if i not in chosen]


def _frames_of(reader, wanted: int, max_frames: int | None = None) -> Iterable:
    """Up to ``wanted`` frames of one reader, spread over its (known) length, decoding at most 8x ``wanted``."""
    total = reader.info.frame_count or wanted
    if max_frames is not None:
        total = min(total, max_frames)
    stride = max(1, min(total // max(wanted, 1), 8))
    taken = 0
    for index, frame in enumerate(reader.frames()):
        if index % stride == 0:
            yield frame
            taken += 1
            if taken >= wanted:
                return


def calibration_from_files(
    files: list[Path], source: str, wanted: int, *, max_frames: int | None = None, transform=None, take=crop
) -> Calibration:
    """Crops from ``files`` (images give one frame, a video up to its share); unreadable files skipped, counted.
    ``take(image, rng)`` makes a frame's crop (``cyc distill`` keeps whole frames)."""
    from cyclegan_cli import registry

    def open_reader(path: Path):
        return registry.reader_for(path)(path, max_frames=max_frames)

    return _collect([(path, open_reader) for path in files], source, wanted, max_frames, transform, take)


def calibration_from_jobs(jobs, wanted: int, *, max_frames: int | None = None, transform=None) -> Calibration:
    """Crops from ``cyc run``'s own inputs, as the pipeline will see them (after ``--size``)."""
    items = [(job.source, lambda _, job=job: job.open_reader(max_frames)) for job in jobs]
    return _collect(items, "this job's inputs", wanted, max_frames, transform)


def _collect(items: list, source: str, wanted: int, max_frames, transform, take=crop) -> Calibration:
    """Up to ``wanted`` crops from (path, open_reader) items, spread over them; what cannot be read is counted."""
    import numpy as np

    from cyclegan_cli.framing import MIN_SIDE

    rng = np.random.default_rng(0)
    result = Calibration(frames=[], source=source)
    per_item = max(1, math.ceil(wanted / max(len(items), 1)))
    for path, open_reader in _spread(items, wanted):
        if len(result.frames) >= wanted:
            break
        try:
            with open_reader(path) as reader:
                got = _take(reader, min(per_item, wanted - len(result.frames)), max_frames, transform, take, rng)
        except Exception as error:  # noqa: BLE001 - any unreadable file is skipped and counted, never fatal
            result.skipped.append((str(path), first_line(error)))
            continue
        if not got:
            result.skipped.append((str(path), f"no frame of at least {MIN_SIDE}x{MIN_SIDE} pixels"))
            continue
        result.frames += got
        result.files += 1
    return result


def _take(reader, count: int, max_frames, transform, take, rng) -> list:
    from cyclegan_cli.framing import MIN_SIDE

    crops = []
    for frame in _frames_of(reader, count, max_frames):
        if transform is not None:
            frame = transform(frame)
        if min(frame.image.shape[:2]) >= MIN_SIDE:
            crops.append(take(frame.image, rng))
    return crops


def training_images(source: Path, direction: str) -> tuple[Path, str]:
    """The source domain's training folder that the run's ``config.json`` names, for ``direction``."""
    run = RunFolder.holding(source)
    config_file = run.config if run is not None else None
    hint = "pass --calibration PATH (a folder, glob or video of the source domain)"
    if config_file is None or not config_file.is_file():
        raise UsageError(f"{source}: no calibration images: it is not a run folder with a config.json; {hint}")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"{config_file}: unreadable ({error}); {hint}") from None
    key, domain = ("dir_a", "A") if direction == "AtoB" else ("dir_b", "B")
    folder = config.get(key)
    if not folder or not Path(folder).is_dir():
        raise UsageError(
            f"{config_file}: the domain {domain} training images ({folder or 'not recorded'}) are not here; {hint}"
        )
    return Path(folder), f"the domain {domain} training images in {folder}"


def need_frames(calibration: Calibration) -> None:
    if len(calibration.frames) < MIN_FRAMES:
        raise UsageError(
            f"calibration: {calibration.line()}: int8 needs at least {MIN_FRAMES} readable frames "
            "(one to calibrate, one to measure)"
        )


# --- OpenVINO and NNCF ------------------------------------------------------------------------------------------


def _as_input(crop_):
    import numpy as np

    from cyclegan_cli.framing import to_input_array

    x, _ = to_input_array(np.ascontiguousarray(crop_)[None])
    return x


def import_nncf():
    """NNCF, imported quietly: its telemetry off (it is set up at import) and its log and torch's C++ extension
    helper (which warns about CUDA on machines without it) down to errors."""
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    with without_telemetry():
        import nncf

    nncf.set_log_level(logging.ERROR)
    return nncf


def quantize_model(fp32_model, calibrate: list):
    """NNCF post-training quantization of an OpenVINO model on ``calibrate`` crops (the recipe above)."""
    nncf = import_nncf()
    dataset = nncf.Dataset([_as_input(c) for c in calibrate])
    # NNCF draws progress bars on stdout, which carries cyc run's output paths: they go nowhere.
    with contextlib.redirect_stdout(io.StringIO()), without_telemetry():
        return nncf.quantize(
            fp32_model,
            dataset,
            subset_size=len(calibrate),
            ignored_scope=nncf.IgnoredScope(types=["MVN"], validate=False),
        )


def measure(fp32_model, int8_model, held_out: list, min_psnr: float) -> Fidelity:
    """Both models on the held-out crops (OpenVINO, f32 inference hint): PSNR over all of them, max abs error."""
    import numpy as np
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    reference = core.compile_model(fp32_model, "CPU", config)
    candidate = core.compile_model(int8_model, "CPU", config)
    squared, count, worst = 0.0, 0, 0.0
    for item in held_out:
        x = _as_input(item)
        got, expected = candidate(x)[0], reference(x)[0]
        if not np.isfinite(got).all():  # NaN or inf out of the int8 model: the worst there is, whatever else
            return Fidelity(-math.inf, math.inf, len(held_out), min_psnr)
        total, size = squared_error(got, expected)
        squared, count = squared + total, count + size
        worst = max(worst, float(np.abs(got.astype(np.float64) - expected).max()))
    return Fidelity(psnr(squared / max(count, 1), GENERATOR_PEAK_TO_PEAK), worst, len(held_out), min_psnr)


def quantize_generator(generator, calibration: Calibration, min_psnr: float, say=None):
    """(int8 OpenVINO model, Fidelity): quantized on the calibration crops, measured on the held-out ones.
    Raises :class:`FidelityError` below the gate."""
    reason = nncf_unavailable_reason()
    if reason:
        raise EngineUnavailable(f"int8: {reason}")
    need_frames(calibration)
    calibrate, held = calibration.split()
    fp32 = openvino_model(generator)
    int8 = quantize_model(fp32, calibrate)
    fidelity = measure(fp32, int8, held, min_psnr)
    if say is not None:
        say(f"  int8: {fidelity.line()}")
    if not fidelity.passed:
        raise FidelityError(
            f"int8 model refused: {fidelity.psnr_db:.1f} dB PSNR against fp32 on {fidelity.frames} held-out "
            f"frame(s) is below the {min_psnr:g} dB gate (max abs error {fidelity.max_abs_error:.3f}); "
            "nothing kept. Run it in fp32/bf16, calibrate on other frames, or lower --min-psnr",
            fidelity,
        )
    return int8, fidelity


# --- the cache of int8 models quantized at run time -------------------------------------------------------------


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "none"


def cache_key(digest: str, cpu_kind: str) -> str:
    """The weights' digest, the CPU kind, the OpenVINO and NNCF versions and the recipe, as one folder name."""
    environment = f"{cpu_kind}|openvino {_version('openvino')}|nncf {_version('nncf')}|{RECIPE}"
    return f"{digest[:16]}-{hashlib.sha256(environment.encode()).hexdigest()[:12]}"


def cache_folder(digest: str, cpu_kind: str) -> Path:
    from cyclegan_cli.cache import cache_dir

    return cache_dir("int8") / cache_key(digest, cpu_kind)


CACHED_NAME = "generator.int8.xml"
FAILED_NAME = "failed.json"


@dataclass(frozen=True)
class Cached:
    """What the cache holds for some weights on this CPU: a model that passed (``file``), or a failed measurement."""

    file: Path | None
    fidelity: Fidelity | None

    @property
    def failed(self) -> bool:
        return self.file is None and self.fidelity is not None


def cache_lookup(digest: str, cpu_kind: str) -> Cached | None:
    folder = cache_folder(digest, cpu_kind)
    xml = folder / CACHED_NAME
    if xml.is_file() and xml.with_suffix(".bin").is_file():
        data = _read_json(xml.with_name(xml.name + ".json"))
        return Cached(xml, Fidelity.from_dict((data or {}).get("fidelity")))
    failed = Fidelity.from_dict((_read_json(folder / FAILED_NAME) or {}).get("fidelity"))
    return Cached(None, failed) if failed is not None else None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def quantize_into_cache(
    generator, info, calibration: Calibration, *, min_psnr: float, cpu_kind: str, say=None
) -> tuple[Path, Fidelity]:
    """Quantize, measure, and keep the model in the cache; a failed gate is recorded (so ``--engine auto`` does
    not try again for these weights) and raised."""
    from cyclegan_cli.atomic import atomic_write_bytes

    digest = weights_sha256(generator)
    folder = cache_folder(digest, cpu_kind)
    try:
        model, fidelity = quantize_generator(generator, calibration, min_psnr, say)
    except FidelityError as error:
        record = {"fidelity": error.fidelity.as_dict(), "calibration": calibration.as_dict(), "cpu": cpu_kind}
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / FAILED_NAME, (json.dumps(record, indent=2) + "\n").encode())
        raise
    xml = folder / CACHED_NAME
    extra = {"fidelity": fidelity.as_dict(), "calibration": calibration.as_dict(), "cpu": cpu_kind}
    save_openvino_model(model, xml, int8_sidecar(xml, generator, info, extra))
    with contextlib.suppress(FileNotFoundError):
        (folder / FAILED_NAME).unlink()
    return xml, fidelity


def quantize_at_start(model, jobs, *, min_psnr: float, transform=None, max_frames=None, say=print):
    """``cyc run``'s int8 from the job's own frames (as the pipeline will see them), into the cache: (xml, fidelity).
    Too few readable frames: :class:`UsageError`; below the gate: :class:`FidelityError`."""
    from cyclegan_cli.devices import cpu_kind

    calibration = calibration_from_jobs(jobs, AT_START_FRAMES, max_frames=max_frames, transform=transform)
    say(f"int8: quantizing with NNCF on {calibration.line()}")
    need_frames(calibration)
    return quantize_into_cache(
        model.generator, model.info, calibration, min_psnr=min_psnr, cpu_kind=cpu_kind(), say=say
    )


def int8_sidecar(xml: Path, generator, info, extra: dict) -> dict[str, Any]:
    """The sidecar of an int8 OpenVINO model (``cyc export --int8`` and the run-time cache alike)."""
    return build_sidecar(
        kind="openvino",
        file=xml,
        info=info,
        precision="int8",
        opset=None,
        versions=library_versions(),
        extra={"weights": weights_record(generator, info), "fp32_kept": FP32_KEPT, "recipe": RECIPE, **extra},
    )
