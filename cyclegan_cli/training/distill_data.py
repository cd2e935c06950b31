"""``cyc distill``'s material: frames of the source domain, the teacher's outputs on them, and the baselines.

The teacher's forward pass costs as much as ten student steps, so it runs once per frame, not once per step: the
frames (images, and frames sampled from videos, resized so that the shorter side is ``--load-size``) and the
teacher's translation of each whole frame are kept as :class:`Pairs` (uint8, in ``pairs.npz`` in the run folder, so
that a resume does not run the teacher again). The student then learns from random crops of those pairs. Whole
frames also give the teacher's real behaviour at inference, where each InstanceNorm sees the whole frame.

Two baselines are scored on the held-out frames beside every student figure: the identity (the input itself
against the teacher's output) and an oracle that fits the best global colour transform per image (a 3x3 matrix and
an offset, by least squares, to the teacher's output): it knows the answer but can draw nothing local.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cyclegan_cli.atomic import atomic_path
from cyclegan_cli.errors import UsageError
from cyclegan_cli.measured import PICTURE_PEAK_TO_PEAK, psnr_of

HOLD_OUT_EVERY = 8  # every eighth frame of --data is held out to measure fidelity (without --held-out)
MIN_HELD_OUT = 2  # fewer held-out frames than this measure nothing worth writing into the student
HELD_OUT_MAX = 64  # frames taken from --held-out


@dataclass
class Pairs:
    """Frames (H x W x 3 uint8) and the teacher's translations of them, for training and held out."""

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    held_inputs: list[np.ndarray]
    held_targets: list[np.ndarray]

    def save(self, path: Path) -> None:
        arrays = {}
        for name in ("inputs", "targets", "held_inputs", "held_targets"):
            arrays |= {f"{name}_{i:05d}": a for i, a in enumerate(getattr(self, name))}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> Pairs:
        with np.load(path, allow_pickle=False) as stored:
            names = sorted(stored.files)
            lists = {
                field.name: [stored[n] for n in names if n.rsplit("_", 1)[0] == field.name]
                for field in dataclasses.fields(cls)
            }
        return cls(**lists)


def fit_frame(image: np.ndarray, load_size: int) -> np.ndarray:
    """Resize so that the shorter side is ``load_size`` (aspect kept), then crop each side to a multiple of 4."""
    from PIL import Image

    height, width = image.shape[:2]
    scale = load_size / min(height, width)
    size = (max(4, round(width * scale)), max(4, round(height * scale)))
    if size != (width, height):
        image = np.asarray(Image.fromarray(np.ascontiguousarray(image[..., :3])).resize(size, Image.BICUBIC))
    h, w = image.shape[0] // 4 * 4, image.shape[1] // 4 * 4
    return np.ascontiguousarray(image[:h, :w, :3])


def collect_frames(specs: list[str], option: str, wanted: int, load_size: int) -> tuple[list[np.ndarray], str]:
    """Up to ``wanted`` frames from images, folders, globs and videos, fitted to ``load_size``: one per image
    (spread over them where there are more), the rest shared among the videos; the line that says where they came
    from. A spec that names nothing is a UsageError."""
    from cyclegan_cli.export.quantize import calibration_from_files, media_files
    from cyclegan_cli.imageio import is_image_path

    files = [path for spec in specs for path in media_files(spec, option)]
    if not files:
        raise UsageError(f"{option} {' '.join(specs)}: no image or video found there")
    images = [path for path in files if is_image_path(path)]
    videos = [path for path in files if not is_image_path(path)]
    label = ", ".join(specs)
    frames, lines, skipped = [], [], []
    for group, share in ((images, min(len(images), wanted)), (videos, wanted - min(len(images), wanted))):
        if not group or share <= 0:
            continue
        collected = calibration_from_files(
            group,
            label,
            share,
            transform=lambda frame: dataclasses.replace(frame, image=fit_frame(frame.image, load_size)),
            take=lambda image, rng: image,
        )
        frames += collected.frames
        skipped += collected.skipped
        lines.append(collected.line().replace(f" of {label}", ""))
    if not frames:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise UsageError(f"{option} {label}: no readable frame{first}")
    return frames, f"{' and '.join(lines)} of {label}"


def split_held_out(frames: list[np.ndarray], held: list[np.ndarray] | None) -> tuple[list, list]:
    """(train, held out): ``held`` when given, else every HOLD_OUT_EVERY-th frame. Too few held-out frames, or
    no training frame left, is a UsageError."""
    if held is None:
        held = [f for i, f in enumerate(frames) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
        frames = [f for i, f in enumerate(frames) if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1]
        fix = f"give more frames in --data (one in {HOLD_OUT_EVERY} is held out), or --held-out"
    else:
        fix = "give more images in --held-out"
    if len(held) < MIN_HELD_OUT:
        raise UsageError(f"held-out set too small: {len(held)} frame(s), at least {MIN_HELD_OUT} are needed; {fix}")
    if not frames:
        raise UsageError("no training frame left after holding out: give more frames in --data")
    return frames, held


@torch.no_grad()
def translate_frames(generator, frames: list, device: str, precision: str) -> list[np.ndarray]:
    """Each frame through ``generator`` alone (whole, uint8 in and out), under autocast for bf16/fp16."""
    from cyclegan_cli.framing import to_input_tensor, to_uint8_frames

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    out = []
    for frame in frames:
        x, size = to_input_tensor(frame[None], device, torch.float32)
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            y = generator(x)
        out.append(to_uint8_frames(y, size)[0])
    return out


def teacher_pairs(teacher, train: list, held: list, device: str, precision: str) -> Pairs:
    """The teacher's translation of every frame, run once."""
    translated = translate_frames(teacher, train + held, device, precision)
    return Pairs(train, translated[: len(train)], held, translated[len(train) :])


def mean_psnr(outputs: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """The mean over images of each one's PSNR (8-bit) against its target."""
    scores = [psnr_of(o, t, PICTURE_PEAK_TO_PEAK) for o, t in zip(outputs, targets)]
    return float(np.mean(scores)) if scores else math.nan


def colour_matrix_oracle(inputs: list[np.ndarray], targets: list[np.ndarray]) -> list[np.ndarray]:
    """Each input through the affine colour transform (3x3 and an offset) fitted to its own target."""
    fitted = []
    for image, target in zip(inputs, targets):
        x = np.concatenate([image.reshape(-1, 3).astype(np.float64), np.ones((image.size // 3, 1))], axis=1)
        y = target.reshape(-1, 3).astype(np.float64)
        matrix, *_ = np.linalg.lstsq(x, y, rcond=None)
        fitted.append(np.clip(np.rint(x @ matrix), 0, 255).astype(np.uint8).reshape(image.shape))
    return fitted


def baselines(pairs: Pairs) -> dict[str, float]:
    """The identity's and the colour-matrix oracle's mean PSNR against the teacher on the held-out frames."""
    return {
        "identity_psnr_db": round(mean_psnr(pairs.held_inputs, pairs.held_targets), 2),
        "colour_matrix_psnr_db": round(
            mean_psnr(colour_matrix_oracle(pairs.held_inputs, pairs.held_targets), pairs.held_targets), 2
        ),
    }


def crop_batch(pairs: Pairs, count: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random (input, target) crops of ``size`` (the whole frame where it is smaller), flipped left-right
    at random, as NCHW float in [-1, 1]; every choice drawn from ``generator`` (so a step's batch is its seed's)."""
    inputs, targets = [], []
    picks = torch.randint(len(pairs.inputs), (count,), generator=generator).tolist()
    for index in picks:
        image, target = pairs.inputs[index], pairs.targets[index]
        h, w = min(size, image.shape[0]), min(size, image.shape[1])
        top = int(torch.randint(image.shape[0] - h + 1, (1,), generator=generator))
        left = int(torch.randint(image.shape[1] - w + 1, (1,), generator=generator))
        flip = bool(torch.randint(2, (1,), generator=generator))
        for source, into in ((image, inputs), (target, targets)):
            piece = source[top : top + h, left : left + w]
            into.append(piece[:, ::-1] if flip else piece)
    if len({piece.shape for piece in inputs}) > 1:  # frames smaller than the crop differ in size: crop to the least
        h = min(p.shape[0] for p in inputs) // 4 * 4
        w = min(p.shape[1] for p in inputs) // 4 * 4
        inputs, targets = [p[:h, :w] for p in inputs], [p[:h, :w] for p in targets]

    def tensor(pieces: list[np.ndarray]) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(pieces)))
        return batch.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    return tensor(inputs), tensor(targets)
