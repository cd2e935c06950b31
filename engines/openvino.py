"""OpenVINO on the CPU: compiles in a few seconds, runs bf16 natively on CPUs with AMX.

OpenVINO silently computes in bf16 on such CPUs unless told otherwise, so the precision hint is always set
explicitly and read back (``inference_precision``).
"""

from __future__ import annotations

import numpy as np

from cyclegan_cli.framing import from_output_array, to_input_array
from cyclegan_cli.plugin_api import Engine, ModelSource, missing_library

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


class OpenVinoEngine(Engine):
    name = "openvino"
    description = "OpenVINO (CPU): compiles in seconds, fast bf16 on CPUs with AMX or AVX512-BF16"
    devices = ("cpu",)
    precisions = ("fp32", "bf16")
    file_suffixes = (".onnx",)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return missing_library("openvino", "OpenVINO", "openvino")

    def __init__(self, model: ModelSource, *, device: str = "cpu", precision: str = "fp32", batch_size: int = 1):
        super().__init__(model, device=device, precision=precision, batch_size=batch_size)
        import openvino as ov

        core = ov.Core()
        if model.exported is not None:
            ov_model = core.read_model(str(model.exported))
        else:
            import warnings

            import torch

            # OpenVINO traces with torch.jit, which warns of its own deprecation and of constant shape checks.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                ov_model = ov.convert_model(
                    model.generator,
                    example_input=torch.zeros(1, 3, 64, 64),
                    input=[ov.PartialShape([-1, 3, -1, -1])],
                )
        config = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        self._compiled = core.compile_model(ov_model, "CPU", config)
        self._request = self._compiled.create_infer_request()

    @property
    def inference_precision(self) -> str:
        """The precision OpenVINO actually computes in, as it reports it (e.g. 'f32', 'bf16')."""
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        return hint.to_string() if hasattr(hint, "to_string") else str(hint)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x, size = to_input_array(batch)
        self._request.infer({0: x})
        y = self._request.get_output_tensor(0).data
        return from_output_array(y, size)
