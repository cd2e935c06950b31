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
    description = "PyTorch eager: starts at once, runs any frame size; carries norm statistics for --stable"
    devices = ("cpu", "cuda", "mps")
    precisions = ("fp32", "bf16", "fp16")
    carries_statistics = True

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
        self._eager = net
        # --stable-strength carries InstanceNorm statistics; a generator with BatchNorm has none to carry
        self.carries_statistics = any(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules())
        self._net = self._prepare(net)
        self._carried_net = None  # built on first use: a copy whose InstanceNorms carry statistics (eager)

    def _prepare(self, net):
        return net

    def new_stream_state(self, momentum: float) -> CarriedStatistics:
        return CarriedStatistics(momentum)

    def run_carried(self, batch: np.ndarray, state: CarriedStatistics, new_shot: list[bool]) -> np.ndarray:
        import torch

        if self._carried_net is None:
            self._carried_net = _with_carried_norms(self._eager)
        x, size = to_input_tensor(batch, self.device, self._dtype, self._channels_last)
        state.new_shot = list(new_shot)
        with torch.inference_mode(), _carrying(self._carried_net, state):
            y = self._carried_net(x)
        return to_uint8_frames(y, size)

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


# --- carried InstanceNorm statistics (cyc run --stable) -----------------------------------------------------------


class CarriedStatistics:
    """One stream's state: per InstanceNorm layer, the moving average of its per-channel mean and variance."""

    def __init__(self, momentum: float):
        self.momentum = momentum
        self.averages: dict[int, tuple] = {}  # layer index -> (mean, var), each C floats
        self.new_shot: list[bool] = []  # for the batch in hand: where the averages restart


def _with_carried_norms(net):
    """A copy of ``net`` whose InstanceNorm2d layers normalise with carried statistics (a deep copy: twice the
    model's memory while --stable-strength is above 0)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class CarriedInstanceNorm(nn.Module):
        def __init__(self, index: int, norm: nn.InstanceNorm2d):
            super().__init__()
            self.index, self.eps, self.state = index, norm.eps, None
            self.scale, self.shift = (norm.weight, norm.bias) if norm.affine else (None, None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            state = self.state
            # Each frame that starts a shot is normalised exactly as the plain network does (the same call on
            # the same batch), so the first frame after a cut is bit for bit the --no-stable output.
            plain = F.instance_norm(x, weight=self.scale, bias=self.shift, eps=self.eps)
            stats = x.float()
            mean, var = stats.mean(dim=(2, 3)), stats.var(dim=(2, 3), unbiased=False)  # N x C each
            frames, average = [], state.averages.get(self.index)
            for i in range(x.shape[0]):  # in order: frame i's average includes the frames before it
                if average is None or state.new_shot[i]:
                    average = (mean[i], var[i])
                    frames.append(plain[i])
                    continue
                m = state.momentum
                average = (m * average[0] + (1 - m) * mean[i], m * average[1] + (1 - m) * var[i])
                carried = (stats[i] - average[0][:, None, None]) * torch.rsqrt(average[1][:, None, None] + self.eps)
                if self.scale is not None:  # a learned scale and shift (InstanceNorm with affine=True)
                    carried = carried * self.scale.float()[:, None, None] + self.shift.float()[:, None, None]
                frames.append(carried.to(x.dtype))
            state.averages[self.index] = average
            return torch.stack(frames).contiguous(memory_format=_layout_of(x))

    carried = copy.deepcopy(net)
    norms = [name for name, module in carried.named_modules() if isinstance(module, nn.InstanceNorm2d)]
    for index, name in enumerate(norms):
        parent_name, _, child = name.rpartition(".")
        parent = carried.get_submodule(parent_name) if parent_name else carried
        setattr(parent, child, CarriedInstanceNorm(index, getattr(parent, child)))
    return carried


def _layout_of(x):
    import torch

    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


class _carrying:
    """Point every carried norm of ``net`` at ``state`` for one call."""

    def __init__(self, net, state: CarriedStatistics):
        self.norms = [m for m in net.modules() if hasattr(m, "state") and hasattr(m, "index")]
        self.state = state

    def __enter__(self):
        for norm in self.norms:
            norm.state = self.state

    def __exit__(self, *exc):
        for norm in self.norms:
            norm.state = None
