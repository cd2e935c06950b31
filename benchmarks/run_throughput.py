"""Inference throughput of every engine and precision, as ratios against eager fp32 in the same process; int8
fidelity on trained generators; the at-start break-even of int8; short jobs through ``cyc run``.

    python benchmarks/run_throughput.py                 # 256x256 and 1280x720, a full generator trained here
    python benchmarks/run_throughput.py --sizes 256x256 --seconds 5 --full-steps 0 --demo-steps 0   # quick

Run it alone: on 2 cores PyTorch's and OpenVINO's threads collapse when another process wants the same cores.

1. Generators, trained here on real photographs that scikit-image ships (the demo's data: colour photos -> grayscale
   ones): the demo's run (ngf 16, 3 blocks, ``--demo-steps``) and a full-size one (ngf 64, 9 blocks,
   ``--full-steps`` at a ``--full-crop`` crop); the minutes each took are printed. ``--full-steps 0`` uses a
   randomly initialised full-size generator instead (its int8 fidelity is then that of an untrained one).
2. int8 fidelity: each generator quantized with the recipe of ``cyc export --int8`` (``cyclegan_cli.export.quantize``) on
   crops of real photos, measured against OpenVINO fp32 on held-out ones (PSNR, max abs error).
3. For each engine and precision, with the full-size generator: time to first frame (building, compiling, and for
   int8 quantized at run time the quantization, included), then steady frames/s at batch 1, and the ratio to
   eager fp32 batch 1 one-frame-at-a-time (what the reference test script does). int8 appears twice: prebuilt
   (``cyc export --int8``: only loading and compiling before the first frame) and quantized at start.
4. The break-even of quantizing at start: its extra time before the first frame over what int8 saves per
   megapixel-frame, against OpenVINO fp32 (CPUs without bf16) and bf16: the figures of ``cyclegan_cli/translation/break_even.py``
   (one row per kind of CPU, with its source; a new kind measured here gets its own row).
5. End to end through ``cyc run``'s pipeline on a real video the benchmark writes: pipeline efficiency =
   end-to-end frames/s over engine-only frames/s; then 64-frame 256x256 jobs in fresh processes: eager fp32,
   ``--engine auto`` without an export, ``--precision int8`` (quantized at start), and ``--engine auto`` with a
   prebuilt int8 model; the goal (>= 3x eager with start-up, >= 5x steady, >= 30 dB) is checked and printed.

Not run in CI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cyclegan_cli import registry  # noqa: E402
from cyclegan_cli.devices import cpu_bf16_unit, cpu_int8_path, cpu_kind  # noqa: E402
from cyclegan_cli.export import quantize  # noqa: E402
from cyclegan_cli.export.openvino_graph import save_openvino_model  # noqa: E402
from cyclegan_cli.models.architectures import ResnetGenerator, init_weights  # noqa: E402
from cyclegan_cli.plugin_api import ModelSource, WriteOptions  # noqa: E402
from cyclegan_cli.translation.break_even import INT8_BREAK_EVEN, cpu_class  # noqa: E402

CANDIDATES = [
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),  # prebuilt: the model cyc export --int8 writes
    ("openvino", "int8 at start"),  # quantized before the first frame, as cyc run does without a prebuilt one
    ("torch-compile", "fp32"),
    ("torch-compile", "bf16"),
]
GOAL_START, GOAL_STEADY, GOAL_PSNR = 3.0, 5.0, 30.0
# On an AVX2-only CPU int8 has no dot-product unit: the goal there is 2x eager for the whole short job.
GOAL_START_BY_KIND = {"AVX2 only": 2.0}


# --- data and generators ---------------------------------------------------------------------------------------


def write_photos(folder: Path) -> tuple[Path, Path]:
    """Real photographs (scikit-image) as the demo splits them: (training data root, a folder of held-out colour
    photo crops at 256x256 for calibration and measurement)."""
    from PIL import Image

    from cyclegan_cli import demo

    rng = np.random.default_rng(0)
    colour, gray = demo._photos(demo.COLOUR), demo._photos(demo.GRAY)
    demo._crops(colour[:-1], folder / "data" / "trainA", rng)
    demo._crops(gray[:-1], folder / "data" / "trainB", rng)
    crops = folder / "photos"
    crops.mkdir(parents=True)
    for p, photo in enumerate(colour):
        height, width = photo.shape[:2]
        for c in range(8):
            top, left = rng.integers(0, height - 256), rng.integers(0, width - 256)
            Image.fromarray(photo[top : top + 256, left : left + 256]).save(crops / f"{p:02d}_{c}.png")
    return folder / "data", crops


def train(data: Path, runs: Path, name: str, steps: int, args: list[str]) -> float:
    """``cyc train`` in a fresh process; returns the minutes it took."""
    command = [sys.executable, "-m", "cyclegan_cli", "train", str(data), "--name", name, "--out", str(runs)]
    command += ["--max-steps", str(steps), "--save-every", str(steps), "--sample-every", str(10 * steps)]
    command += ["--device", "cpu", *args]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return (time.perf_counter() - started) / 60


def load(run: Path):
    from cyclegan_cli.models.weights import load_generator

    return load_generator(run, "AtoB")


# --- int8 fidelity ---------------------------------------------------------------------------------------------


def fidelity(generator, photos: Path, frames: int = quantize.EXPORT_FRAMES) -> quantize.Fidelity:
    calibration = quantize.calibration_from_files(quantize.media_files(photos), str(photos), frames)
    return quantize.quantize_generator(generator, calibration, 0.0)[1]


def describe(fidelity: quantize.Fidelity) -> str:
    return (
        f"{fidelity.psnr_db:.1f} dB PSNR against fp32 on {fidelity.frames} held-out crops, max abs error "
        f"{fidelity.max_abs_error:.3f} ({'at or above' if fidelity.psnr_db >= GOAL_PSNR else 'BELOW'} {GOAL_PSNR:g} dB)"
    )


# --- engines ---------------------------------------------------------------------------------------------------


def int8_model(model: ModelSource, photos: Path, tmp: Path) -> ModelSource:
    """The generator quantized as ``cyc run`` does at start (AT_START_FRAMES crops), saved, as a ModelSource."""
    calibration = quantize.calibration_from_files(quantize.media_files(photos), "photos", quantize.AT_START_FRAMES)
    int8, _ = quantize.quantize_generator(model.generator, calibration, 0.0)
    xml = tmp / f"bench-{time.monotonic_ns()}.int8.xml"
    save_openvino_model(int8, xml, {})
    return ModelSource(path=xml, direction="AtoB", exported=xml)


def measure(name, precision, model, frame, seconds, photos, tmp) -> dict:
    """Time to first frame (int8 at start: quantizing included; prebuilt int8: made before the clock starts),
    then steady frames/s."""
    cls = registry.load("engines", name)
    if precision == "int8":
        model = int8_model(model, photos, tmp)
    started = time.perf_counter()
    if precision == "int8 at start":
        model, precision = int8_model(model, photos, tmp), "int8"
    engine = cls(model, device="cpu", precision=precision)
    engine(frame)
    first = time.perf_counter() - started
    count, started = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - started < seconds:
        engine(frame)
        count += 1
    return {"first": first, "fps": count / (time.perf_counter() - started)}


def throughput_table(model: ModelSource, sizes, seconds: float, photos: Path, tmp: Path, candidates) -> dict:
    rng = np.random.default_rng(0)
    results = {}
    for width, height in sizes:
        frame = rng.integers(0, 256, size=(1, height, width, 3), dtype=np.uint8)
        print(f"\n{width}x{height}, batch 1, {torch.get_num_threads()} threads")
        print(f"{'engine':<15}{'precision':<14}{'first frame s':>14}{'frames/s':>10}{'s/frame':>9}{'x eager fp32':>14}")
        baseline = None
        for name, precision in candidates:
            if registry.load("engines", name).unavailable_reason():
                continue
            if precision.startswith("int8") and quantize.nncf_unavailable_reason():
                continue
            result = measure(name, precision, model, frame, seconds, photos, tmp)
            baseline = baseline or result["fps"]
            result["ratio"] = result["fps"] / baseline
            results[(width, height, name, precision)] = result
            print(
                f"{name:<15}{precision:<14}{result['first']:>14.1f}{result['fps']:>10.2f}"
                f"{1 / result['fps']:>9.3f}{result['ratio']:>14.2f}"
            )
    return results


def break_even(results: dict, sizes) -> None:
    """Megapixel-frames after which quantizing at start has paid for itself, against OpenVINO fp32 and bf16, and
    a prebuilt int8 model's steady speed-up over each: the two figures of this kind's row in break_even.py."""
    kind = cpu_class(cpu_int8_path(), cpu_bf16_unit())
    row = INT8_BREAK_EVEN.get(kind)
    print(f"\nint8 on this kind of CPU ({kind or 'no AVX2: no int8 row'}): ", end="")
    if row is not None:
        state = "measured" if row.measured else "borrowed"
        print(f"the table's row ({state}) says {row.speedup:g}x {row.against}, break-even {row.megapixel_frames:g}")
    print("int8 quantized at start: break-even against what it replaces (megapixel-frames of the whole job)")
    for width, height in sizes:
        at_start = results.get((width, height, "openvino", "int8 at start"))
        prebuilt = results.get((width, height, "openvino", "int8"))
        megapixels = width * height / 1e6
        for other in ("fp32", "bf16"):
            rival = results.get((width, height, "openvino", other))
            if rival is None:
                continue
            if prebuilt is not None:
                speedup = prebuilt["fps"] / rival["fps"]
                print(f"  {width}x{height}: prebuilt int8 runs {speedup:.2f}x openvino {other} (steady frames/s)")
            if at_start is None:
                continue
            extra = at_start["first"] - rival["first"]
            saved = 1 / rival["fps"] - 1 / at_start["fps"]
            if saved <= 0:
                print(f"  {width}x{height} against openvino {other}: int8 is not faster here; never repays")
                continue
            frames = max(extra, 0.0) / saved
            print(
                f"  {width}x{height} against openvino {other}: {extra:.1f} s more before the first frame, "
                f"{saved:.3f} s saved per frame: repays after {frames:.0f} frames = {frames * megapixels:.1f} "
                "megapixel-frames"
            )


# --- end to end ------------------------------------------------------------------------------------------------


def make_video(path: Path, frames: int, width: int, height: int) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=48000)
        y, x = np.mgrid[0:height, 0:width]
        for i in range(frames):
            rgb = np.stack([(x + 4 * i) % 256, (y + 2 * i) % 256, (x + y) % 256], axis=-1).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        samples = int(48000 * frames * 1001 / 30000)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)[None]
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(tone[:, start : start + 1024]), format="fltp", layout="mono"
            )
            chunk.sample_rate, chunk.pts = 48000, start
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))
        container.mux(stream.encode(None))


def end_to_end(model: ModelSource, engine_name: str, precision: str, video: Path, out: Path) -> tuple[float, float]:
    """(end-to-end frames/s, engine-only frames/s) of one video through the pipeline."""
    from cyclegan_cli.translation.jobs import plan_jobs
    from cyclegan_cli.translation.pipeline import Pipeline

    engine = registry.load("engines", engine_name)(model, device="cpu", precision=precision)
    engine.warmup(*_video_size(video)[::-1])
    plan = plan_jobs([str(video)], direction="AtoB", out=str(out), overwrite=True)
    stats = Pipeline(engine, WriteOptions()).run(plan.jobs)
    return stats.fps, stats.frames / stats.engine_seconds


def _video_size(video: Path) -> tuple[int, int]:
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        return stream.width, stream.height


def cyc(*args: str) -> tuple[float, str]:
    """Wall time of a ``cyc`` command in a fresh process (start-up and compilation included), and its engine line."""
    started = time.perf_counter()
    environment = {**os.environ, "COLUMNS": "1000"}  # the engine line unwrapped
    command = [sys.executable, "-m", "cyclegan_cli", *args]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - started
    line = next((line for line in done.stderr.splitlines() if line.startswith("engine:")), "")
    return seconds, line


def short_job(runs: Path, video: Path, out: Path, engine: str, precision: str, gate: float) -> tuple[float, str]:
    options = ["--engine", engine, "--precision", precision, "--device", "cpu", "--overwrite", "--min-psnr", str(gate)]
    return cyc("run", str(video), "--runs-dir", str(runs), "--out", str(out), *options)


# --- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256x256,1280x720", help="comma-separated WxH list")
    parser.add_argument("--seconds", type=float, default=8.0, help="steady-state time per measurement")
    parser.add_argument("--video-frames", type=int, default=64, help="frames of the end-to-end and short-job video")
    parser.add_argument("--demo-steps", type=int, default=600, help="training steps of the demo's run (0: skip)")
    parser.add_argument("--full-steps", type=int, default=200, help="training steps of the full-size generator")
    parser.add_argument("--full-crop", type=int, default=64, help="crop size the full-size generator trains at")
    parser.add_argument(
        "--candidates",
        default=",".join(f"{n}:{p}" for n, p in CANDIDATES),
        help="comma-separated engine:precision list to time (default: all; the first is the baseline)",
    )
    args = parser.parse_args()
    candidates = [tuple(item.split(":", 1)) for item in args.candidates.split(",")]
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    from importlib.metadata import version

    print(f"CPU: {cpu_kind()}; torch {torch.__version__} with {torch.get_num_threads()} threads", end="")
    print(f", OpenVINO {version('openvino')}, NNCF {quantize._version('nncf')}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["CYC_CACHE_DIR"] = str(tmp / "cache")  # cold int8 cache: at-start quantization is measured
        data, photos = write_photos(tmp)
        runs = tmp / "runs"

        # 1-2. trained generators and their int8 fidelity on real photos
        print("\nint8 fidelity against OpenVINO fp32 on held-out crops of real photos (scikit-image):")
        if args.demo_steps:
            minutes = train(data, runs, "demo", args.demo_steps, ["--ngf", "16", "--n-blocks", "3"] + _demo_sizes())
            demo_generator, _ = load(runs / "demo")
            print(f"  demo's run (ngf 16, 3 blocks, {args.demo_steps} steps, {minutes:.1f} min to train): ", end="")
            print(describe(fidelity(demo_generator, photos)))
        if args.full_steps:
            crop = ["--crop-size", str(args.full_crop), "--load-size", str(args.full_crop * 9 // 8)]
            minutes = train(data, runs, "full", args.full_steps, crop)
            generator, _ = load(runs / "full")
            label = f"full size (ngf 64, 9 blocks, {args.full_steps} steps at {args.full_crop} px, {minutes:.1f} min)"
        else:
            torch.manual_seed(0)
            generator = init_weights(ResnetGenerator()).eval()
            label = "full size, untrained (random init)"
        full_fidelity = fidelity(generator, photos)
        print(f"  {label}: {describe(full_fidelity)}")

        # 3-4. engines, and the break-even of quantizing at start
        model = ModelSource(path=Path("bench"), direction="AtoB", generator=generator)
        results = throughput_table(model, sizes, args.seconds, photos, tmp, candidates)
        break_even(results, sizes)

        # 5. the pipeline, and short jobs in fresh processes
        video = tmp / "clip.mp4"
        make_video(video, args.video_frames, 256, 256)
        at_256 = {k[2:]: v for k, v in results.items() if k[:2] == (256, 256) and k[3] != "int8 at start"}
        name, precision = max(at_256, key=lambda k: at_256[k]["fps"]) if at_256 else ("torch", "fp32")
        best_model = int8_model(model, photos, tmp) if precision == "int8" else model
        e2e, engine_only = end_to_end(best_model, name, precision, video, tmp / "out.mp4")
        print(f"\npipeline, {args.video_frames} frames 256x256 with audio, {name} {precision}:")
        print(
            f"  end to end {e2e:.2f} frames/s, engine alone {engine_only:.2f} frames/s, "
            f"efficiency {e2e / engine_only:.2f}"
        )

        bench_runs = tmp / "bench-runs"  # one run: the full-size generator both ways
        bench = bench_runs / "bench"
        (bench / "checkpoints").mkdir(parents=True)
        state = generator.state_dict()
        torch.save(
            {
                "format": "cyc-checkpoint",
                "config": {"ngf": 64, "n_blocks": 9},
                "models": {"G_AB": state, "G_BA": state},
                "step": args.full_steps,
            },
            bench / "checkpoints" / "last.pt",
        )
        # An untrained generator falls below the gate: its speed is still measured, with the gate at 0 (and said).
        gate = GOAL_PSNR if full_fidelity.psnr_db >= GOAL_PSNR else 0.0
        print(f"\nshort job, {args.video_frames} frames 256x256, `cyc run` wall time in a fresh process:")
        if gate != GOAL_PSNR:
            print(f"  (int8 of this generator is below {GOAL_PSNR:g} dB: --min-psnr 0 for these speed figures)")
        eager, _ = short_job(bench_runs, video, tmp / "eager.mp4", "torch", "fp32", gate)
        print(f"  eager fp32 {eager:.1f} s")
        for label, engine, prec in (("auto, no export", "auto", "auto"), ("int8 at start", "auto", "int8")):
            try:
                seconds, line = short_job(bench_runs, video, tmp / "o.mp4", engine, prec, gate)
            except subprocess.CalledProcessError as error:
                print(f"  {label}: failed ({error.stderr.strip().splitlines()[-1]})")
                continue
            print(f"  {label}: {seconds:.1f} s, {eager / seconds:.2f}x eager   [{line}]")
            _clear_cache(tmp / "cache")
        export = ["export", str(bench), "--int8", "--direction", "AtoB", "--calibration", str(photos)]
        export_s, _ = cyc(*export, "--device", "cpu", "--min-psnr", str(gate))
        seconds, line = short_job(bench_runs, video, tmp / "o.mp4", "auto", "auto", gate)
        start_ratio = eager / seconds
        print(
            f"  auto, prebuilt int8 (cyc export --int8 took {export_s:.0f} s): {seconds:.1f} s, {start_ratio:.2f}x eager"
        )
        print(f"    [{line}]")

        steady = results.get((256, 256, "openvino", "int8"))
        eager_fps = results.get((256, 256, "torch", "fp32"))
        if steady and eager_fps:
            steady_ratio = steady["fps"] / eager_fps["fps"]
            kind = cpu_class(cpu_int8_path(), cpu_bf16_unit())
            goal = GOAL_START_BY_KIND.get(kind, GOAL_START)
            print(
                f"\ngoal on {kind or 'a CPU without AVX2'}: prebuilt int8 >= {goal:g}x eager with start-up "
                f"({start_ratio:.2f}x: {'met' if start_ratio >= goal else 'NOT met'}), >= {GOAL_STEADY:g}x "
                f"steady at 256x256 ({steady_ratio:.2f}x: {'met' if steady_ratio >= GOAL_STEADY else 'NOT met'}), "
                f">= {GOAL_PSNR:g} dB ({full_fidelity.psnr_db:.1f}: "
                f"{'met' if full_fidelity.psnr_db >= GOAL_PSNR else 'NOT met'})"
            )


def _demo_sizes() -> list[str]:
    return ["--load-size", "72", "--crop-size", "64"]


def _clear_cache(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
