"""How steady ``cyc run --stable`` makes a video, what it costs, and how far it moves from the plain output.

Footage made from real photographs that scikit-image ships (nothing downloaded), plus any clip named on the
command line:
  still   a still camera on a photograph: sensor noise, a slight exposure flicker, a patch of another photo
          crossing the middle band (the rows it never enters are the "still region");
  pan     a camera pan: a crop window moving across a photograph.
Generators: the demo's translator trained here (``make demo``'s settings, ``--steps`` of them) and a freshly
initialised one of the same shape (which turns sensor noise into strong output noise).

For plain per-frame translation, (1) carried norm statistics, (2) motion-compensated blending, and both:
  warp err   the mean absolute difference between an output frame and the previous output frame warped to it
             along the optical flow of the input frames (OpenCV DIS, medium preset; pixels failing the
             forward-backward check masked), over the still region where there is one, else the whole frame;
             the same on the input frames is printed for scale;
  still chg  the mean frame-to-frame change in the still region;
  PSNR       each stabilised output against the plain one (stability must not come from ignoring the input);
  fps        frames per second against plain, at the clip's size, and at 1280x720 for the still scene.
Run it alone (two cores: any other busy process makes the figures worthless):

    python benchmarks/temporal.py [--steps 600] [--frames 32] [clip.mp4 ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cyclegan_cli import registry  # noqa: E402
from cyclegan_cli.models import ResnetGenerator, init_weights  # noqa: E402
from cyclegan_cli.plugin_api import ModelSource  # noqa: E402
from cyclegan_cli.temporal import StableSettings, StreamState  # noqa: E402
from cyclegan_cli.weights import load_generator  # noqa: E402

VARIANTS = {
    "plain": None,
    "(1) norm 0.9": StableSettings(0.9, 0.0),
    "(2) blend 0.55": StableSettings(0.0, 0.55),
    "(1)+(2)": StableSettings(0.9, 0.55),
}
BATCH = 4


def photos():
    import skimage.data

    return skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()


def still_clip(frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    rng = np.random.default_rng(0)
    background, cat, _ = photos()
    base = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA).astype(np.float64)
    patch = cv2.resize(cat, (width // 5, height // 4), interpolation=cv2.INTER_AREA)
    top, band = height * 3 // 8, patch.shape[0]
    clip = []
    for i in range(frames):
        frame = base * (1 + 0.02 * np.sin(i)) + rng.normal(0, 3, base.shape)
        left = i * (width - patch.shape[1]) // max(1, frames - 1)
        frame[top : top + band, left : left + patch.shape[1]] = patch
        clip.append(np.clip(frame, 0, 255).astype(np.uint8))
    still = np.ones((height, width), bool)
    still[top - 8 : top + band + 8] = False
    return np.stack(clip), still


def pan_clip(frames: int, height: int, width: int) -> np.ndarray:
    import cv2

    _, _, photo = photos()
    photo = cv2.resize(photo, (width * 2, height * 2), interpolation=cv2.INTER_AREA)
    return np.stack([photo[40 : 40 + height, 3 * i : 3 * i + width] for i in range(frames)])


def read_clip(path: str, frames: int) -> np.ndarray:
    import av

    with av.open(path) as container:
        images = []
        for frame in container.decode(video=0):
            images.append(frame.to_ndarray(format="rgb24"))
            if len(images) == frames:
                break
    return np.stack(images)


def translate(engine, clip: np.ndarray, settings: StableSettings | None) -> tuple[np.ndarray, float]:
    """The same steps as the pipeline's (cyclegan_cli.pipeline.Pipeline._translate), timed."""
    started = time.perf_counter()
    if settings is None:
        outputs = [o for i in range(0, len(clip), BATCH) for o in engine(clip[i : i + BATCH])]
    else:
        carry = engine.carries_statistics and settings.norm_momentum > 0
        stream = StreamState(settings, engine.new_stream_state(settings.norm_momentum) if carry else None)
        outputs = []
        for i in range(0, len(clip), BATCH):
            batch = clip[i : i + BATCH]
            cuts = [stream.starts_shot(f) for f in batch]
            out = engine.run_carried(batch, stream.engine_state, cuts) if carry else engine(batch)
            outputs += [stream.blend(a, b, c) for a, b, c in zip(batch, out, cuts)]
    return np.stack(outputs), len(clip) / (time.perf_counter() - started)


def warping_error(inputs: np.ndarray, outputs: np.ndarray, region: np.ndarray | None) -> float:
    import cv2

    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    height, width = inputs.shape[1:3]
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    errors = []
    for t in range(1, len(inputs)):
        now, before = (cv2.cvtColor(inputs[k], cv2.COLOR_RGB2GRAY) for k in (t, t - 1))
        back, fwd = flow.calc(now, before, None), flow.calc(before, now, None)
        mx, my = gx + back[..., 0], gy + back[..., 1]
        there = cv2.remap(fwd, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        ok = np.sum((back + there) ** 2, -1) <= 0.01 * (np.sum(back**2, -1) + np.sum(there**2, -1)) + 0.5
        ok &= (mx >= 0) & (mx <= width - 1) & (my >= 0) & (my <= height - 1)
        if region is not None:
            ok &= region
        warped = cv2.remap(outputs[t - 1], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        errors.append(np.abs(outputs[t].astype(np.float64) - warped)[ok].mean())
    return float(np.mean(errors))


def still_change(outputs: np.ndarray, region: np.ndarray | None) -> float:
    if region is None:
        return float("nan")
    return float(np.mean(np.abs(np.diff(outputs.astype(np.float64), axis=0))[:, region]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    values = []
    for x, y in zip(a, b):
        mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
        values.append(99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse))
    return float(np.mean(values))


def report(name: str, engine, clip: np.ndarray, region: np.ndarray | None) -> None:
    plain = None
    size = f"{len(clip)} frames {clip.shape[2]}x{clip.shape[1]}"
    print(f"\n{name} ({size}); input warp err {warping_error(clip, clip, region):.2f}")
    print(
        f"  {'variant':<16} {'warp err':>9} {'vs plain':>9} {'still chg':>10} {'PSNR dB':>8} {'fps':>7} {'vs plain':>9}"
    )
    base = None
    for label, settings in VARIANTS.items():
        outputs, fps = translate(engine, clip, settings)
        err = warping_error(clip, outputs, region)
        if plain is None:
            plain, base = outputs, (err, fps)
        fidelity = psnr(outputs, plain) if settings is not None else float("inf")
        change = still_change(outputs, region)
        print(
            f"  {label:<16} {err:>9.2f} {err / base[0]:>8.2f}x {change:>10.2f} {fidelity:>8.1f} {fps:>7.2f} "
            f"{fps / base[1]:>8.2f}x"
        )


def trained_generator(steps: int, workdir: Path):
    """The demo's translator (colour <-> grayscale photographs), trained here with the demo's settings."""
    from cyclegan_cli import demo

    rng = np.random.default_rng(0)
    colour, gray = demo._photos(demo.COLOUR), demo._photos(demo.GRAY)
    demo._crops(colour[:-1], workdir / "data" / "trainA", rng)
    demo._crops(gray[:-1], workdir / "data" / "trainB", rng)
    command = [sys.executable, "-m", "cyclegan_cli", "train", str(workdir / "data"), "--name", "t"]
    command += ["--out", str(workdir / "runs"), "--load-size", "72", "--crop-size", "64", "--ngf", "16"]
    command += ["--n-blocks", "3", "--max-steps", str(steps), "--device", "cpu"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    print(f"trained the demo's translator: {steps} steps in {time.perf_counter() - started:.0f} s")
    return load_generator(workdir / "runs" / "t" / "G_AB.safetensors")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", help="more clips to measure (their first --frames frames)")
    parser.add_argument("--steps", type=int, default=600, help="training steps of the demo's translator")
    parser.add_argument("--frames", type=int, default=32)
    args = parser.parse_args()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    units = sorted({u for u in ("amx_bf16", "avx512_bf16", "avx512_vnni") if u in flags}) or ["none of them"]
    print(f"CPU units: {', '.join(units)}; engine: torch fp32 on cpu, batch {BATCH}")
    with tempfile.TemporaryDirectory() as tmp:
        fresh = init_weights(ResnetGenerator(ngf=16, n_blocks=3)).eval()
        generators = {"trained": trained_generator(args.steps, Path(tmp)), "fresh": fresh}
    for label, generator in generators.items():
        source = ModelSource(Path(label), "AtoB", generator=generator)
        engine = registry.load("engines", "torch")(source, device="cpu", precision="fp32", batch_size=BATCH)
        still, region = still_clip(args.frames, 256, 256)
        report(f"[{label}] still camera", engine, still, region)
        report(f"[{label}] camera pan", engine, pan_clip(args.frames, 256, 256), None)
        hd, hd_region = still_clip(8, 720, 1280)
        report(f"[{label}] still camera 1280x720", engine, hd, hd_region)
        for clip in args.clips:
            report(f"[{label}] {clip}", engine, read_clip(clip, args.frames), None)


if __name__ == "__main__":
    main()
