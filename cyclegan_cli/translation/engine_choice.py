"""Which engine runs, in which precision, and why: ``--engine`` (``auto`` above all) and ``--precision`` resolved for
the model ``--checkpoint`` names (:mod:`cyclegan_cli.hub.sources` finds it) and the job in hand.

The ``auto`` rule is fixed and documented (``cyc run --help``), not a measurement at start-up:

* an exported file runs in the first engine, in the order of :data:`AUTO_ORDER`, that claims its suffix
  (``Engine.file_suffixes``), runs on the device and computes the file's precision (an fp32 ``.onnx`` on a CPU:
  openvino, else onnxruntime; an fp16 ``.onnx``: onnxruntime; an int8 ``.xml``: openvino; a TensorRT
  ``.engine``: tensorrt);
* on CUDA: a prebuilt engine that matches this GPU and these weights (``cyc export``) if one exists, else
  torch-compile fp16 (CUDA graphs) for long jobs, torch fp16 for short ones;
* on a CPU where int8 measured faster than what it replaces (every kind with AVX2: AVX2's multiply-add, VNNI,
  AMX; :mod:`cyclegan_cli.translation.break_even`) and OpenVINO: a prebuilt int8 model (``cyc export --int8``, in the
  run's ``export/``) or one quantized earlier (the cache), when its weights digest matches and its measured
  fidelity passes ``--min-psnr``; else, for a job long enough to repay it (twice the break-even measured for the
  kind of CPU, :mod:`cyclegan_cli.translation.break_even`), int8 quantized at start from the job's own frames, through the
  same gate (below it: what follows, with the figure as the reason);
* on a CPU otherwise: torch-compile bf16 when the CPU has AMX, a C++ compiler exists, and one frame size has
  enough work to repay compiling (``COMPILE_MIN_MEGAPIXEL_FRAMES``); else OpenVINO (bf16 where native, else
  fp32), which compiles in seconds; else ONNX Runtime; else torch eager.

Why AMX and not any bf16 CPU for compiling: on an AVX512-BF16 CPU without AMX (AMD EPYC, 2 threads, 256x256)
OpenVINO bf16 ran 4.2 frames/s after 1.5 s and torch-compile bf16 3.8-4.0 frames/s after 9-25 s, so compiling
never pays there. Why int8 wherever there is AVX2: on that EPYC OpenVINO int8 ran 0.129 s per 256x256 frame against
0.243 bf16 and 0.483 fp32; on a Xeon with VNNI and no bf16 unit 0.162 against 0.458 fp32; on an AVX2-only EPYC,
with no int8 unit at all, 0.387 against 0.678 fp32. Quantizing at start costs
a fixed time (calibration crops of 256x256, whatever the job's frame size) and saves a time per megapixel-frame:
after how many it repays depends on the kind of CPU, and :mod:`cyclegan_cli.translation.break_even` holds the figures, each
with its source.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cyclegan_cli import registry
from cyclegan_cli.devices import cpu_bf16_unit, cpu_int8_path, cpu_kind, has_cxx_compiler, resolve_precision
from cyclegan_cli.errors import EngineUnavailable, UsageError
from cyclegan_cli.export import quantize
from cyclegan_cli.export.quantize import MIN_PSNR
from cyclegan_cli.models.artifacts import digest_problem, exported_precision, read_sidecar, weights_sha256
from cyclegan_cli.plugin_api import ModelSource
from cyclegan_cli.translation.break_even import COMPILE_MIN_MEGAPIXEL_FRAMES, Int8BreakEven, cpu_class, int8_break_even

# The auto rule's order of preference; third-party engines come after these, by name.
AUTO_ORDER = ("tensorrt", "torch-compile", "openvino", "onnxruntime", "torch")


@dataclass
class EngineChoice:
    name: str
    precision: str
    reason: str
    file: Path | None = None  # what the engine runs instead of the weights: a prebuilt engine, an int8 model
    quantize: bool = False  # int8 to be quantized from the job's own frames first (prepare_int8), through the gate
    fallback: EngineChoice | None = None  # what runs instead when that int8 model fails the gate


@dataclass(frozen=True)
class Int8Facts:
    """What is known of int8 for these weights on this CPU: gathered by :func:`int8_facts`, judged by the pure
    :func:`cpu_choice`."""

    file: Path | None = None  # a ready int8 model: weights digest matches, measured fidelity passes the gate
    origin: str = ""  # where that model comes from, for the reason
    ignored: tuple[str, ...] = ()  # int8 models found and not used, each with why
    failed: str | None = None  # these weights failed the gate on this CPU before: the figure
    unable: str | None = None  # why quantizing here is impossible (NNCF missing, no weights); None: possible


def workload(frame_sizes: list[tuple[int, int, int]], work: float = 1.0) -> Counter:
    """Megapixel-frames per distinct frame size, from (frames, width, height) per input, counted in the reference
    generator's work (the break-even figures were measured on it): a smaller generator's frames count by its
    ``work``, its MACs against the reference's (:attr:`GeneratorInfo.relative_work`)."""
    per_size: Counter = Counter()
    for frames, width, height in frame_sizes:
        per_size[(width, height)] += frames * width * height / 1e6 * work
    return per_size


def choose_engine(
    requested: str, model: ModelSource, device: str, precision: str, per_size: Counter, min_psnr: float = MIN_PSNR
) -> EngineChoice:
    if model.exported is not None:
        return _engine_for_file(requested, model.exported, device, precision)
    if precision == "int8":
        return _int8_asked(requested, model, device, min_psnr)
    if requested != "auto":
        cls = registry.load("engines", requested)
        reason = cls.unavailable_reason()
        if reason:
            raise EngineUnavailable(f"--engine {requested}: {reason}")
        check_device(cls, device)
        chosen = _precision_for(cls, precision, device)
        return EngineChoice(
            requested, chosen, "chosen with --engine", file=_named_engine_file(cls, model, device, chosen)
        )
    return _auto_engine(model, device, per_size, precision, min_psnr)


def engine_order() -> list[str]:
    """The installed engines that load, in the auto rule's order of preference."""
    installed = registry.load_all("engines")
    return [n for n in AUTO_ORDER if n in installed] + sorted(n for n in installed if n not in AUTO_ORDER)


def _engine_for_file(requested: str, path: Path, device: str, precision: str) -> EngineChoice:
    """The engine for an exported file: the one asked for, else the first in the auto order that claims the
    file's suffix, runs on ``device`` and computes the file's precision (fixed when it was exported)."""
    suffix, built = path.suffix.lower(), exported_precision(path)
    if built is not None and precision not in ("auto", built):
        raise UsageError(f"--precision {precision}: {path.name} was exported in {built}, which is fixed in the file")
    claimants = [n for n in engine_order() if suffix in registry.load("engines", n).file_suffixes]
    candidates = claimants
    if requested != "auto":
        cls = registry.load("engines", requested)  # a plugin that fails to load says so here
        if suffix not in cls.file_suffixes:
            raise UsageError(
                f"--engine {requested} does not run '{suffix}' files; {', '.join(claimants) or 'no engine'} does"
            )
        candidates = [requested]
    problems = []
    for name in candidates:
        cls = registry.load("engines", name)
        # a file that does not say its precision runs in the engine's first (its default) precision
        wanted = built or (precision if precision in cls.precisions else cls.precisions[0])
        reason = cls.unavailable_reason() or _device_problem(cls, device)
        if reason is None and wanted not in cls.precisions:
            reason = f"does not compute {wanted}"
        if reason is None:
            why = "chosen with --engine" if requested != "auto" else f"the first engine that runs '{suffix}' files here"
            return EngineChoice(name, wanted, why)
        problems.append(f"{name} {reason}")
    what = f"{built} '{suffix}'" if built else f"'{suffix}'"
    raise EngineUnavailable(f"{path}: no engine here runs this {what} file ({'; '.join(problems)})")


def _auto_engine(model: ModelSource, device: str, per_size: Counter, precision: str, min_psnr: float) -> EngineChoice:
    biggest = max(per_size.values(), default=0.0)
    if device.startswith("cuda"):
        ignored = []
        for name in engine_order():
            cls = registry.load("engines", name)
            if cls.unavailable_reason() is not None:
                continue
            file, problem = _prebuilt(cls, model, device)
            if file is not None:
                built = exported_precision(file) if precision == "auto" else None
                chosen = built or _precision_for(cls, precision, device)
                return EngineChoice(name, chosen, f"a prebuilt {name} engine matches this GPU", file=file)
            if problem:
                ignored.append(problem)
        notes = "".join(f"; {line}" for line in ignored)
        if biggest >= COMPILE_MIN_MEGAPIXEL_FRAMES:
            name, reason = "torch-compile", f"CUDA, long job ({_describe_job(biggest)}): CUDA graphs pay off{notes}"
        else:
            name, reason = "torch", f"CUDA, short job ({_describe_job(biggest)}){notes}"
        return EngineChoice(name, _precision_for(registry.load("engines", name), precision, device), reason)
    if device != "cpu":
        return EngineChoice(
            "torch",
            _precision_for(registry.load("engines", "torch"), precision, device),
            f"{device}: only the torch engine runs there",
        )
    available = {n for n in engine_order() if registry.load("engines", n).unavailable_reason() is None}
    bf16_unit, compiler = cpu_bf16_unit(), has_cxx_compiler()
    if precision != "auto":  # fp32 or bf16 asked for: the engine by the rule, in that precision
        name, reason = cpu_engine(available, bf16_unit, compiler, biggest)
        return EngineChoice(name, _precision_for(registry.load("engines", name), precision, device), reason)
    figure = int8_break_even(cpu_class(cpu_int8_path(), bf16_unit))
    wanted = figure is not None and figure.int8_faster and "openvino" in available
    facts = int8_facts(model, min_psnr) if wanted else Int8Facts()
    return cpu_choice(available, bf16_unit, figure, compiler, biggest, sum(per_size.values()), facts)


def cpu_choice(
    available: set[str],
    bf16_unit: str | None,
    figure: Int8BreakEven | None,
    compiler: bool,
    biggest: float,
    total: float,
    int8: Int8Facts,
) -> EngineChoice:
    """The CPU auto rule, whole and pure: from the engines that work here, the CPU's bf16 unit, what int8 is
    worth on this kind of CPU (its :class:`Int8BreakEven`, None without AVX2), a C++ compiler, the largest
    one-size work and the whole job (megapixel-frames), and what is known of int8 for these weights
    (:class:`Int8Facts`). int8 first where it measured faster on this kind of CPU, else :func:`cpu_engine`."""
    name, reason = cpu_engine(available, bf16_unit, compiler, biggest)
    notes = "".join(f"; {line}" for line in int8.ignored)
    otherwise = EngineChoice(name, _cpu_precision(name, bf16_unit), reason + notes)
    if "openvino" not in available:
        return otherwise
    if figure is None:
        return dataclasses.replace(otherwise, reason=f"{otherwise.reason}; no AVX2: no int8")
    if not figure.int8_faster:
        why = f"int8 not used: it measured {figure.speedup:g}x {figure.against} on a {figure.cpu}"
        return dataclasses.replace(otherwise, reason=f"{otherwise.reason}; {why}")
    fastest = f"{figure.cpu}: int8 is its fastest precision ({figure.speedup:g}x {figure.against})"
    if int8.file is not None:
        return EngineChoice("openvino", "int8", f"{fastest}; {int8.origin}{notes}", file=int8.file)
    if int8.failed or int8.unable:
        return dataclasses.replace(otherwise, reason=f"{otherwise.reason}; int8 not used: {int8.failed or int8.unable}")
    job = (
        f"{_amount(total)} megapixel-frames, threshold {figure.threshold:.0f}: quantizing at start repays after "
        f"{figure.megapixel_frames:g} against {figure.against} on a {figure.cpu}"
    )
    if total >= figure.threshold:
        why = f"{fastest}; a long job ({job}): quantized from its own frames, through the gate{notes}"
        return EngineChoice("openvino", "int8", why, quantize=True, fallback=otherwise)
    return dataclasses.replace(otherwise, reason=f"{otherwise.reason}; int8 not used: a short job ({job})")


def _cpu_precision(name: str, bf16_unit: str | None) -> str:
    """What ``--precision auto`` gives each first-party CPU engine (as :func:`_precision_for` would)."""
    return "bf16" if bf16_unit and name != "onnxruntime" else "fp32"


def cpu_engine(available: set[str], bf16_unit: str | None, compiler: bool, biggest: float) -> tuple[str, str]:
    """The CPU rule without int8 (what :func:`cpu_choice` takes where int8 is not used), from the engines
    installed, the bf16 unit, and the largest one-size work."""
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
    return f"{_amount(biggest)} megapixel-frames at one size, threshold {COMPILE_MIN_MEGAPIXEL_FRAMES:.0f}"


def _amount(megapixel_frames: float) -> str:
    """Whole numbers from 10 up, two figures below: a student's short job is 0.08 megapixel-frames, not 0."""
    return f"{megapixel_frames:.0f}" if megapixel_frames >= 10 else f"{megapixel_frames:.2g}"


# --- prebuilt files and int8 ------------------------------------------------------------------------------------


def _prebuilt(cls, model: ModelSource, device: str) -> tuple[Path | None, str | None]:
    """(file, None): the engine's prebuilt file for these weights; (None, why) for one that is stale or unmatched."""
    file = cls.prebuilt_for(model, device)
    if file is None or model.generator is None:
        return file, None

    problem = digest_problem(read_sidecar(file), model.generator)
    return (None, f"ignored {file}: {problem}") if problem else (file, None)


def _named_engine_file(cls, model: ModelSource, device: str, precision: str) -> Path | None:
    """For ``--engine NAME``: its prebuilt file when it is in the precision chosen; a stale one is an error."""
    file = cls.prebuilt_for(model, device)
    if file is None or exported_precision(file) not in (None, precision):
        return None
    file, problem = _prebuilt(cls, model, device)
    if problem:
        raise EngineUnavailable(f"--engine {cls.name}: {problem}")
    return file


def int8_facts(model: ModelSource, min_psnr: float) -> Int8Facts:
    """What the rule needs to know of int8 for ``model`` on this CPU: a prebuilt model in the run's export/
    folder, one in the cache, an earlier failed measurement, or why quantizing is impossible."""
    unable = quantize.nncf_unavailable_reason()
    if model.generator is None:
        return Int8Facts(unable=unable)
    ignored = []
    prebuilt = registry.load("engines", "openvino").prebuilt_for(model, "cpu")
    if prebuilt is not None:
        sidecar = read_sidecar(prebuilt)
        fidelity = quantize.Fidelity.from_dict((sidecar or {}).get("fidelity"))
        problem = digest_problem(sidecar, model.generator)
        if problem is None and (fidelity is None or fidelity.psnr_db < min_psnr):
            measured = "no measured fidelity" if fidelity is None else f"{fidelity.psnr_db:.1f} dB against fp32"
            problem = f"{measured}, below --min-psnr {min_psnr:g}"
        if problem is None:
            return Int8Facts(file=prebuilt, origin=f"the prebuilt {prebuilt} ({fidelity.psnr_db:.1f} dB against fp32)")
        ignored.append(f"ignored {prebuilt}: {problem}")
    cached = quantize.cache_lookup(weights_sha256(model.generator), cpu_kind())
    failed = None
    if cached is not None and cached.fidelity is not None:
        psnr = cached.fidelity.psnr_db
        if cached.file is not None and psnr >= min_psnr:
            origin = f"quantized earlier, from the cache ({psnr:.1f} dB against fp32)"
            return Int8Facts(file=cached.file, origin=origin, ignored=tuple(ignored))
        if psnr < min_psnr:
            failed = f"these weights measured {psnr:.1f} dB against fp32 in int8 here, below the {min_psnr:g} dB gate"
    return Int8Facts(ignored=tuple(ignored), failed=failed, unable=unable)


def _int8_asked(requested: str, model: ModelSource, device: str, min_psnr: float) -> EngineChoice:
    """``--precision int8``: OpenVINO with a prebuilt or cached int8 model, else one quantized at start; no fallback."""
    name = "openvino" if requested == "auto" else requested
    cls = registry.load("engines", name)
    if "int8" not in cls.precisions:
        raise UsageError(f"--precision int8: the {name} engine runs {', '.join(cls.precisions)}; int8 runs in openvino")
    reason = cls.unavailable_reason()
    if reason:
        raise EngineUnavailable(f"--precision int8: {name}: {reason}")
    check_device(cls, device)
    if name != "openvino":  # a third-party engine that computes int8 its own way
        return EngineChoice(name, "int8", "chosen with --engine")
    facts = int8_facts(model, min_psnr)
    notes = "".join(f"; {line}" for line in facts.ignored)
    if facts.file is not None:
        return EngineChoice("openvino", "int8", f"asked with --precision int8; {facts.origin}{notes}", file=facts.file)
    if facts.unable:
        raise EngineUnavailable(f"--precision int8: {facts.unable}")
    why = f"asked with --precision int8; quantized from this job's own frames, through the gate{notes}"
    return EngineChoice("openvino", "int8", why, quantize=True)


def prepare_int8(choice: EngineChoice, model: ModelSource, jobs, *, min_psnr: float, **calibration) -> EngineChoice:
    """Quantize when ``choice`` says so (:func:`quantize.quantize_at_start`): the choice with its file; below the
    gate, the choice's fallback with the figure as its reason (none: the failure, exit 1). ``calibration``: the
    frames' ``transform``, ``max_frames`` and ``say``, passed on."""
    if not choice.quantize:
        return choice
    try:
        file, fidelity = quantize.quantize_at_start(model, jobs, min_psnr=min_psnr, **calibration)
    except (quantize.FidelityError, UsageError) as error:
        if choice.fallback is None:
            raise
        fallback = choice.fallback
        if isinstance(error, quantize.FidelityError):
            why = f"int8 measured {error.fidelity.psnr_db:.1f} dB against fp32, below the {min_psnr:g} dB gate"
        else:
            why = f"int8 not used: {error}"
        return dataclasses.replace(fallback, reason=f"{fallback.reason}; {why}")
    return dataclasses.replace(choice, file=file, quantize=False, reason=f"{choice.reason} ({fidelity.psnr_db:.1f} dB)")


def _precision_for(cls, precision: str, device: str) -> str:
    if precision == "auto":
        wanted = resolve_precision("auto", device)
        return wanted if wanted in cls.precisions else "fp32"
    if precision not in cls.precisions:
        raise UsageError(f"--precision {precision}: the {cls.name} engine runs {', '.join(cls.precisions)}")
    return precision


def check_device(cls, device: str) -> None:
    """An engine named with ``--engine`` (or int8's openvino) must run on the device asked for."""
    problem = _device_problem(cls, device)
    if problem:
        raise UsageError(f"--engine {cls.name} {problem}")


def _device_problem(cls, device: str) -> str | None:
    kind = device.split(":")[0]
    return None if kind in cls.devices else f"runs on {', '.join(cls.devices)}, not {device}"
