"""The CycleGAN networks, layer for layer as the official implementation builds them.

The generator's ``nn.Sequential`` is named ``model`` and its indices match the official one, so the published
``*.pth`` files load with ``strict=True`` (docs/internals.md lists the layout). By default InstanceNorm has no affine
parameters and no running statistics, every conv has a bias and the decoder upsamples with transposed convs: the
reference's generator. The variants other implementations publish are options (:data:`NORMS`, :data:`UPSAMPLINGS`,
``bias``): learned InstanceNorm scale and shift, BatchNorm (its running statistics used in eval mode), convs without
bias, and a decoder of nearest-neighbour upsampling and 3x3 convs (PyTorch-GAN's). ``blocks="separable"`` is the
student ``cyc distill`` trains: each residual block's 3x3 convs become a depthwise 3x3 and a pointwise 1x1 (the
"mobile" ResNet generator of GAN Compression, Li et al. 2020), about 9x fewer MACs in the blocks.
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("instance", "instance-affine", "batch")
UPSAMPLINGS = ("transposed", "resize")  # a stride-2 transposed conv, or Upsample(x2, nearest) + a 3x3 conv
BLOCKS = ("full", "separable")  # the residual blocks' 3x3 convs: plain, or depthwise 3x3 + pointwise 1x1


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm2d(channels, affine=kind == "instance-affine", track_running_stats=False)


def _block_conv(channels: int, blocks: str, bias: bool) -> nn.Module:
    if blocks == "separable":
        return nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=0, groups=channels, bias=False),
            nn.Conv2d(channels, channels, kernel_size=1, bias=bias),
        )
    return nn.Conv2d(channels, channels, kernel_size=3, padding=0, bias=bias)


class ResnetBlock(nn.Module):
    """Two reflect-padded 3x3 convs with a skip connection (``conv_block`` indices 0..6 as in the official code);
    with ``blocks="separable"`` each conv is a depthwise 3x3 followed by a pointwise 1x1."""

    def __init__(self, channels: int, norm: str = "instance", bias: bool = True, blocks: str = "full"):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            _block_conv(channels, blocks, bias),
            _norm(norm, channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            _block_conv(channels, blocks, bias),
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

    Input and output are RGB in [-1, 1]; height and width must be multiples of 4. ``norm``, ``upsample``, ``bias``
    (the convs followed by a norm) and ``blocks`` choose a variant; the defaults are the reference's.
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
        blocks: str = "full",
    ):
        super().__init__()
        if norm not in NORMS or upsample not in UPSAMPLINGS or blocks not in BLOCKS:
            raise ValueError(f"unknown generator variant: norm {norm!r}, upsample {upsample!r}, blocks {blocks!r}")
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
        layers += [ResnetBlock(ngf * 4, norm, bias, blocks) for _ in range(n_blocks)]
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
