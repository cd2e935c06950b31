"""The CycleGAN networks, layer for layer as the official implementation builds them.

The generator's ``nn.Sequential`` is named ``model`` and its indices match the official one, so the published
``*.pth`` files load with ``strict=True`` (docs/internals.md lists the layout). By default InstanceNorm has no affine
parameters and no running statistics, every conv has a bias and the decoder upsamples with transposed convs: the
reference's generator. The variants other implementations publish are options (:data:`NORMS`, :data:`UPSAMPLINGS`,
``bias``): learned InstanceNorm scale and shift, BatchNorm (its running statistics used in eval mode), convs without
bias, and a decoder of nearest-neighbour upsampling and 3x3 convs (PyTorch-GAN's).
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("instance", "instance-affine", "batch")
UPSAMPLINGS = ("transposed", "resize")  # a stride-2 transposed conv, or Upsample(x2, nearest) + a 3x3 conv


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm2d(channels, affine=kind == "instance-affine", track_running_stats=False)


class ResnetBlock(nn.Module):
    """Two reflect-padded 3x3 convs with a skip connection (``conv_block`` indices 0..6 as in the official code)."""

    def __init__(self, channels: int, norm: str = "instance", bias: bool = True):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, padding=0, bias=bias),
            _norm(norm, channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, padding=0, bias=bias),
            _norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _upsampling(channels: int, out: int, kind: str, bias: bool) -> list[nn.Module]:
    if kind == "resize":
        return [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=bias),
        ]
    return [nn.ConvTranspose2d(channels, out, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias)]


class ResnetGenerator(nn.Module):
    """resnet_{n_blocks}blocks: c7s1-ngf, two stride-2 downsamplings, residual blocks, two upsamplings, c7s1-3, tanh.

    Input and output are RGB in [-1, 1]; height and width must be multiples of 4. ``norm``, ``upsample`` and
    ``bias`` (the convs followed by a norm) choose a variant; the defaults are the reference's.
    """

    def __init__(
        self,
        ngf: int = 64,
        n_blocks: int = 9,
        in_channels: int = 3,
        out_channels: int = 3,
        norm: str = "instance",
        upsample: str = "transposed",
        bias: bool = True,
    ):
        super().__init__()
        if norm not in NORMS or upsample not in UPSAMPLINGS:
            raise ValueError(f"unknown generator variant: norm {norm!r}, upsample {upsample!r}")
        self.ngf, self.n_blocks = ngf, n_blocks
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, kernel_size=7, padding=0, bias=bias),
            _norm(norm, ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=bias),
                _norm(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4, norm, bias) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [
                *_upsampling(ngf * mult, ngf * mult // 2, upsample, bias),
                _norm(norm, ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, out_channels, kernel_size=7, padding=0),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def generator_macs(ngf: int, n_blocks: int, width: int, height: int, upsample: str = "transposed") -> int:
    """Multiply-accumulates of one generator pass on a ``width`` x ``height`` frame (a multiple of 4), counted
    per conv as output pixels x output channels x input channels x kernel area (a transposed conv: per input
    pixel); norms, pads and activations are not counted."""
    full, half, quarter = width * height, width * height // 4, width * height // 16
    macs = full * ngf * 3 * 49  # c7s1-ngf
    macs += half * 2 * ngf * ngf * 9 + quarter * 4 * ngf * 2 * ngf * 9  # the two downsamplings
    macs += 2 * n_blocks * quarter * (4 * ngf) ** 2 * 9  # the residual blocks
    if upsample == "resize":  # each 3x3 conv runs on the upsampled pixels
        macs += half * 2 * ngf * 4 * ngf * 9 + full * ngf * 2 * ngf * 9
    else:
        macs += quarter * 4 * ngf * 2 * ngf * 9 + half * 2 * ngf * ngf * 9
    return macs + full * 3 * ngf * 49  # c7s1-3


class NLayerDiscriminator(nn.Module):
    """The PatchGAN discriminator; with ``n_layers=3`` its receptive field is 70x70."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=stride, padding=1, bias=True),
                _norm("instance", ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The canonical 'normal' init: conv weights N(0, gain), biases 0."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net
