"""``make demo``: a tour of cyc on real photographs that scikit-image ships, with nothing downloaded.

Domain A is colour photographs (an astronaut, a cat, coffee, a rocket, a galaxy field), domain B grayscale ones
(a cameraman, the moon, coins, a page, bricks): the translator learns to drain and restore colour. It trains
for about a minute, then translates held-out photos and a short video with a sound track, through the same
``cyc`` commands a user types.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from cyclegan_cli.models.run_folder import RUNS_DIR

COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
GRAY = ("camera", "moon", "coins", "page", "brick", "grass")
CROPS_PER_PHOTO = 24


def _photos(names: tuple[str, ...]) -> list[np.ndarray]:
    import skimage.data

    photos = []
    for name in names:
        image = getattr(skimage.data, name)()
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        photos.append(np.ascontiguousarray(image[..., :3].astype(np.uint8)))
    return photos


def _crops(photos: list[np.ndarray], folder: Path, rng: np.random.Generator, size: int = 160) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for p, photo in enumerate(photos):
        height, width = photo.shape[:2]
        for c in range(CROPS_PER_PHOTO):
            top, left = rng.integers(0, height - size), rng.integers(0, width - size)
            crop = Image.fromarray(photo[top : top + size, left : left + size]).resize((80, 80), Image.BICUBIC)
            crop.save(folder / f"{p:02d}_{c:02d}.jpg", quality=92)


def _video(photo: np.ndarray, path: Path, frames: int = 48) -> None:
    """A slow pan across a photograph at 29.97 fps, with a tone on the sound track."""
    import av

    rate = Fraction(30000, 1001)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = 160, 96, "yuv420p"
        audio = container.add_stream("aac", rate=44100)
        for i in range(frames):
            crop = photo[100 : 100 + 192, 40 + 3 * i : 40 + 3 * i + 320][::2, ::2]
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(crop), format="rgb24")))
        container.mux(video.encode(None))
        samples = int(44100 * frames / rate)
        tone = (0.2 * np.sin(2 * np.pi * 330 * np.arange(samples) / 44100)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = np.ascontiguousarray(tone[None, start : start + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, start
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))


def _cyc(*args: str) -> None:
    command = [sys.executable, "-m", "cyclegan_cli", *args]
    print("\n$ cyc " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def main(root: Path = Path("demo"), steps: int = 600) -> None:
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(0)
    colour, gray = _photos(COLOUR), _photos(GRAY)
    _crops(colour[:-1], root / "data" / "trainA", rng)
    _crops(gray[:-1], root / "data" / "trainB", rng)
    _crops(colour[-1:], root / "data" / "testA", rng)
    _video(colour[0], root / "pan.mp4")
    print(f"made {root}/data (trainA: colour photos, trainB: grayscale photos) and {root}/pan.mp4")

    _cyc(
        "train",
        str(root / "data"),
        "--name",
        "colour2gray",
        "--out",
        str(root / RUNS_DIR),
        "--load-size",
        "72",
        "--crop-size",
        "64",
        "--ngf",
        "16",
        "--n-blocks",
        "3",
        "--max-steps",
        str(steps),
        "--save-every",
        "200",
        "--sample-every",
        "100",
    )
    _cyc("run", str(root / "data" / "testA"), "--runs-dir", str(root / RUNS_DIR), "--out", str(root / "out"))
    _cyc(
        "run",
        str(root / "pan.mp4"),
        "--runs-dir",
        str(root / RUNS_DIR),
        "--compare",
        "--out",
        str(root / "out" / "pan_compare.mp4"),
    )
    _cyc("export", "--runs-dir", str(root / RUNS_DIR), "--format", "onnx")
    print(f"\nDone. Samples from training: {root}/runs/colour2gray/samples/, translations: {root}/out/")


if __name__ == "__main__":
    main()
