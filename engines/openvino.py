"""OpenVINO on the CPU: compiles in a few seconds, runs bf16 natively on CPUs with AMX or AVX512-BF16, and int8
models (``cyc export --int8``, or quantized at start by ``cyc run``) at several times the fp32 rate on CPUs with
VNNI or AMX.

OpenVINO silently computes in bf16 on such CPUs unless told otherwise, so the precision hint is always set
explicitly and read back (``inference_precision``). An int8 model runs with the f32 hint: its quantized
convolutions are int8 whatever the hint, and what it keeps in fp32 then stays fp32, as it was measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cyclegan_cli.errors import UsageError
from cyclegan_cli.framing import from_output_array, to_input_array
from cyclegan_cli.models.artifacts import export_dir, int8_name
from cyclegan_cli.plugin_api import Engine, ModelSource, missing_library

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


class OpenVinoEngine(Engine):
    name = "openvino"
    description = "OpenVINO (CPU): compiles in seconds, fast bf16 on CPUs with AMX or AVX512-BF16, int8 models"
    devices = ("cpu",)
    precisions = ("fp32", "bf16", "int8")
    file_suffixes = (".onnx", ".xml")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return missing_library("openvino", "OpenVINO", "openvino")

    @classmethod
    def prebuilt_for(cls, model: ModelSource, device: str) -> Path | None:
        """The int8 model ``cyc export --int8`` wrote for this direction in the run's ``export/`` folder (its
        weights digest and fidelity are checked by the auto rule, ``engine_choice.int8_facts``)."""
        if device != "cpu" or model.exported is not None or cls.unavailable_reason() is not None:
            return None
        path = export_dir(Path(model.path)) / int8_name(model.direction)
        return path if path.is_file() and path.with_suffix(".bin").is_file() else None

    def __init__(self, model: ModelSource, *, device: str = "cpu", precision: str = "fp32", batch_size: int = 1):
        super().__init__(model, device=device, precision=precision, batch_size=batch_size)
        import openvino as ov

        core = ov.Core()
        if model.exported is not None:
            ov_model = core.read_model(str(model.exported))
        elif precision == "int8":
            raise UsageError(
                f"{model.path}: int8 runs a quantized model: make one with 'cyc export --int8', or let "
                "'cyc run --precision int8' quantize it"
            )
        else:
            from cyclegan_cli.export.openvino_graph import kept_openvino_model

            ov_model = kept_openvino_model(core, model.generator)
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

    def describe(self) -> str:
        file = f" ({Path(self.model.exported).name})" if self.model.exported is not None else ""
        return f"{self.name} {self.precision} on {self.device}{file}"
