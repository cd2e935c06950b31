"""A frame of any size in bounded memory: the generator run over horizontal strips, every InstanceNorm layer
normalising with the statistics of the whole frame, computed exactly; the output equals the whole frame's.

Why strips and exact statistics, not tiles with estimated ones: with its norm statistics given, the generator is
a stack of local operations, so any part of its output can be computed from a part of its input and a margin.
What is not local is the statistics. Measured (docs/internals.md, "Large frames"): statistics taken from the frame
scaled down 2x put the tiled output at 34.8 dB from the untiled one, 4x at 27.5 dB (a tile's own statistics:
21.5 dB); refining them from the tiles' activations, all layers at once, diverged. Exact statistics of layer k
need the exact output of layers 1..k-1 over the whole frame, so they are taken layer by layer, and the only
activation kept whole is the bottleneck's (a quarter of the size each way, ``4 x ngf`` channels: ``ngf`` bytes
per input pixel in fp32, 2.1 GB for 7680x4320 with the full generator), from which each residual block is
updated in place, strip by strip.

The passes, each over strips of rows (with a margin of rows above and below that is computed and dropped):
the encoder once per InstanceNorm in it (the statistics of its input), then once more into the bottleneck
buffer; per residual block, once per norm, then once to add the block's output into the buffer (the rows a
strip overwrites that the next strip still reads are kept aside first); the decoder once per norm, then once
into the output picture. About 1.8x the work of the whole frame at once (the residual blocks run 1.5 times).
Sums are accumulated in float64.

Works on generators of the reference's layout (:class:`cyclegan_cli.models.architectures.ResnetGenerator`, its
students and variants); BatchNorm (running statistics) is local and needs nothing.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from cyclegan_cli.framing import MULTIPLE, padding_for
from cyclegan_cli.models.architectures import ResnetBlock
from cyclegan_cli.plugin_api import Engine
from cyclegan_cli.translation.memory import FramePlan, listed_sizes

# Rows of margin a strip carries above and below, on the side it is read from. The encoder's convs see
# 3 (7x7) + 2 + 4 (the stride-2 3x3s, counted in input rows) = 9 input rows: 12 keeps strips on the stride grid.
# A residual block's two 3x3 convs see 2 bottleneck rows; the decoder's two upsamplings and last 7x7 conv see
# less than 2. Too small a margin would show as a difference from the whole frame: the tests compare them.
ENCODER_MARGIN = 12
BLOCK_MARGIN = 2
DECODER_MARGIN = 2
DOWNSCALE = 4  # the bottleneck's rows per input row: 1/4


class FrozenNorm(nn.Module):
    """An InstanceNorm2d normalising with given per-channel statistics (those of the whole frame)."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        self.eps = norm.eps
        self.weight, self.bias = (norm.weight, norm.bias) if norm.affine else (None, None)
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x - self.mean.to(x.dtype)[:, None, None]).mul_(torch.rsqrt(self.var + self.eps).to(x.dtype)[:, None, None])
        if self.weight is not None:
            y.mul_(self.weight[:, None, None]).add_(self.bias[:, None, None])
        return y


class Statistics:
    """Per-channel mean and variance of one layer's input over the strips given so far: each strip's in one
    reduction (no copy of the activations), combined in float64 (Chan, Golub and LeVeque's pairwise update)."""

    def __init__(self):
        self.mean = self.m2 = self.device = None
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        var, mean = torch.var_mean(x.float() if x.dtype != torch.float32 else x, dim=(0, 2, 3), correction=0)
        count, self.device = x.shape[0] * x.shape[2] * x.shape[3], x.device
        mean, m2 = mean.cpu().double(), var.cpu().double() * count  # the CPU: MPS has no float64
        if self.mean is None:
            self.mean, self.m2, self.count = mean, m2, count
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * count / total)
        self.count = total

    def set_into(self, norm: FrozenNorm) -> None:
        norm.mean, norm.var = self.mean.float().to(self.device), (self.m2 / self.count).float().to(self.device)


def with_frozen_norms(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose InstanceNorm2d layers are :class:`FrozenNorm` (statistics not yet set)."""
    net = copy.deepcopy(net)
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.InstanceNorm2d):
            parent_name, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent_name) if parent_name else net, child, FrozenNorm(module))
    return net


def _norm_positions(layers: list[nn.Module]) -> list[int]:
    return [i for i, layer in enumerate(layers) if isinstance(layer, FrozenNorm)]


def _over_strips(rows: int, strip: int, margin: int, read, run, consume) -> None:
    """For each strip of ``strip`` source rows: ``run`` on source rows [start - margin, end + margin) (clipped to
    the source) as ``read(lo, hi)`` gives them, and its output rows of the strip itself (the output may have 1/4 to
    4 times the rows it was given) handed to ``consume(start, end, rows)``, in order."""
    for start in range(0, rows, strip):
        end = min(rows, start + strip)
        lo, hi = max(0, start - margin), min(rows, end + margin)
        out = run(read(lo, hi))
        scale = out.shape[2] / (hi - lo)
        consume(start, end, out[:, :, round((start - lo) * scale) : round((end - lo) * scale)])


def _accumulate(layers: list[nn.Module], position: int, rows: int, strip: int, margin: int, read):
    """The exact statistics of ``layers[position]``'s input over the whole frame, set into it."""
    before = nn.Sequential(*layers[:position])
    stats = Statistics()
    _over_strips(rows, strip, margin, read, before, lambda start, end, x: stats.add(x))
    stats.set_into(layers[position])


class StripTranslator:
    """A generator ready to translate pictures in strips: a copy whose InstanceNorms take given statistics, on the
    device and in the precision, built once (each picture's statistics are taken anew)."""

    def __init__(self, net: nn.Module, device: str = "cpu", dtype=torch.float32):
        # channels-last as the torch engine runs (not on MPS, which the torch engine leaves contiguous too)
        self.layout = torch.contiguous_format if device.startswith("mps") else torch.channels_last
        self.device, self.dtype = device, dtype
        frozen = with_frozen_norms(net).to(device=device, dtype=dtype, memory_format=self.layout).eval()
        layers = list(frozen.model)
        self.blocks = [layer for layer in layers if isinstance(layer, ResnetBlock)]
        first = next(
            i for i, layer in enumerate(layers) if isinstance(layer, (ResnetBlock, nn.ConvTranspose2d, nn.Upsample))
        )
        last = max((i for i, layer in enumerate(layers) if isinstance(layer, ResnetBlock)), default=first - 1)
        self.encoder, self.decoder = layers[:first], layers[last + 1 :]

    def __call__(self, image: np.ndarray, strip_rows: int) -> np.ndarray:
        """The output for one H x W x 3 uint8 picture over strips of about ``strip_rows`` input rows (a multiple
        of 4), with the whole picture's norm statistics: equal to running the whole picture at once."""
        h, w = image.shape[:2]
        pad_h, pad_w = padding_for(h, w)
        padded = image
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "edge"
            padded = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)
        rows, step = padded.shape[0], max(MULTIPLE, strip_rows // MULTIPLE * MULTIPLE)

        def read_input(lo: int, hi: int) -> torch.Tensor:
            x = torch.from_numpy(np.ascontiguousarray(padded[lo:hi])).to(self.device).permute(2, 0, 1)[None]
            return x.float().div_(127.5).sub_(1.0).to(self.dtype).contiguous(memory_format=self.layout)

        with torch.inference_mode():
            for position in _norm_positions(self.encoder):
                _accumulate(self.encoder, position, rows, step, ENCODER_MARGIN, read_input)
            bottleneck = _encode(nn.Sequential(*self.encoder), rows, step, read_input, self.layout)
            small_step = step // DOWNSCALE
            for block in self.blocks:
                _update_block(block, bottleneck, small_step)
            read_bottleneck = lambda lo, hi: bottleneck[:, :, lo:hi]  # noqa: E731
            for position in _norm_positions(self.decoder):
                _accumulate(self.decoder, position, bottleneck.shape[2], small_step, DECODER_MARGIN, read_bottleneck)
            out = np.empty((rows, padded.shape[1], 3), dtype=np.uint8)

            def write(start: int, end: int, y: torch.Tensor) -> None:
                picture = y[0].float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
                out[start * DOWNSCALE : end * DOWNSCALE] = picture.permute(1, 2, 0).cpu().numpy()

            decode = nn.Sequential(*self.decoder)
            _over_strips(bottleneck.shape[2], small_step, DECODER_MARGIN, read_bottleneck, decode, write)
        return out[:h, :w]


def translate_in_strips(
    net: nn.Module, image: np.ndarray, strip_rows: int, device: str = "cpu", dtype=torch.float32
) -> np.ndarray:
    """``net``'s output for one picture in strips (:class:`StripTranslator`)."""
    return StripTranslator(net, device, dtype)(image, strip_rows)


def _encode(encoder: nn.Module, rows: int, step: int, read, layout) -> torch.Tensor:
    """The encoder's output over the whole frame (the bottleneck), strip by strip into one tensor."""
    bottleneck: torch.Tensor | None = None

    def put(start: int, end: int, x: torch.Tensor) -> None:
        nonlocal bottleneck
        if bottleneck is None:
            shape = (x.shape[0], x.shape[1], rows // DOWNSCALE, x.shape[3])
            bottleneck = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout)
        bottleneck[:, :, start // DOWNSCALE : end // DOWNSCALE] = x

    _over_strips(rows, step, ENCODER_MARGIN, read, encoder, put)
    return bottleneck


def _update_block(block: ResnetBlock, x: torch.Tensor, step: int) -> None:
    """``x = x + block.conv_block(x)`` over the whole bottleneck, in place, strip by strip; the norms' statistics
    first. The rows a strip overwrites that the next strip reads as its margin are kept aside before."""
    inner = list(block.conv_block)
    rows = x.shape[2]
    read = lambda lo, hi: x[:, :, lo:hi]  # noqa: E731
    for position in _norm_positions(inner):
        _accumulate(inner, position, rows, step, BLOCK_MARGIN, read)
    kept: dict[int, torch.Tensor] = {}  # source row -> its value before this block, for the next strip

    def read_kept(lo: int, hi: int) -> torch.Tensor:
        parts = [kept[r] for r in range(lo, hi) if r in kept]
        return torch.cat([*parts, x[:, :, lo + len(parts) : hi]], dim=2) if parts else x[:, :, lo:hi]

    def add(start: int, end: int, y: torch.Tensor) -> None:
        for r in range(max(start, end - BLOCK_MARGIN), end):
            kept[r] = x[:, :, r : r + 1].clone()
        for r in [r for r in kept if r < end - BLOCK_MARGIN]:  # strips thinner than the margin keep older rows
            del kept[r]
        x[:, :, start:end] += y

    _over_strips(rows, step, BLOCK_MARGIN, read_kept, block.conv_block, add)


class InStrips(Engine):
    """An engine that sends the frames of the sizes planned for strips (:mod:`cyclegan_cli.translation.memory`)
    through :func:`translate_in_strips` (torch, on the engine's device) and every other frame to ``inner``.

    Strips run in PyTorch whatever the inner engine (they need the generator's layers one by one): in fp32, or
    the inner engine's bf16 or fp16 where it had one (OpenVINO running the same layers, each run with its norms'
    statistics as inputs, measured slower than PyTorch on an AVX2-only CPU: docs/internals.md). --stable's carried
    statistics do not apply to a frame in strips (it uses its own, exact; ``cyc run`` says so); its other
    mechanisms do."""

    def __init__(self, inner: Engine, plans: dict[tuple[int, int], FramePlan]):
        self.inner, self.plans, self.name = inner, plans, inner.name
        self.model, self.device, self.precision, self.batch_size = inner.model, inner.device, inner.precision, 1
        self.carries_statistics = inner.carries_statistics
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(inner.precision, torch.float32)
        self._label = inner.precision if self._dtype != torch.float32 else "fp32"
        self._strips = StripTranslator(inner.model.generator, inner.device, self._dtype)

    def plan_for(self, batch: np.ndarray) -> FramePlan | None:
        return self.plans.get((batch.shape[2], batch.shape[1]))

    def warmup(self, height: int, width: int) -> None:
        if (width, height) not in self.plans:
            self.inner.warmup(height, width)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        plan = self.plan_for(batch)
        if plan is None:
            return self.inner(batch)
        return np.stack([self._strips(frame, plan.strip_rows) for frame in batch])

    def new_stream_state(self, momentum: float):
        return self.inner.new_stream_state(momentum)

    def run_carried(self, batch: np.ndarray, state, new_shot: list[bool]) -> np.ndarray:
        return self(batch) if self.plan_for(batch) else self.inner.run_carried(batch, state, new_shot)

    def describe(self) -> str:
        sizes = listed_sizes(self.plans)
        return f"{self.inner.describe()}; {sizes} in strips (torch {self._label} on {self.device})"
