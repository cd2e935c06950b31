"""TensorRT: runs an engine built by ``cyc export`` on an NVIDIA GPU.

An engine runs only on the GPU model and the TensorRT version it was built with, and only for input shapes inside
its optimization profile. The sidecar ``<engine>.json`` that ``cyc export`` writes says which; it is checked before
the engine is loaded, and a mismatch is a one-line error that says to re-export. Frames cross to the GPU as uint8
and are padded, normalized, cropped, rounded and clamped there by torch (``cyclegan_cli.framing``); the engine reads
and writes torch CUDA tensors by name (``set_tensor_address``) and runs with ``execute_async_v3`` on a torch CUDA
stream. tensorrt and torch are imported only when an engine is made.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from cyclegan_cli.devices import cuda_index
from cyclegan_cli.errors import CycError, EngineUnavailable
from cyclegan_cli.export.tensorrt_build import GpuIdentity, tensorrt_unavailable_reason
from cyclegan_cli.models.artifacts import SIDECAR_FORMAT, engine_pattern, export_dir, read_sidecar
from cyclegan_cli.plugin_api import Engine, ModelSource

# --- which engine file, and can it run here ------------------------------------------------------------------------


def sidecar_mismatch(sidecar: dict | None, gpu: GpuIdentity) -> str | None:
    """None when an engine described by ``sidecar`` runs on ``gpu`` (same GPU model and TensorRT), else why not."""
    if not sidecar:
        return "it has no readable .json sidecar saying which GPU and TensorRT built it"
    if sidecar.get("format") != SIDECAR_FORMAT or sidecar.get("kind") != "tensorrt":
        return "its sidecar does not describe a cyc TensorRT engine"
    built = sidecar.get("gpu") or {}
    problems = []
    if built.get("name") != gpu.name or str(built.get("compute_capability")) != gpu.compute_capability:
        problems.append(
            f"built for {built.get('name', '?')} (sm {built.get('compute_capability', '?')}), "
            f"this is {gpu.name} (sm {gpu.compute_capability})"
        )
    if str(sidecar.get("tensorrt")) != gpu.tensorrt:
        problems.append(f"built with TensorRT {sidecar.get('tensorrt', '?')}, this is TensorRT {gpu.tensorrt}")
    return "; ".join(problems) or None


def engine_candidates(folder: Path, direction: str) -> list[Path]:
    """The engine files of ``direction`` in an export folder, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob(engine_pattern(direction)) if p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def find_engine(folder: Path, direction: str, gpu: GpuIdentity, precision: str | None = None) -> Path | None:
    """An engine in ``folder`` (an ``export/`` folder) for ``direction`` whose sidecar matches ``gpu``.

    With ``precision`` (fp16 / fp32) only that precision; otherwise fp16 is preferred, then the newest.
    """
    matches = []
    for path in engine_candidates(folder, direction):
        data = read_sidecar(path)
        if sidecar_mismatch(data, gpu) is None and data.get("direction") == direction:
            if precision in (None, "auto") or data.get("precision") == precision:
                matches.append((data.get("precision") != "fp16", path))
    matches.sort(key=lambda m: m[0])  # stable: fp16 first, newest first within each precision
    return matches[0][1] if matches else None


def export_folder_for(model: ModelSource) -> Path:
    return export_dir(Path(model.path))


def profile_violation(shape, lo, hi) -> str | None:
    """None when NCHW ``shape`` lies within the profile [lo, hi] in every dimension, else the allowed range."""
    if all(a <= s <= b for s, a, b in zip(shape, lo, hi)):
        return None
    ranges = ", ".join(f"{axis} {a}..{b}" for axis, a, b in zip("NCHW", lo, hi) if axis != "C")
    return (
        f"input {'x'.join(map(str, shape))} (N x C x H x W, padded to multiples of 4) is outside this engine's "
        f"shapes: {ranges}; re-export with a wider --min-shape/--max-shape, or use --size"
    )


# --- the engine ------------------------------------------------------------------------------------------------------


class TensorRTEngine(Engine):
    name = "tensorrt"
    description = "TensorRT (NVIDIA GPU): runs an engine built by 'cyc export' for this GPU"
    devices = ("cuda",)
    precisions = ("fp16", "fp32")
    file_suffixes = (".engine", ".plan")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return tensorrt_unavailable_reason("auto")

    @classmethod
    def prebuilt_for(cls, model: ModelSource, device: str) -> Path | None:
        if not device.startswith("cuda") or cls.unavailable_reason() is not None:
            return None
        if model.exported is not None:  # the user named the file to run
            return None
        from cyclegan_cli.export.tensorrt_build import current_gpu

        return find_engine(export_folder_for(model), model.direction, current_gpu(device))

    def __init__(self, model: ModelSource, *, device: str = "cuda", precision: str = "fp16", batch_size: int = 1):
        super().__init__(model, device=device, precision=precision, batch_size=batch_size)
        reason = tensorrt_unavailable_reason(device)
        if reason:
            raise EngineUnavailable(f"tensorrt: {reason}")
        import tensorrt as trt
        import torch

        from cyclegan_cli.export.tensorrt_build import current_gpu

        self.device = f"cuda:{cuda_index(device)}"
        gpu = current_gpu(self.device)
        path = self._engine_file(model, gpu, precision)
        sidecar = read_sidecar(path)
        mismatch = sidecar_mismatch(sidecar, gpu)
        if mismatch and sidecar is not None:
            raise EngineUnavailable(f"{path}: {mismatch}: re-export it here with 'cyc export --format tensorrt'")
        if mismatch:
            print(f"warning: {path}: {mismatch}; trying it anyway", file=sys.stderr)
        self.path = path
        self.precision = (sidecar or {}).get("precision", precision)

        torch_dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        with torch.cuda.device(self.device):
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if self._engine is None:
                raise EngineUnavailable(
                    f"{path}: TensorRT could not load this engine (built for another GPU or TensorRT version?): "
                    "re-export it with 'cyc export --format tensorrt'"
                )
            self._context = self._engine.create_execution_context()
            self._stream = torch.cuda.Stream(device=self.device)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise CycError(f"{path}: expected one input and one output tensor, found {inputs} and {outputs}")
        self._input, self._output = inputs[0], outputs[0]
        try:
            self._in_dtype = torch_dtypes[self._engine.get_tensor_dtype(self._input)]
            self._out_dtype = torch_dtypes[self._engine.get_tensor_dtype(self._output)]
        except KeyError:
            raise CycError(f"{path}: input/output are neither float32 nor float16: not a cyc engine") from None
        lo, opt, hi = self._engine.get_tensor_profile_shape(self._input, 0)
        self.profile = (tuple(lo), tuple(opt), tuple(hi))

    def _engine_file(self, model: ModelSource, gpu: GpuIdentity, precision: str) -> Path:
        if model.exported is not None:  # its suffix was checked against file_suffixes when it was chosen
            return Path(model.exported)
        folder = export_folder_for(model)
        found = find_engine(folder, model.direction, gpu, precision)
        if found is None and (found := find_engine(folder, model.direction, gpu)) is not None:
            print(f"note: no {precision} TensorRT engine in {folder}; using {found.name}", file=sys.stderr)
        if found is None:
            others = engine_candidates(folder, model.direction)
            why = f" ({len(others)} there, built for other GPUs, TensorRT versions or precisions)" if others else ""
            raise EngineUnavailable(
                f"no {precision} TensorRT engine for {gpu.name} and TensorRT {gpu.tensorrt} in {folder}{why}: "
                f"build one with 'cyc export {model.path} --format tensorrt"
                f"{' --fp16' if precision == 'fp16' else ''}'"
            )
        return found

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        max_n = self.profile[2][0]
        if len(batch) > max_n:  # a batch above the profile's N runs in slices; H and W must fit
            return np.concatenate([self(batch[i : i + max_n]) for i in range(0, len(batch), max_n)])
        import torch

        from cyclegan_cli.framing import to_input_tensor, to_uint8_frames

        with torch.cuda.device(self.device), torch.cuda.stream(self._stream), torch.inference_mode():
            x, size = to_input_tensor(batch, self.device, self._in_dtype)
            shape = tuple(x.shape)
            problem = profile_violation(shape, self.profile[0], self.profile[2])
            if problem:
                raise CycError(f"{self.path.name}: {problem}")
            x = x.contiguous()
            if not self._context.set_input_shape(self._input, shape):
                raise CycError(f"{self.path.name}: TensorRT refused input shape {shape}")
            y = torch.empty(
                tuple(self._context.get_tensor_shape(self._output)), dtype=self._out_dtype, device=self.device
            )
            self._context.set_tensor_address(self._input, x.data_ptr())
            self._context.set_tensor_address(self._output, y.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise CycError(f"{self.path.name}: TensorRT failed to run the engine")
            return to_uint8_frames(y, size)  # enqueued on the same stream; the copy to the host waits for it

    def describe(self) -> str:
        return f"{self.name} {self.precision} on {self.device} ({self.path.name})"
