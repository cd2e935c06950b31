"""Will a frame fit? The peak memory of translating one frame, estimated from measured figures, against what the
device has free; and, for a frame that does not fit whole, the strips it is translated in
(:mod:`cyclegan_cli.translation.strips`).

The figures are peak resident memory of processes translating real photographs, fitted as a constant (Python,
torch, the engine's libraries) plus bytes per pixel, for the full generator (ngf 64; a generator's activations
scale with its width, so the per-pixel part is scaled by ngf / 64); docs/internals.md, "Large frames", says how
they were measured, and a test checks the estimate against a real peak. An engine or precision not measured takes
the largest figures: a frame is sent to strips too early rather than too late.

No torch here (``--help`` and planning stay light); the CUDA device's free memory is asked of torch only then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cyclegan_cli.errors import CycError, UsageError

GIB = 2**30
# (engine, precision) -> (bytes at the peak with no frame: Python, torch, the engine; bytes per pixel of the frame),
# full generator, whole frame at once. Fitted to whole cyc run processes on 1024x1024 and 2048x2048 photographs,
# 2-core AVX2-only AMD EPYC (torch fp32 1.52 and 4.04 GB; OpenVINO fp32 1.53 and 3.70; ONNX Runtime fp32 3.48 and
# 10.82: its memory arena keeps the largest activations' buffers).
WHOLE_FRAME: dict[tuple[str, str], tuple[float, float]] = {
    ("torch", "fp32"): (679e6, 800),
    ("openvino", "fp32"): (802e6, 690),
    ("onnxruntime", "fp32"): (1036e6, 2332),
}
# Strips (torch): fitted to translate_in_strips on a 2048x512 photograph with strips of 64 and 256 rows (peaks 844 and
# 1048 MiB, 615 without a frame): the process and a copy of the generator; the bottleneck (ngf bytes a pixel) and
# the frames kept whole; one strip's activations per pixel of the strip.
STRIPS_BASE_BYTES = 780e6
FRAME_BYTES_PER_PIXEL = 16  # uint8 frames: the decoded input, its padded copy, the output, the writer's copy
STRIP_BYTES_PER_PIXEL = 550
# A video's frames also wait in the encoder: libx264 (preset medium) held 164 bytes a pixel at 3840x2160 once its
# lookahead (about 40 frames) was full. Through cyc run, a 60-frame 3840x2160 video peaked 1.66 GB above its first
# frame alone (4.05 against 2.50 GiB; the distilled tiny student in OpenVINO fp32, 2-core AVX2-only EPYC), with 5
# frames in each of the pipeline's two queues (30 bytes a pixel): the encoder's share, rounded up, is this.
ENCODER_BYTES_PER_PIXEL = 170
HEADROOM = 0.8  # a frame goes whole when its estimate is at most this share of the free memory
STRIP_ROWS_CHOICES = (256, 128, 64, 32)  # strip heights tried in turn, largest first
# A strip's activations are kept within this where a strip height allows: taller strips repeat less work at their
# margins (a strip of 256 rows recomputes 9 % more in the encoder, 6 % in the residual blocks) but hold more.
STRIP_BUDGET = 512 * 2**20
ENV_AVAILABLE = "CYC_MEMORY_AVAILABLE"  # bytes (or e.g. "2G") to take as free instead of asking the device


class FrameTooLarge(CycError):
    """A frame that cannot be translated within the free memory, as asked (``--tile 0``) or at all."""

    exit_code = 1


@dataclass(frozen=True)
class FramePlan:
    """How frames of one size are translated: whole (``strip_rows`` None) or in strips of that many rows."""

    width: int
    height: int
    whole_bytes: int  # the estimated peak of the whole frame at once
    free_bytes: int
    strip_rows: int | None
    asked: bool = False  # strips because --tile asked for them

    def line(self) -> str:
        """What cyc says once for frames of this size when they go in strips."""
        why = (
            "as --tile asked"
            if self.asked
            else f"the whole frame at once would need about {gib(self.whole_bytes)}, {gib(self.free_bytes)} are free"
        )
        return (
            f"{self.width}x{self.height} frames in strips of {self.strip_rows} rows, with the whole frame's norm "
            f"statistics (the same output): {why}."
        )


def listed_sizes(sizes) -> str:
    """``(width, height)`` pairs (e.g. the keys of the strip plans) as ``1920x1080, 3840x2160``."""
    return ", ".join(f"{width}x{height}" for width, height in sizes)


def gib(size: float) -> str:
    return f"{size / GIB:.1f} GB"


def whole_frame_bytes(engine: str, precision: str, width: int, height: int, ngf: int = 64, frames: int = 1) -> int:
    """The estimated peak of translating ``frames`` frames of ``width`` x ``height`` at once (a batch). An engine's
    precision not measured takes its fp32 figures (no smaller: bf16 and int8 hold less); an engine not measured
    (torch-compile, TensorRT, another's) takes torch fp32's."""
    fallback = WHOLE_FRAME.get((engine, "fp32"), WHOLE_FRAME[("torch", "fp32")])
    base, per_pixel = WHOLE_FRAME.get((engine, precision), fallback)
    return int(base + per_pixel * ngf / 64 * width * height * frames)


def strip_bytes(width: int, height: int, strip_rows: int, ngf: int = 64) -> int:
    """The estimated peak of translating one frame in strips (torch): the bottleneck kept whole (``ngf`` bytes a
    pixel in fp32), the frame in and out, and one strip's activations."""
    whole = (ngf + FRAME_BYTES_PER_PIXEL) * width * height
    return int(STRIPS_BASE_BYTES + whole + STRIP_BYTES_PER_PIXEL * ngf / 64 * width * strip_rows)


def stream_bytes(width: int, height: int, frames: int, video: bool, queued: int) -> int:
    """What the frames around the one being translated hold: the pipeline's two queues (``queued`` frames each at
    most, and no more than the other frames of this size) and a video encoder's lookahead."""
    pixels = width * height
    queues = 2 * min(frames - 1, queued) * 3 * pixels
    return int(queues + (ENCODER_BYTES_PER_PIXEL * pixels if video else 0))


def plan_frames(
    engine: str,
    precision: str,
    width: int,
    height: int,
    free: int,
    tile: int | None,
    ngf: int = 64,
    batch: int = 1,
    stream: int = 0,
) -> FramePlan:
    """Whole or in strips: ``tile`` None chooses (strips only when a batch of whole frames would not fit), 0
    forbids strips (a frame that does not fit is :class:`FrameTooLarge`), N asks for strips of N rows. ``stream``:
    the bytes of the frames in flight (:func:`stream_bytes`), added to either way's estimate."""
    whole = whole_frame_bytes(engine, precision, width, height, ngf, batch) + stream
    if tile:
        return FramePlan(width, height, whole, free, max(4, tile // 4 * 4), asked=True)
    if whole <= HEADROOM * free:
        return FramePlan(width, height, whole, free, None)
    if tile == 0:
        raise FrameTooLarge(
            f"{width}x{height} frames need about {gib(whole)} at once and {gib(free)} are free: leave out --tile 0 "
            "to translate them in strips (the same output), or free memory"
        )
    fitting = [rows for rows in STRIP_ROWS_CHOICES if strip_bytes(width, height, rows, ngf) + stream <= HEADROOM * free]
    if not fitting:
        thinnest = strip_bytes(width, height, STRIP_ROWS_CHOICES[-1], ngf) + stream
        raise FrameTooLarge(
            f"{width}x{height} frames need about {gib(thinnest)} even in strips and {gib(free)} are free: resize "
            "them (--size) or free memory"
        )
    light = [rows for rows in fitting if STRIP_BYTES_PER_PIXEL * ngf / 64 * width * rows <= STRIP_BUDGET]
    rows = light[0] if light else fitting[-1]
    return FramePlan(width, height, whole, free, min(rows, height + (-height) % 4))


def parse_bytes(text: str) -> int:
    """``12345``, ``2G``, ``512M``, ``1.5GB`` -> bytes."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in units and not value[-1:].isdigit() else ""
    try:
        size = int(float(value[: len(value) - len(unit)]) * units[unit])
    except (ValueError, OverflowError):
        size = 0
    if size <= 0:
        raise UsageError(f"{ENV_AVAILABLE}={text}: give a positive number of bytes, e.g. 4000000000 or 4G")
    return size


def available_bytes(device: str) -> int:
    """The memory for a frame: the GPU's free memory on CUDA, else the RAM the kernel says is available (within
    this process's cgroup limit where one is set) and what this process holds already. ``CYC_MEMORY_AVAILABLE``
    overrides both."""
    if os.environ.get(ENV_AVAILABLE):
        return parse_bytes(os.environ[ENV_AVAILABLE])
    if device.startswith("cuda"):
        import torch

        index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        return int(torch.cuda.mem_get_info(index)[0])
    # this process's own memory (Python, torch, the model) is in the estimates' constant: count it as available,
    # but never more than the cgroup's limit (shared libraries already in the page cache are resident here without
    # being charged to this cgroup, so its usage can be below this process's resident size)
    room, limit = _cgroup_room()
    return min(min(_ram_available(), room) + _own_resident_bytes(), limit)


def _own_resident_bytes() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _ram_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _cgroup_room() -> tuple[int, int]:
    """What this process's memory cgroup leaves, and its limit (v2, else v1; no limit: very large numbers). The page
    cache it counts as used (inactive files) can be reclaimed, so it counts as free, as the kubelet counts it."""
    v2, v1 = _own_cgroups()
    for folder, limit_file, used_file, cache_key in (
        (v2, "memory.max", "memory.current", "inactive_file"),
        (v1, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
    ):
        try:
            limit = (folder / limit_file).read_text().strip()
            used = int((folder / used_file).read_text())
            lines = (folder / "memory.stat").read_text().splitlines()
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 2**60:  # v2 writes "max", v1 a number near 2**63
            return 2**62, 2**62
        cache = dict(line.split() for line in lines if line.count(" ") == 1)
        return max(0, int(limit) - used + int(cache.get(cache_key, 0))), int(limit)
    return 2**62, 2**62


def _own_cgroups() -> tuple[Path, Path]:
    """This process's cgroup folders, v2 and v1 memory (``/proc/self/cgroup``; inside a cgroup namespace, the
    mount's root)."""
    root = Path("/sys/fs/cgroup")
    v2, v1 = root, root / "memory"
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return v2, v1
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (root / path.lstrip("/")).is_dir():
            v2 = root / path.lstrip("/")
        elif "memory" in controllers.split(",") and (root / "memory" / path.lstrip("/")).is_dir():
            v1 = root / "memory" / path.lstrip("/")
    return v2, v1
