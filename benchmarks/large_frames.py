"""Large frames: strips with the whole frame's norm statistics against the whole frame at once, on real photographs.

The pictures are made from real photographs (scikit-image's astronaut, coffee, rocket and chelsea, one per
quarter, resized with OpenCV's bicubic filter) at 2048x2048, 3840x2160 and 7680x4320. The generator is the
full-size teacher of ``benchmarks/distill.py`` (trained there for 8 minutes, kept in ``--work``; the same folder
reuses it).

Stages (``--stages``, comma-separated):

* ``fidelity``: at 2048x2048 and 3840x2160 (sizes that fit whole on 24 GB), the whole frame in eager fp32, strips
  of ``--rows`` with the whole frame's statistics, and plain strips (each translated alone, with its own
  statistics, as tiling is usually done): PSNR against the whole frame, the largest difference, the seam measure
  (the mean absolute difference between the rows on either side of a strip border, against that of all rows)
  and the time of strips against the whole frame.
* ``memory``: whole ``cyc run`` processes with ``--engine torch``: the peak resident memory (of the process, read
  by its parent) translating the 7680x4320 picture with the free memory the machine has (cyc chooses strips), and
  the estimate cyc made.
* ``video`` (not run by default): the memory a video's frames in flight take (the pipeline's queues, the
  encoder's lookahead): bigbuckbunny resized to 3840x2160 through ``cyc run`` in OpenVINO fp32, its first frame
  alone and ``--video-frames`` frames, with ``--video-checkpoint`` (a distilled student keeps it to minutes).

Run it alone (two cores: any other busy process makes the times worthless; the memory figures hold anyway):

    python benchmarks/large_frames.py --work /tmp/distill-bench [--stages fidelity,memory] [--rows 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.distill import make_teacher  # noqa: E402

SIZES = ((2048, 2048), (3840, 2160))
PHOTOS = ("astronaut", "coffee", "rocket", "chelsea")
CYC = [sys.executable, "-m", "cyclegan_cli"]


def picture(width: int, height: int) -> np.ndarray:
    """Four real photographs, one per quarter."""
    import cv2
    import skimage.data

    out = np.zeros((height, width, 3), np.uint8)
    for i, name in enumerate(PHOTOS):
        row, col = divmod(i, 2)
        x0, x1, y0, y1 = col * width // 2, (col + 1) * width // 2, row * height // 2, (row + 1) * height // 2
        out[y0:y1, x0:x1] = cv2.resize(
            getattr(skimage.data, name)()[..., :3], (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC
        )
    return out


def seam_ratio(image: np.ndarray, borders: list[int]) -> float:
    """The mean absolute difference across the strip borders (row b-1 to row b) over that of all rows."""
    steps = np.abs(np.diff(image.astype(np.float64), axis=0)).mean(axis=(1, 2))
    return float(steps[[b - 1 for b in borders]].mean() / steps.mean())


def fidelity(teacher: Path, rows: int) -> None:
    import torch

    from cyclegan_cli.framing import to_input_tensor, to_uint8_frames
    from cyclegan_cli.measured import PICTURE_PEAK_TO_PEAK, psnr_of
    from cyclegan_cli.models.weights import load_generator
    from cyclegan_cli.translation.strips import translate_in_strips

    net, _ = load_generator(teacher)
    net.eval()

    def whole(image: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x, size = to_input_tensor(image[None], "cpu", torch.float32, channels_last=True)
            return to_uint8_frames(net.to(memory_format=torch.channels_last)(x), size)[0]

    for width, height in SIZES:
        image = picture(width, height)
        started = time.perf_counter()
        expected = whole(image)
        whole_s = time.perf_counter() - started
        started = time.perf_counter()
        ours = translate_in_strips(net, image, rows)
        strips_s = time.perf_counter() - started
        plain = np.concatenate([whole(image[top : top + rows]) for top in range(0, height, rows)])
        borders = list(range(rows, height, rows))
        for name, got in (("whole-frame statistics", ours), ("own statistics (plain)", plain)):
            difference = np.abs(got.astype(int) - expected.astype(int))
            print(
                f"{width}x{height}, strips of {rows} rows, {name}: {psnr_of(got, expected, PICTURE_PEAK_TO_PEAK):.2f} dB "
                f"against the whole frame, largest difference {difference.max()}, seam ratio {seam_ratio(got, borders):.3f} "
                f"(the whole frame's at the same rows: {seam_ratio(expected, borders):.3f})",
                flush=True,
            )
        print(
            f"{width}x{height}: whole frame {whole_s:.1f} s, strips {strips_s:.1f} s ({strips_s / whole_s:.2f}x)",
            flush=True,
        )


def memory_stage(work: Path, teacher: Path) -> None:
    from PIL import Image

    path = work / "photo_7680x4320.png"
    if not path.is_file():
        Image.fromarray(picture(7680, 4320)).save(path)
    command = [*CYC, "run", str(path), "--checkpoint", str(teacher), "--engine", "torch", "--precision", "fp32",
               "--out", str(work / "large-out"), "--overwrite"]  # fmt: skip
    code, peak, seconds, lines = peak_of(command)
    print(
        f"7680x4320 through cyc run (torch fp32): exit {code}, peak {peak / 2**30:.2f} GB, {seconds:.0f} s", flush=True
    )
    print("\n".join(lines))
    if code == 0:
        got = np.asarray(Image.open(next((work / "large-out").iterdir())))
        rows = next((int(w) for line in lines for w, n in zip(line.split(), line.split()[1:]) if n == "rows,"), None)
        if rows:
            print(f"seam ratio at the strip borders: {seam_ratio(got, list(range(rows, 4320, rows))):.3f}")


def peak_of(command: list[str]) -> tuple[int, int, float, list[str]]:
    """(exit code, peak resident bytes, seconds, what it said of strips and its engine) of a whole process, its
    peak read by its parent."""
    wrapper = (
        "import json, resource, subprocess, sys, time; t = time.perf_counter();"
        "done = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True);"
        "print(json.dumps([done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,"
        " time.perf_counter() - t, done.stderr[-3000:]]))"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, json.dumps(command)], capture_output=True, text=True)
    code, peak, seconds, said = json.loads(out.stdout)
    return code, peak, seconds, [line for line in said.splitlines() if "strips" in line or "engine" in line]


def video_stage(work: Path, checkpoint: Path, frames: int) -> None:
    """bigbuckbunny (1280x720, with its sound) resized to 3840x2160 through cyc run in OpenVINO fp32: the peak of
    ``frames`` frames against the peak of its first frame alone, and the estimate of the frames in flight."""
    from benchmarks.distill import clip
    from cyclegan_cli.translation.memory import stream_bytes
    from cyclegan_cli.translation.pipeline import queue_frames

    peaks = {}
    for count in (1, frames):
        command = [*CYC, "run", str(clip("bigbuckbunny.mp4")), "--checkpoint", str(checkpoint), "--size", "3840x2160",
                   "--max-frames", str(count), "--engine", "openvino", "--precision", "fp32",
                   "--out", str(work / f"video-4k-{count}.mp4"), "--overwrite"]  # fmt: skip
        code, peaks[count], seconds, _ = peak_of(command)
        print(f"{count} frames at 3840x2160: exit {code}, peak {peaks[count] / 2**30:.2f} GiB, {seconds:.0f} s")
    estimate = stream_bytes(3840, 2160, frames, True, queue_frames(3840, 2160))
    print(f"frames in flight: {(peaks[frames] - peaks[1]) / 1e9:.2f} GB measured, {estimate / 1e9:.2f} GB estimated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--stages", default="fidelity,memory")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--video-checkpoint", type=Path, help="the generator of the video stage (default: the teacher)")
    parser.add_argument("--video-frames", type=int, default=60)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    teacher = make_teacher(args.work, 8)
    stages = args.stages.split(",")
    if "fidelity" in stages:
        fidelity(teacher, args.rows)
    if "memory" in stages:
        memory_stage(args.work, teacher)
    if "video" in stages:
        video_stage(args.work, args.video_checkpoint or teacher, args.video_frames)


if __name__ == "__main__":
    main()
