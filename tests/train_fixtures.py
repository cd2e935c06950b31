"""Tiny unpaired datasets for the training tests, made here with numpy and PIL (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The tiny networks and sizes every training test uses: about 30 steps/s on one CPU core.
TINY = ["--ngf", "8", "--n-blocks", "2", "--ndf", "8", "--load-size", "36", "--crop-size", "32"]
# Every training test names its device, so the suite means the same on a machine with a GPU ("auto" would pick it).
CPU = ["--device", "cpu"]
TINY_API = {"ngf": 8, "n_blocks": 2, "ndf": 8, "load_size": 36, "crop_size": 32}  # TINY as TrainConfig fields


def pattern_image(rng: np.random.Generator, size: int = 36) -> np.ndarray:
    """A colourful image: in each colour channel a sine wave of its own direction, frequency and phase.

    Every pixel differs from its neighbours in every channel, so the networks' InstanceNorm keeps what tells
    the channels apart, and a tiny generator can learn the translation in a few hundred steps."""
    y, x = np.mgrid[0:size, 0:size] / size
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 3), rng.uniform(0.5, 3), rng.uniform(0, 2 * np.pi)
        channels.append(0.5 + 0.5 * np.sin(2 * np.pi * (fx * x + fy * y) + phase))
    return (np.stack(channels, axis=-1) * 255).astype(np.uint8)


def make_domains(
    root: Path,
    count: int = 8,
    count_b: int | None = None,
    size: int = 36,
    seed: int = 0,
    ext: str = ".png",
    layout: tuple[str, str] = ("trainA", "trainB"),
) -> Path:
    """``root/trainA`` with ``count`` images and ``root/trainB`` with the same kind of images, colour channels
    rotated (R,G,B -> G,B,R): a translation a tiny CycleGAN learns in a few hundred steps. Returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    count_b = count if count_b is None else count_b
    dir_a, dir_b = root / layout[0], root / layout[1]
    dir_a.mkdir(parents=True, exist_ok=True)
    dir_b.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(pattern_image(rng, size)).save(dir_a / f"a{i:03d}{ext}")
    for i in range(count_b):
        Image.fromarray(np.ascontiguousarray(pattern_image(rng, size)[..., [1, 2, 0]])).save(dir_b / f"b{i:03d}{ext}")
    return root


def truncated_jpeg(path: Path, size: int = 36) -> Path:
    """A real JPEG cut short: its header reads, its pixels do not."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pattern_image(np.random.default_rng(99), size)).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path
