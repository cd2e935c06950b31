"""GPU check for the export and engine paths (not in CI): fp16 accuracy, a throughput table, `cyc run` on 1080p.

On a CUDA machine, in about 4 minutes at most, with a full-size generator (resnet_9blocks, ngf 64; random weights
unless ``--checkpoint`` names trained ones):

1. every fp16 path against PyTorch fp32 (TF32 off) on a test picture: PSNR of the uint8 outputs >= 35 dB;
2. frames/s, uint8 frames in and out as ``cyc run`` sees them, at 256x256 batch 1 and 8 and at 1920x1080 batch 1,
   for torch eager fp32, torch eager fp16, torch.compile fp16 (mode reduce-overhead: CUDA graphs), and ONNX Runtime
   CUDA fp16 and TensorRT fp16 (a real ``cyc export --format tensorrt --fp16``) where those are importable;
3. ``cyc run`` end to end on a 1080p clip made with PyAV (when PyAV is importable), through a subprocess.

Every row runs through the engine classes ``cyc run`` uses (entry points ``cyc.engines``). A row that cannot run
says why and the rest go on. Exit code 1 when an fp16 path misses 35 dB.

One line on the lent machine (carry PyAV as a wheel, fetched here first; the machine has no network):

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 -d .whl av==18.1.0
    pip install --no-index --no-deps --target /tmp/site .whl/*.whl && \
        PYTHONPATH=/tmp/site:. python benchmarks/gpu_check.py

(match ``--python-version`` to the machine's Python; ``--budget 240`` is the time limit in seconds.)
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIN_PSNR = 35.0
CELLS = [("256x256 b1", 256, 256, 1), ("256x256 b8", 256, 256, 8), ("1920x1080 b1", 1080, 1920, 1)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def make_run(root: Path, checkpoint: str | None) -> Path:
    """A run folder holding the generator to test (trained weights when given, else a random full-size one)."""
    import torch

    from cyclegan_cli.models.architectures import ResnetGenerator, init_weights
    from cyclegan_cli.models.weights import load_generator

    if checkpoint:
        generator, info = load_generator(checkpoint, "AtoB")
        config = {"ngf": info.ngf, "n_blocks": info.n_blocks, "domain_a": info.domain_a, "domain_b": info.domain_b}
    else:
        torch.manual_seed(0)
        generator = init_weights(ResnetGenerator())
        config = {"ngf": 64, "n_blocks": 9, "domain_a": "A", "domain_b": "B"}
    run = root / "gpu-check"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    state = generator.state_dict()
    torch.save(
        {"format": "cyc-checkpoint", "config": config, "models": {"G_AB": state, "G_BA": state}},
        run / "checkpoints" / "last.pt",
    )
    return run


def build_tensorrt(run: Path, say) -> str | None:
    """``cyc export --format tensorrt --fp16`` into the run; None when done, else why not."""
    from cyclegan_cli.export.exporter import ExportRequest, export_source, make_profile
    from cyclegan_cli.export.tensorrt_build import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason("cuda")
    if reason:
        return reason
    request = ExportRequest(
        source=str(run),
        direction="AtoB",
        format="tensorrt",
        precision="fp16",
        device="cuda",
        profile=make_profile("1x3x256x256", "1x3x1080x1920", "8x3x1088x1920"),
    )
    started = time.monotonic()
    export_source(request, say=say)
    say(f"TensorRT export + build: {time.monotonic() - started:.0f} s")
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="trained generator (default: random full-size weights)")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds for the whole check")
    parser.add_argument("--frames", type=int, default=48, help="frames in the 1080p clip for `cyc run`")
    args = parser.parse_args()
    start = time.monotonic()
    deadline = start + args.budget

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {msg}", flush=True)

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible; nothing to check", file=sys.stderr)
        return 2
    torch.backends.cudnn.allow_tf32 = False  # the reference is true fp32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    say(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")

    from cyclegan_cli import registry
    from cyclegan_cli.export.onnx_graph import synthetic_image
    from cyclegan_cli.models.weights import load_generator
    from cyclegan_cli.plugin_api import ModelSource

    work = Path(tempfile.mkdtemp(prefix="cyc-gpu-check-"))
    run = make_run(work, args.checkpoint)
    generator, info = load_generator(run, "AtoB")
    model = ModelSource(path=run, direction="AtoB", generator=generator, info=info)

    trt_reason = None
    try:
        trt_reason = build_tensorrt(run, say)
    except Exception as exc:  # noqa: BLE001 - report and go on: the other rows still mean something
        trt_reason = f"export/build failed: {type(exc).__name__}: {exc}"
    if trt_reason:
        say(f"tensorrt: {trt_reason}")

    rows = [
        ("torch eager fp32", "torch", "fp32"),
        ("torch eager fp16", "torch", "fp16"),
        ("torch.compile fp16 (CUDA graphs)", "torch-compile", "fp16"),
        ("onnxruntime CUDA fp16", "onnxruntime", "fp16"),
        ("tensorrt fp16", "tensorrt", "fp16"),
    ]
    reference = None
    table: list[tuple[str, list[str], str]] = []
    failed = False
    for label, name, precision in rows:
        if time.monotonic() > deadline - 30:
            table.append((label, ["-"] * len(CELLS), "skipped: out of time"))
            continue
        try:
            cls = registry.load("engines", name)
            reason = cls.unavailable_reason()
            if reason:
                table.append((label, ["-"] * len(CELLS), f"unavailable: {reason}"))
                continue
            cells = []
            quality = ""
            for index, (_cell, h, w, n) in enumerate(CELLS):
                engine = cls(model, device="cuda", precision=precision, batch_size=n)
                frames = np.repeat(synthetic_image(h, w)[None], n, axis=0)
                t0 = time.monotonic()
                out = engine(frames)  # compile / build / warm up for this shape
                first = time.monotonic() - t0
                if index == 0:  # accuracy on the 256x256 test picture, from this very engine (no extra compile)
                    if reference is None:
                        reference, quality = out, "reference"
                    else:
                        db = psnr(out, reference)
                        ok = db >= MIN_PSNR
                        failed |= precision == "fp16" and not ok
                        quality = f"PSNR {db:.1f} dB {'ok' if ok else 'FAIL'}"
                torch.cuda.synchronize()
                count, t0 = 0, time.monotonic()
                while count < 3 or (time.monotonic() - t0 < 2.0 and count < 200):
                    engine(frames)
                    count += 1
                fps = count * n / (time.monotonic() - t0)
                cells.append(f"{fps:8.1f} ({first:.1f}s)")
                del engine
            table.append((label, cells, quality))
        except Exception as exc:  # noqa: BLE001 - one row failing must not hide the others
            table.append((label, ["-"] * len(CELLS), f"failed: {type(exc).__name__}: {str(exc)[:160]}"))
        say(f"{label}: done")

    print()
    print("frames/s, uint8 host frames in and out (time to first batch in brackets); PSNR vs torch fp32 at 256x256")
    header = f"{'path':34s} " + " ".join(f"{c[0]:>18s}" for c in CELLS) + "  accuracy"
    print(header)
    print("-" * len(header))
    for label, cells, quality in table:
        print(f"{label:34s} " + " ".join(f"{c:>18s}" for c in cells) + f"  {quality}")
    print()

    run_cyc(run, work, args.frames, deadline, say)
    shutil.rmtree(work, ignore_errors=True)
    say("done" + (" (an fp16 path missed 35 dB)" if failed else ""))
    return 1 if failed else 0


def run_cyc(run: Path, work: Path, frames: int, deadline: float, say) -> None:
    """`cyc run` end to end on a 1080p clip with audio (made here with PyAV); tolerate a missing PyAV or command."""
    try:
        import av
    except ImportError:
        say("cyc run on 1080p: skipped, PyAV is not importable (see the docstring for carrying its wheel)")
        return
    if time.monotonic() > deadline - 20:
        say("cyc run on 1080p: skipped, out of time")
        return
    clip = work / "clip.mp4"
    with av.open(str(clip), "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 1920, 1080, "yuv420p"
        base = synthetic_image(1080, 1920)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 8 * i, axis=1), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    out = work / "clip_AtoB.mp4"
    command = [
        sys.executable,
        "-m",
        "cyclegan_cli",
        "run",
        str(clip),
        "--checkpoint",
        str(run),
        "--out",
        str(out),
        "--device",
        "cuda",
    ]
    say("cyc run: " + " ".join(command[2:]))
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=max(10, deadline - time.monotonic()),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except subprocess.TimeoutExpired:
        say("cyc run on 1080p: out of time")
        return
    seconds = time.monotonic() - t0
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
    if proc.returncode != 0:
        if "No such command" in proc.stderr or "Not written yet" in proc.stdout + proc.stderr:
            say("cyc run on 1080p: the run command is not available in this tree yet")
        else:
            say(f"cyc run on 1080p: exit {proc.returncode}:\n    " + "\n    ".join(tail))
        return
    with av.open(str(out)) as container:
        got = sum(1 for _ in container.decode(video=0))
    say(
        f"cyc run on 1080p: {frames} frames in {seconds:.1f} s end to end ({frames / seconds:.1f} frames/s "
        f"including start-up); output has {got} frames {'ok' if got == frames else 'MISMATCH'}"
    )
    for line in tail:
        print("    " + line)


def synthetic_image(h, w):  # re-exported for run_cyc without importing at module level
    from cyclegan_cli.export.onnx_graph import synthetic_image as make

    return make(h, w)


if __name__ == "__main__":
    sys.exit(main())
