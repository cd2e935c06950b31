"""Inference throughput of every engine and precision, as ratios against eager fp32 in the same process.

    python benchmarks/run_throughput.py                 # 256x256 and 1280x720, the full generator
    python benchmarks/run_throughput.py --sizes 256x256 --seconds 5

For each engine and precision: time to first frame (building and compiling included), then steady frames/s
at batch 1, and the ratio to eager fp32 batch 1 one-frame-at-a-time (what the reference test script does).
Then end to end through ``cyc run``'s pipeline on a real video the benchmark writes: pipeline efficiency =
end-to-end frames/s over engine-only frames/s; and a 64-frame job with ``--engine auto`` against eager fp32,
so the auto rule is judged on short jobs too, compilation included. Not run in CI.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cyclegan_cli import registry  # noqa: E402
from cyclegan_cli.models import ResnetGenerator, init_weights  # noqa: E402
from cyclegan_cli.plugin_api import ModelSource, WriteOptions  # noqa: E402

CANDIDATES = [
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("torch-compile", "fp32"),
    ("torch-compile", "bf16"),
]


def measure(engine_name: str, precision: str, model: ModelSource, frame: np.ndarray, seconds: float) -> dict:
    started = time.perf_counter()
    engine = registry.load("engines", engine_name)(model, device="cpu", precision=precision)
    engine(frame)
    first = time.perf_counter() - started
    count, started = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - started < seconds:
        engine(frame)
        count += 1
    return {"first": first, "fps": count / (time.perf_counter() - started), "engine": engine}


def throughput_table(model: ModelSource, sizes: list[tuple[int, int]], seconds: float) -> dict:
    rng = np.random.default_rng(0)
    best = {}
    for width, height in sizes:
        frame = rng.integers(0, 256, size=(1, height, width, 3), dtype=np.uint8)
        print(f"\n{width}x{height}, batch 1, {torch.get_num_threads()} threads")
        print(f"{'engine':<15}{'precision':<10}{'first frame s':>14}{'frames/s':>10}{'s/frame':>9}{'x eager fp32':>14}")
        baseline = None
        for name, precision in CANDIDATES:
            if registry.load("engines", name).unavailable_reason():
                continue
            result = measure(name, precision, model, frame, seconds)
            baseline = baseline or result["fps"]
            ratio = result["fps"] / baseline
            print(
                f"{name:<15}{precision:<10}{result['first']:>14.1f}{result['fps']:>10.2f}"
                f"{1 / result['fps']:>9.3f}{ratio:>14.2f}"
            )
            if ratio > best.get((width, height), (None, None, 0))[2]:
                best[(width, height)] = (name, precision, ratio, result["fps"])
    return best


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
    from cyclegan_cli.jobs import plan_jobs
    from cyclegan_cli.pipeline import Pipeline

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


def short_job(runs: Path, video: Path, out: Path, engine: str, precision: str) -> float:
    """Wall time of ``cyc run`` on the whole video in a fresh process: start-up and compilation included."""
    import subprocess

    command = [sys.executable, "-m", "cyclegan_cli", "run", str(video), "--runs-dir", str(runs), "--out", str(out)]
    command += ["--overwrite", "--engine", engine, "--precision", precision, "--device", "cpu"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256x256,1280x720", help="comma-separated WxH list")
    parser.add_argument("--seconds", type=float, default=8.0, help="steady-state time per measurement")
    parser.add_argument("--video-frames", type=int, default=64, help="frames of the end-to-end and short-job video")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    torch.manual_seed(0)
    generator = init_weights(ResnetGenerator()).eval()  # the full resnet_9blocks, ngf 64
    model = ModelSource(path=Path("bench"), direction="AtoB", generator=generator)
    best = throughput_table(model, sizes, args.seconds)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "clip.mp4"
        make_video(video, args.video_frames, 256, 256)
        name, precision, _, _ = best[(256, 256)] if (256, 256) in best else ("torch", "fp32", 0, 0)
        e2e, engine_only = end_to_end(model, name, precision, video, tmp / "out.mp4")
        print(f"\npipeline, {args.video_frames} frames 256x256 with audio, {name} {precision}:")
        print(
            f"  end to end {e2e:.2f} frames/s, engine alone {engine_only:.2f} frames/s, "
            f"efficiency {e2e / engine_only:.2f}"
        )

        runs = tmp / "runs"
        (runs / "bench" / "checkpoints").mkdir(parents=True)
        torch.save(
            {
                "format": "cyc-checkpoint",
                "config": {"ngf": 64, "n_blocks": 9},
                "models": {"G_AB": generator.state_dict(), "G_BA": generator.state_dict()},
            },
            runs / "bench" / "checkpoints" / "last.pt",
        )
        eager = short_job(runs, video, tmp / "eager.mp4", "torch", "fp32")
        auto = short_job(runs, video, tmp / "auto.mp4", "auto", "auto")
        print(f"\nshort job, {args.video_frames} frames 256x256, `cyc run` wall time in a fresh process:")
        print(f"  eager fp32 {eager:.1f} s, auto {auto:.1f} s, auto is {eager / auto:.2f}x faster")


if __name__ == "__main__":
    main()
