"""Build a TensorRT engine from a cyc ONNX graph, and the facts that say where an engine can run.

Only the name-based API that TensorRT 10.x and 11.x share is used (docs/internals.md, "TensorRT"):

    trt.Builder(logger); builder.create_network(flags)         flags: STRONGLY_TYPED where the enum has it
    trt.OnnxParser(network, logger).parse(data)                errors: parser.num_errors / parser.get_error(i)
    builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, bytes)
    builder.create_optimization_profile(); profile.set_shape(name, min, opt, max); config.add_optimization_profile
    config.create_timing_cache(bytes); config.set_timing_cache(cache, False); cache.serialize()
    config.progress_monitor = trt.IProgressMonitor subclass      (where the binding has it)
    builder.build_serialized_network(network, config)

No precision builder flag is set: TensorRT 11 removed them all and builds strongly typed networks only, so the
engine's precision is the ONNX graph's (an fp16 engine comes from ``G_xx.fp16.onnx``). In 10.x the
STRONGLY_TYPED creation flag asks for the same behaviour; in 11.x the flag is deprecated and ignored.

TensorRT cannot be installed on the machines this project is developed on: this module is kept small and every
call is the documented one. Nothing here imports tensorrt or torch at module level.
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from cyclegan_cli.atomic import atomic_write_bytes
from cyclegan_cli.devices import cuda_index
from cyclegan_cli.errors import CycError, EngineUnavailable
from cyclegan_cli.models.artifacts import ShapeProfile
from cyclegan_cli.plugin_api import install_hint

INSTALL_HINT = install_hint("tensorrt")
ENGINE_NEEDS = f"the TensorRT engine needs an NVIDIA GPU and TensorRT ({INSTALL_HINT})"


# --- where an engine can run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuIdentity:
    """What a serialized engine is tied to: the GPU model and the exact TensorRT version it was built with."""

    name: str
    compute_capability: str  # "9.0"
    tensorrt: str

    @property
    def slug(self) -> str:
        """A file-name-safe GPU name: 'NVIDIA H200' -> 'h200', 'NVIDIA GeForce RTX 4090' -> 'geforce-rtx-4090'."""
        return gpu_slug(self.name)

    @property
    def tag(self) -> str:
        return f"{self.slug}-trt{self.tensorrt}"


def gpu_slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    slug = re.sub(r"^nvidia-", "", slug)
    return slug or "gpu"


def tensorrt_installed() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def tensorrt_unavailable_reason(device: str = "auto") -> str | None:
    """None where an engine can be built and run on ``device``, else one line saying what is missing and the fix."""
    if device not in ("auto",) and not device.startswith("cuda"):
        return f"--device {device}: {ENGINE_NEEDS}"
    if not tensorrt_installed():
        return f"TensorRT is not installed: {ENGINE_NEEDS}"
    import torch

    if not torch.cuda.is_available():
        return f"no NVIDIA GPU is visible: {ENGINE_NEEDS}"
    if cuda_index(device) >= torch.cuda.device_count():
        return f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here"
    return None


def current_gpu(device: str = "cuda") -> GpuIdentity:
    """This machine's GPU (``device``) and TensorRT version; TensorRT and CUDA must be present."""
    import tensorrt as trt
    import torch

    index = cuda_index(device)
    major, minor = torch.cuda.get_device_capability(index)
    return GpuIdentity(torch.cuda.get_device_name(index), f"{major}.{minor}", str(trt.__version__))


# --- building ------------------------------------------------------------------------------------------------------


def default_timing_cache() -> Path:
    from cyclegan_cli.cache import cache_dir

    return cache_dir("tensorrt") / "timing.cache"


def describe_parser_error(error) -> str:
    """One line per ONNX parser error: the node (index, name, operator) and what is wrong with it."""
    parts = []
    node = _call(error, "node")
    name = _call(error, "node_name")
    op = _call(error, "node_operator")
    if node is not None and node >= 0:
        parts.append(f"node {node}")
    if name:
        parts.append(f"'{name}'")
    if op:
        parts.append(f"({op})")
    where = " ".join(parts) or "graph"
    code = _call(error, "code")
    code_text = f" [{str(code).split('.')[-1]}]" if code is not None else ""
    return f"{where}{code_text}: {_call(error, 'desc') or 'unknown error'}"


def _call(obj, method: str):
    fn = getattr(obj, method, None)
    if fn is None:
        return None
    try:
        return fn()
    except Exception:  # noqa: BLE001 - an accessor missing from this TensorRT build's error object
        return None


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    profile: ShapeProfile,
    *,
    workspace_gib: float = 4.0,
    device: str = "cuda",
    timing_cache: Path | None = None,
    label: str = "",
) -> float:
    """Build ``engine_path`` (written atomically) from ``onnx_path``; return the build time in seconds."""
    reason = tensorrt_unavailable_reason(device)
    if reason:
        raise EngineUnavailable(reason)
    import tensorrt as trt
    import torch

    torch.cuda.set_device(cuda_index(device))  # TensorRT builds on the current CUDA device
    torch.cuda.init()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)

    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # 10.x: ask for it; 11.x: always strongly typed (the flag is kept, ignored)
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)

    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = [describe_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise CycError(f"{onnx_path}: TensorRT's ONNX parser failed:\n  " + "\n  ".join(errors or ["(no detail)"]))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))

    shapes = builder.create_optimization_profile()
    input_name = network.get_input(0).name
    shapes.set_shape(input_name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(shapes)

    cache_path = Path(timing_cache) if timing_cache else default_timing_cache()
    try:
        cached = cache_path.read_bytes()
    except OSError:
        cached = b""
    cache = config.create_timing_cache(cached)  # an empty buffer makes a new, empty cache
    if config.set_timing_cache(cache, False) is False:  # a cache from another TensorRT/GPU is refused: start afresh
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)

    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    start = time.monotonic()
    with Progress(*columns, console=console, transient=True) as progress:
        overall = progress.add_task(
            f"building {label or engine_path.name} (minutes; cached tactics make it faster)", total=None
        )
        monitor = _progress_monitor(trt, progress)
        if monitor is not None:
            config.progress_monitor = monitor
        serialized = builder.build_serialized_network(network, config)
        progress.update(overall, completed=1, total=1)
    seconds = time.monotonic() - start
    if serialized is None:
        raise CycError(f"{onnx_path}: TensorRT could not build an engine (its log above says why)")

    atomic_write_bytes(engine_path, bytes(memoryview(serialized)))
    try:  # the cache now holds this build's timings too: the next build of this graph takes seconds
        atomic_write_bytes(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    except OSError as exc:
        console.print(f"[yellow]warning:[/] could not save the TensorRT timing cache {escape(f'{cache_path}: {exc}')}")
    return seconds


def _progress_monitor(trt, progress):
    """A trt.IProgressMonitor that mirrors the builder's phases as rich progress bars (None where not bound)."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class Monitor(base):
        def __init__(self):
            base.__init__(self)  # pybind11 trampolines need the base initialised explicitly
            self._tasks: dict[str, int] = {}
            self._depth: dict[str, int] = {}
            self._lock = threading.Lock()  # TensorRT may call from several of its threads

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                depth = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
                self._depth[phase_name] = depth
                self._tasks[phase_name] = progress.add_task("  " * (depth + 1) + phase_name, total=num_steps)

        def step_complete(self, phase_name, step):
            with self._lock:
                task = self._tasks.get(phase_name)
            if task is not None:
                progress.update(task, completed=step + 1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            with self._lock:
                task = self._tasks.pop(phase_name, None)
                self._depth.pop(phase_name, None)
            if task is not None:
                progress.remove_task(task)

    return Monitor()
