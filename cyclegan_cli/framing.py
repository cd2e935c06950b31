"""Frames in and out of a generator: the pre- and post-processing every engine shares.

In: N x H x W x 3 uint8 RGB -> N x 3 x H' x W' in [-1, 1], padded by reflection so H' and W' are multiples of 4
(the generator downsamples twice). Out: crop back to H x W, then round and clamp to uint8 (never truncate).
The torch versions run on the engine's device (uint8 crosses to the GPU, not float); the numpy versions serve
engines that take host arrays (ONNX Runtime, OpenVINO).
"""

from __future__ import annotations

import numpy as np

MULTIPLE = 4


MIN_SIDE = 8  # the generator reflect-pads at a quarter of the size: below 8 px a side there is nothing to reflect


def padding_for(height: int, width: int) -> tuple[int, int]:
    """Rows and columns to add at the bottom and right so both sides are multiples of 4."""
    return (-height) % MULTIPLE, (-width) % MULTIPLE


def _pad_mode(height: int, width: int, pad_h: int, pad_w: int) -> str:
    # Reflection needs more pixels than it mirrors; a 1-3 pixel sliver falls back to repeating the edge.
    return "reflect" if pad_h < height and pad_w < width else "edge"


# --- numpy (host arrays) ---------------------------------------------------------------------------------------


def to_input_array(batch: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 NHWC -> float32 NCHW in [-1, 1], padded; returns the array and the original (H, W)."""
    n, h, w, _ = batch.shape
    pad_h, pad_w = padding_for(h, w)
    x = batch.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(127.5) - np.float32(1.0)
    if pad_h or pad_w:
        x = np.pad(x, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode=_pad_mode(h, w, pad_h, pad_w))
    return np.ascontiguousarray(x), (h, w)


def from_output_array(y: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC cropped to ``size``, rounded and clamped."""
    h, w = size
    y = y[:, :, :h, :w].astype(np.float32)
    out = np.clip(np.rint((y + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1))


# --- torch (on the engine's device) -----------------------------------------------------------------------------


def to_input_tensor(batch: np.ndarray, device, dtype, channels_last: bool = False):
    """uint8 NHWC (host) -> NCHW ``dtype`` in [-1, 1] on ``device``, padded; returns the tensor and (H, W)."""
    import torch
    import torch.nn.functional as F

    n, h, w, _ = batch.shape
    if not batch.flags.writeable:  # torch refuses to share read-only memory (e.g. np.asarray of a PIL image)
        batch = batch.copy()
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    pad_h, pad_w = padding_for(h, w)
    if pad_h or pad_w:
        mode = "reflect" if _pad_mode(h, w, pad_h, pad_w) == "reflect" else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    x = x.to(dtype)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=memory_format), (h, w)


def to_uint8_frames(y, size: tuple[int, int]) -> np.ndarray:
    """NCHW in [-1, 1] (any device, any float dtype) -> host uint8 NHWC cropped to ``size``, rounded, clamped."""
    import torch

    h, w = size
    y = y[:, :, :h, :w].float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous().cpu().numpy()
