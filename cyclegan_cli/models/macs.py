"""What a generator costs: multiply-accumulates per frame, counted from its shape (no torch: ``--help`` texts
use it)."""

from __future__ import annotations


def generator_macs(
    ngf: int, n_blocks: int, width: int, height: int, upsample: str = "transposed", blocks: str = "full"
) -> int:
    """Multiply-accumulates of one generator pass on a ``width`` x ``height`` frame (a multiple of 4), counted
    per conv as output pixels x output channels x input channels / groups x kernel area (a transposed conv: per
    input pixel); norms, pads and activations are not counted."""
    full, half, quarter = width * height, width * height // 4, width * height // 16
    macs = full * ngf * 3 * 49  # c7s1-ngf
    macs += half * 2 * ngf * ngf * 9 + quarter * 4 * ngf * 2 * ngf * 9  # the two downsamplings
    block_conv = 4 * ngf * 9 + (4 * ngf) ** 2 if blocks == "separable" else (4 * ngf) ** 2 * 9
    macs += 2 * n_blocks * quarter * block_conv  # the residual blocks
    if upsample == "resize":  # each 3x3 conv runs on the upsampled pixels
        macs += half * 2 * ngf * 4 * ngf * 9 + full * ngf * 2 * ngf * 9
    else:
        macs += quarter * 4 * ngf * 2 * ngf * 9 + half * 2 * ngf * ngf * 9
    return macs + full * 3 * ngf * 49  # c7s1-3
