"""PyTorch engines: eager (``torch``) and compiled with torch.compile (``torch-compile``).

On a CPU with AMX the compiled bf16 channels_last path is the fastest one we have (0.084 s per 256x256
frame against 0.49 eager fp32 and 0.15 OpenVINO bf16 on a 2-core Xeon: docs/internals.md); compilation
costs tens of seconds per frame size, which is why ``--engine auto`` only picks it for long jobs. On CUDA the
compiled engine captures CUDA graphs (mode ``reduce-overhead``).
"""

from __future__ import annotations

import copy

import numpy as np

from cyclegan_cli.devices import has_cxx_compiler, torch_dtype
from cyclegan_cli.errors import EngineUnavailable, UsageError
from cyclegan_cli.framing import to_input_tensor, to_uint8_frames
from cyclegan_cli.plugin_api import Engine, ModelSource


class TorchEngine(Engine):
    name = "torch"
    description = "PyTorch eager: starts at once, runs any frame size"
    devices = ("cpu", "cuda", "mps")
    precisions = ("fp32", "bf16", "fp16")

    def __init__(self, model: ModelSource, *, device: str = "cpu", precision: str = "fp32", batch_size: int = 1):
        super().__init__(model, device=device, precision=precision, batch_size=batch_size)
        import torch

        if model.generator is None:
            raise UsageError(
                f"{model.path}: the {self.name} engine runs PyTorch weights, not an exported file; "
                "use --engine onnxruntime (or openvino) for .onnx"
            )
        self._dtype = torch_dtype(precision)
        self._channels_last = device != "mps"
        net = copy.deepcopy(model.generator).to(device=device, dtype=self._dtype).eval()
        if self._channels_last:
            net = net.to(memory_format=torch.channels_last)
        for p in net.parameters():
            p.requires_grad_(False)
        self._net = self._prepare(net)

    def _prepare(self, net):
        return net

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x, size = to_input_tensor(batch, self.device, self._dtype, self._channels_last)
        with torch.inference_mode():
            y = self._net(x)
        return to_uint8_frames(y, size)


class TorchCompileEngine(TorchEngine):
    name = "torch-compile"
    description = "PyTorch + torch.compile: fastest for long jobs, compiles per frame size (CUDA graphs on a GPU)"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        import shutil

        if has_cxx_compiler() or shutil.which("nvidia-smi"):
            return None
        return "torch.compile needs a C++ compiler on the CPU (install g++)"

    def _prepare(self, net):
        import torch

        if self.device == "cpu":
            if not has_cxx_compiler():
                raise EngineUnavailable("torch-compile: torch.compile needs a C++ compiler on the CPU (install g++)")
            import torch._inductor.config as inductor_config

            # Freezing folds the weights into the graph so oneDNN can pre-pack them: the big win for inference.
            inductor_config.freezing = True
        mode = "reduce-overhead" if self.device.startswith("cuda") else None
        return torch.compile(net, dynamic=False, mode=mode)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        # A compiled graph is specialised to its input shape: a short last batch would compile anew (tens of
        # seconds), so it is topped up with copies of its last frame and the extra outputs dropped.
        short = self.batch_size - len(batch)
        if short > 0:
            batch = np.concatenate([batch, np.repeat(batch[-1:], short, axis=0)])
        return super().__call__(batch)[: len(batch) - max(short, 0)]
