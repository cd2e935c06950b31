"""``cyc doctor``: the facts that decide whether cyc runs here, and how fast. No Click here; ``cmd_doctor`` prints.

:func:`gather` returns one JSON-ready dict (``cyc doctor --json`` prints it as it is)::

    versions   python   {version, implementation, executable, platform}
               cyc      {version}
               torch    {version, cuda, cudnn}             cuda / cudnn: null where torch is built without them
               tensorrt {version}
               onnxruntime {version, providers}            the execution providers this build has
               openvino {version}
               torch_fidelity {version}                  cyc eval's FID and KID
               av       {version, ffmpeg, encoders}        encoders: {libx264, libx265, aac, libopus: bool}
    devices    cuda     {gpus: [{index, name, compute_capability, memory_gib}], note}   note: why none, or null
               mps      {available}
               cpu      {model, features, cpus, usable_cpus, torch_threads, bf16_unit, int8_unit, cxx_compiler,
                         int8_at_start}
                        features: {AVX2, AVX512F, AVX512-VNNI, AVX512-BF16, AMX-BF16: bool}, {} where unknown
                        int8_at_start: {kind, cpu, against, speedup, break_even, threshold, measured, source}
                        (megapixel-frames), the figure ``--engine auto`` uses here (break_even.py); null
                        without AVX2
    plugins    engines / readers / writers: {name: {status, provider, reason}}
               status "available", "unavailable" (reason: a missing library and its extra, missing hardware,
               or a plugin that fails to load) or "error" (its own check raised)
    cache      {path, from_env, exists, size_bytes}
    auto       {device_option, device, jobs: {photos, video}}
               each job: {status, description, megapixel_frames, engine, precision, reason}

Every object above except a plugin's row also holds ``status``: "ok", "not installed" (with ``install``: the pip
command, instead of the other keys), or "error" (with ``error``: one line, instead of the other keys; a job keeps
its description). Each probe catches its own failure, so one broken library never hides the rest; the
tracebacks are kept in :attr:`Report.tracebacks` for ``--debug``. torch, onnxruntime, openvino, av and tensorrt
are imported inside the probes only.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cyclegan_cli import __version__
from cyclegan_cli.errors import first_line
from cyclegan_cli.plugin_api import install_hint

# (label shown, flag in /proc/cpuinfo): the CPU features that decide which engine and precision are fast.
CPU_FEATURES = (
    ("AVX2", "avx2"),
    ("AVX512F", "avx512f"),
    ("AVX512-VNNI", "avx512_vnni"),
    ("AVX512-BF16", "avx512_bf16"),
    ("AMX-BF16", "amx_bf16"),
)
ENCODERS = ("libx264", "libx265", "aac", "libopus")
# The two jobs the auto rule is shown for: (key, short label, description, [(frames, width, height) per input]).
AUTO_JOBS = (
    ("photos", "100 photos 256x256", "a folder of 100 photos at 256x256", [(1, 256, 256)] * 100),
    ("video", "1080p30 video 1 min", "a 1080p video of 1 minute at 30 fps (1800 frames)", [(1800, 1920, 1080)]),
)
TORCH_INSTALL = "pip install torch"  # torch and PyAV are core dependencies: no extra
AV_INSTALL = "pip install av"


@dataclass
class Report:
    facts: dict[str, Any]
    tracebacks: list[str] = field(default_factory=list)


def gather(device: str = "auto") -> Report:
    """Every fact ``cyc doctor`` shows; ``device`` is the ``--device`` value the auto-rule lines are for."""
    tracebacks: list[str] = []

    def safely(probe, *args) -> dict[str, Any]:
        try:
            return {"status": "ok", **probe(*args)}
        except NotInstalled as missing:
            return {"status": "not installed", "install": missing.install}
        except Exception as error:  # noqa: BLE001 - a broken library is one row's error, never the whole report's
            tracebacks.append(f"{probe.__name__}:\n{traceback.format_exc()}")
            return {"status": "error", "error": first_line(error, 200, named=True)}

    facts = {
        "versions": {
            "python": safely(probe_python),
            "cyc": safely(probe_cyc),
            "torch": safely(probe_torch),
            "tensorrt": safely(probe_tensorrt),
            "onnxruntime": safely(probe_onnxruntime),
            "openvino": safely(probe_openvino),
            "torch_fidelity": safely(probe_torch_fidelity),
            "av": safely(probe_av),
        },
        "devices": {
            "cuda": safely(probe_cuda),
            "mps": safely(probe_mps),
            "cpu": safely(probe_cpu),
        },
        "plugins": safely(probe_plugins, tracebacks),
        "cache": safely(probe_cache),
        "auto": safely(probe_auto, device, tracebacks),
    }
    return Report(facts, tracebacks)


class NotInstalled(Exception):
    def __init__(self, install: str):
        super().__init__(install)
        self.install = install


def _require(module: str, install: str):
    """Import ``module``; raise :class:`NotInstalled` when it is absent (a broken one raises its own error)."""
    if importlib.util.find_spec(module) is None:
        raise NotInstalled(install)
    return importlib.import_module(module)


def _version(module, *distributions: str) -> str:
    """The installed distribution's version (what pip shows), else the module's own ``__version__``."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return str(getattr(module, "__version__", "unknown"))


# --- versions -------------------------------------------------------------------------------------------------------


def probe_python() -> dict[str, Any]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
    }


def probe_cyc() -> dict[str, Any]:
    return {"version": __version__}


def probe_torch() -> dict[str, Any]:
    torch = _require("torch", TORCH_INSTALL)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"version": _version(torch, "torch"), "cuda": torch.version.cuda, "cudnn": _cudnn_text(cudnn)}


def _cudnn_text(version: int | None) -> str | None:
    """cuDNN's integer version: 9.x is major*10000 + minor*100 + patch, 8.x and older major*1000 + minor*100 + patch."""
    if not version:
        return None
    if version >= 90000:
        return f"{version // 10000}.{version % 10000 // 100}.{version % 100}"
    return f"{version // 1000}.{version % 1000 // 100}.{version % 100}"


def probe_tensorrt() -> dict[str, Any]:
    trt = _require("tensorrt", install_hint("tensorrt"))
    return {"version": _version(trt, "tensorrt")}


def probe_onnxruntime() -> dict[str, Any]:
    ort = _require("onnxruntime", install_hint("onnx"))
    version = _version(ort, "onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
    return {"version": version, "providers": list(ort.get_available_providers())}


def probe_openvino() -> dict[str, Any]:
    ov = _require("openvino", install_hint("openvino"))
    return {"version": _version(ov, "openvino")}


def probe_torch_fidelity() -> dict[str, Any]:
    """torch-fidelity: the FID and KID of ``cyc eval`` and ``cyc train --eval-every``."""
    fidelity = _require("torch_fidelity", install_hint("eval"))
    return {"version": _version(fidelity, "torch-fidelity")}


def probe_av() -> dict[str, Any]:
    av = _require("av", AV_INSTALL)
    return {
        "version": _version(av, "av"),
        "ffmpeg": str(getattr(av, "ffmpeg_version_info", "unknown")),
        "encoders": {name: _has_encoder(av, name) for name in ENCODERS},
    }


def _has_encoder(av, name: str) -> bool:
    """PyAV looks the encoder up by name: ``Codec(name, "w")`` raises UnknownCodecError (a ValueError) without it."""
    try:
        av.codec.Codec(name, "w")
    except ValueError:
        return False
    return True


# --- devices --------------------------------------------------------------------------------------------------------


def probe_cuda() -> dict[str, Any]:
    torch = _require("torch", TORCH_INSTALL)
    if torch.version.cuda is None:
        return {"gpus": [], "note": "this torch is built without CUDA (a CPU-only wheel)"}
    if not torch.cuda.is_available():
        return {"gpus": [], "note": f"no CUDA GPU is visible (torch is built with CUDA {torch.version.cuda})"}
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append(
            {
                "index": index,
                "name": props.name,
                "compute_capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1),
            }
        )
    return {"gpus": gpus, "note": None}


def probe_mps() -> dict[str, Any]:
    torch = _require("torch", TORCH_INSTALL)
    mps = getattr(torch.backends, "mps", None)
    return {"available": bool(mps and mps.is_available())}


def probe_cpu() -> dict[str, Any]:
    from cyclegan_cli.devices import cpu_bf16_unit, cpu_flags, cpu_int8_path, cpu_model_name, has_cxx_compiler

    flags = cpu_flags()
    features = {label: flag in flags for label, flag in CPU_FEATURES} if flags else {}
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    try:
        import torch

        threads = torch.get_num_threads()
    except Exception:  # noqa: BLE001 - the torch row says what is wrong with torch
        threads = None
    return {
        "model": cpu_model_name(),
        "features": features,
        "cpus": os.cpu_count(),
        "usable_cpus": usable,
        "torch_threads": threads,
        "bf16_unit": cpu_bf16_unit(),
        "int8_unit": cpu_int8_path(),
        "cxx_compiler": has_cxx_compiler(),
        "int8_at_start": _int8_at_start(cpu_int8_path(), cpu_bf16_unit()),
    }


def _int8_at_start(int8_path: str | None, bf16_unit: str | None) -> dict[str, Any] | None:
    """What ``--engine auto`` knows of int8 on this kind of CPU (break_even.py); None without AVX2."""
    from cyclegan_cli.translation.break_even import cpu_class, int8_break_even

    kind = cpu_class(int8_path, bf16_unit)
    figure = int8_break_even(kind)
    if figure is None:
        return None
    return {
        "kind": kind,
        "cpu": figure.cpu,
        "against": figure.against,
        "speedup": figure.speedup,
        "break_even": figure.megapixel_frames,
        "threshold": figure.threshold,
        "measured": figure.measured,
        "source": figure.source,
    }


# --- plugins, cache -------------------------------------------------------------------------------------------------


def probe_plugins(tracebacks: list[str]) -> dict[str, Any]:
    """Each engine, reader and writer with the facts ``cyc plugins`` shows: available, or why not."""
    from cyclegan_cli import registry

    kinds: dict[str, Any] = {}
    for kind in registry.GROUPS:
        rows = kinds[kind] = {}
        for name in registry.names(kind):
            try:
                provider = registry.provider(kind, name)
                reason = registry.unavailable(kind, name)
                status = "available" if reason is None else "unavailable"
                rows[name] = {"status": status, "provider": provider, "reason": reason}
            except Exception as error:  # noqa: BLE001 - one plugin's broken check is its own row
                tracebacks.append(f"plugin {kind}/{name}:\n{traceback.format_exc()}")
                rows[name] = {"status": "error", "provider": None, "reason": first_line(error, 200, named=True)}
    return kinds


def probe_cache() -> dict[str, Any]:
    from cyclegan_cli.cache import CACHE_ENV, cache_root, folder_size

    root = cache_root()
    return {
        "path": str(root),
        "from_env": bool(os.environ.get(CACHE_ENV)),
        "exists": root.is_dir(),
        "size_bytes": folder_size(root),
    }


# --- the auto rule --------------------------------------------------------------------------------------------------


def probe_auto(device: str, tracebacks: list[str]) -> dict[str, Any]:
    """What ``cyc run --engine auto --precision auto`` picks on ``device`` for the two jobs of :data:`AUTO_JOBS`,
    through the rule itself (``engine_choice.choose_engine``) with a model that has no exported file."""
    from cyclegan_cli.devices import resolve_device
    from cyclegan_cli.plugin_api import ModelSource
    from cyclegan_cli.translation.engine_choice import choose_engine, workload

    resolved = resolve_device(device)
    jobs = {}
    # A weights path in an empty folder: no export/ beside it, so no prebuilt engine can match (as for a fresh run).
    with tempfile.TemporaryDirectory(prefix="cyc-doctor-") as folder:
        model = ModelSource(path=Path(folder) / "G_AB.safetensors", direction="AtoB")
        for key, _, description, sizes in AUTO_JOBS:
            per_size = workload(sizes)
            job: dict[str, Any] = {"description": description, "megapixel_frames": round(sum(per_size.values()), 1)}
            try:
                choice = choose_engine("auto", model, resolved, "auto", per_size)
                picked = {"engine": choice.name, "precision": choice.precision, "reason": choice.reason}
                jobs[key] = {"status": "ok", **job, **picked}
            except Exception as error:  # noqa: BLE001 - one job's failure is its own row
                tracebacks.append(f"auto rule, {key}:\n{traceback.format_exc()}")
                jobs[key] = {"status": "error", **job, "error": first_line(error, 200, named=True)}
    return {"device_option": device, "device": resolved, "jobs": jobs}


# --- the screen -----------------------------------------------------------------------------------------------------

LIBRARIES = (
    ("python", "Python"),
    ("cyc", "cyc"),
    ("torch", "torch"),
    ("tensorrt", "TensorRT"),
    ("onnxruntime", "ONNX Runtime"),
    ("openvino", "OpenVINO"),
    ("torch_fidelity", "torch-fidelity"),
    ("av", "PyAV"),
)


def render(facts: dict[str, Any], console) -> None:
    """``facts`` (from :func:`gather`) as aligned ``key  value`` lines under a few headings, on ``console``."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in _lines(facts):
        grid.add_row(key, value)
    console.print(grid, highlight=False)


def _lines(facts: dict[str, Any]) -> list[tuple[str, str]]:
    from rich.markup import escape

    lines = [("[bold]Versions[/bold]", "")]
    versions = facts["versions"]
    for key, label in LIBRARIES:
        lines.append((f"  {label}", _status(versions[key], _describe_version(key, versions[key]))))
        if key == "python" and versions[key]["status"] == "ok":
            lines.append(("  system", escape(versions[key]["platform"])))
    devices = facts["devices"]
    lines.append(("[bold]Devices[/bold]", ""))
    cuda = devices["cuda"]
    if cuda["status"] != "ok" or not cuda["gpus"]:
        lines.append(("  CUDA", _status(cuda, lambda: f"none: {escape(cuda['note'])}")))
    else:
        for gpu in cuda["gpus"]:
            text = f"{gpu['name']}, compute capability {gpu['compute_capability']}, {gpu['memory_gib']} GiB"
            lines.append((f"  CUDA {gpu['index']}", escape(text)))
    mps = devices["mps"]
    lines.append(("  MPS", _status(mps, lambda: "available" if mps["available"] else "not available")))
    lines.extend(_cpu_lines(devices["cpu"]))
    lines.append(("[bold]Plugins[/bold]", "[dim]engines, readers and writers (cyc plugins)[/dim]"))
    plugins = facts["plugins"]
    if plugins["status"] != "ok":
        lines.append(("  all", _status(plugins, str)))
    else:
        for kind, rows in plugins.items():
            if kind == "status":
                continue
            for name, row in rows.items():
                lines.append((f"  {kind[:-1]} {escape(name)}", _plugin_status(row)))
    cache = facts["cache"]
    lines.append(("[bold]Cache[/bold]", _status(cache, lambda: _describe_cache(cache))))
    lines.extend(_auto_lines(facts["auto"]))
    return lines


def _status(row: dict[str, Any], describe) -> str:
    """The row's value: ``describe()`` when its probe worked, else "not installed: ..." or "error: ..."."""
    from rich.markup import escape

    if row["status"] == "not installed":
        return f"[yellow]not installed[/yellow]: {escape(row['install'])}"
    if row["status"] == "error":
        return f"[red]error[/red]: {escape(row['error'])}"
    return describe()


def _describe_version(key: str, row: dict[str, Any]):
    from rich.markup import escape

    def describe() -> str:
        text = row["version"]
        if key == "python":
            text += f" ({row['implementation']}) {row['executable']}"
        elif key == "torch":
            text += f", CUDA {row['cuda']}" if row["cuda"] else ", built without CUDA"
            text += f", cuDNN {row['cudnn']}" if row["cudnn"] else ""
        elif key == "onnxruntime":
            text += f"; providers: {', '.join(row['providers']) or 'none'}"
        elif key == "av":
            encoders = ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in row["encoders"].items())
            text += f", FFmpeg {row['ffmpeg']}; encoders: {encoders}"
        return escape(text)

    return describe


def _cpu_lines(cpu: dict[str, Any]) -> list[tuple[str, str]]:
    from rich.markup import escape

    if cpu["status"] != "ok":
        return [("  CPU", _status(cpu, str))]
    threads = "unknown" if cpu["torch_threads"] is None else cpu["torch_threads"]
    count = f"{cpu['cpus']} CPUs" + (f" ({cpu['usable_cpus']} usable)" if cpu["usable_cpus"] != cpu["cpus"] else "")
    features = (
        ", ".join(f"{label} {'yes' if present else 'no'}" for label, present in cpu["features"].items())
        or "unknown (no /proc/cpuinfo)"
    )
    compiler = "a C++ compiler" if cpu["cxx_compiler"] else "no C++ compiler (torch-compile cannot run on the CPU)"
    return [
        ("  CPU", escape(f"{cpu['model']}; {count}, torch uses {threads} threads; {compiler}")),
        ("  CPU features", escape(features)),
        ("  CPU units", escape(f"int8: {cpu['int8_unit'] or 'none'}; bf16: {cpu['bf16_unit'] or 'none'}")),
        ("  int8 at start", escape(_describe_int8_at_start(cpu["int8_at_start"]))),
    ]


def _describe_int8_at_start(figure: dict[str, Any] | None) -> str:
    if figure is None:
        return "never (no AVX2: no int8 path faster than fp32)"
    if figure["speedup"] <= 1.0:
        return f"never (int8 measured {figure['speedup']:g}x {figure['against']} on a {figure['cpu']})"
    return (
        f"a ready int8 model always ({figure['speedup']:g}x {figure['against']}); quantized at start for jobs of "
        f"{figure['threshold']:g} megapixel-frames or more: twice the break-even of a {figure['cpu']}, "
        f"{figure['break_even']:g} against {figure['against']} ({figure['source']})"
    )


def _plugin_status(row: dict[str, Any]) -> str:
    from rich.markup import escape

    ours = (row["provider"] or "").lower().replace("_", "-") == "cyclegan-cli"
    provider = f" [dim](from {escape(row['provider'])})[/dim]" if row["provider"] and not ours else ""
    if row["status"] == "available":
        return f"[green]available[/green]{provider}"
    if row["status"] == "unavailable":
        return f"[yellow]unavailable[/yellow]: {escape(row['reason'])}{provider}"
    return f"[red]error[/red]: {escape(row['reason'])}"


def _describe_cache(cache: dict[str, Any]) -> str:
    from rich.markup import escape

    where = escape(cache["path"]) + (" (CYC_CACHE_DIR)" if cache["from_env"] else "")
    if not cache["exists"]:
        return f"{where}: not created yet"
    return f"{where}: {human_size(cache['size_bytes'])}"


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def _auto_lines(auto: dict[str, Any]) -> list[tuple[str, str]]:
    from rich.markup import escape

    if auto["status"] != "ok":
        return [("[bold]--engine auto[/bold]", _status(auto, str))]
    device = auto["device"] + (
        f" (--device {auto['device_option']})" if auto["device_option"] != auto["device"] else ""
    )
    lines = [("[bold]--engine auto[/bold]", escape(f"what 'cyc run' picks on {device}, and why"))]
    labels = {key: label for key, label, _, _ in AUTO_JOBS}
    for key, job in auto["jobs"].items():
        value = _status(job, lambda job=job: escape(f"{job['engine']} {job['precision']}: {job['reason']}"))
        lines.append((f"  {labels.get(key, key)}", value))
    return lines
