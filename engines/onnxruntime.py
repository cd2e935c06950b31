"""ONNX Runtime: runs an exported ``.onnx`` graph directly, or exports the generator to a temporary one."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from cyclegan_cli.errors import EngineUnavailable
from cyclegan_cli.framing import from_output_array, to_input_array
from cyclegan_cli.plugin_api import Engine, ModelSource, missing_library


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    description = "ONNX Runtime (CPU; CUDA provider where installed): runs exported .onnx files"
    devices = ("cpu", "cuda")
    precisions = ("fp32", "fp16")
    file_suffixes = (".onnx",)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return missing_library("onnxruntime", "ONNX Runtime", "onnx")

    def __init__(self, model: ModelSource, *, device: str = "cpu", precision: str = "fp32", batch_size: int = 1):
        super().__init__(model, device=device, precision=precision, batch_size=batch_size)
        import onnxruntime as ort

        self._tempdir = None
        graph = model.exported if model.exported and model.exported.suffix == ".onnx" else self._export(model)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EngineUnavailable(
                    "onnxruntime: this ONNX Runtime has no CUDA provider: pip install onnxruntime-gpu, or --device cpu"
                )
            index = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(graph), options, providers=providers)

    def _export(self, model: ModelSource) -> Path:
        from cyclegan_cli.export.onnx_graph import export_onnx

        self._tempdir = tempfile.TemporaryDirectory(prefix="cyc-onnx-")
        path = Path(self._tempdir.name) / "generator.onnx"
        return export_onnx(model.generator, path, fp16=self.precision == "fp16")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x, size = to_input_array(batch)
        (y,) = self._session.run(["output"], {"input": x})
        return from_output_array(y, size)
