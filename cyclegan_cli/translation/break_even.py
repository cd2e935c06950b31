"""The measured figures behind ``--engine auto``: after how much work compiling, or quantizing at start, repays.

Work is counted in megapixel-frames (frames x width x height / 1e6; 256x256 is 0.066, 720p 0.92). Each figure is a
break-even measured with ``benchmarks/run_throughput.py`` on one kind of CPU (2 cores, the full generator), with
its source; the rule acts at :data:`INT8_AT_START_FACTOR` times the break-even, so that the job's frames being
decoded first and a slower machine of the same kind still leave a gain. A kind not measured borrows a measured
kind's figure and says so. Four kinds: AMX Xeons, AVX512-BF16 EPYCs, VNNI-only Xeons, and the commonest, AVX2-only
CPUs (most laptops and cloud instances), where int8 has no dot-product unit and still runs 1.75x fp32. The rule is
in :mod:`cyclegan_cli.translation.engine_choice`; ``cyc doctor`` and ``cyc run --help`` read their numbers from here. Imports
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

# Compile (torch-compile bf16, AMX only) pays off when one frame size has at least this many megapixel-frames:
# on a 2-core AMX Xeon at 256x256, OpenVINO bf16 0.15 s/frame, compiled bf16 0.084, about 25 s to compile: it
# repays after about 25 megapixel-frames; 40 leaves a margin for the recompiles of a last short batch.
COMPILE_MIN_MEGAPIXEL_FRAMES = 40.0

# The threshold for quantizing at start is this many times the measured break-even.
INT8_AT_START_FACTOR = 2.0


@dataclass(frozen=True)
class Int8BreakEven:
    """What int8 is worth on one kind of CPU, against the precision it replaces there (what ``--engine auto``
    would run otherwise): how much faster a ready int8 model runs, and where int8 quantized at start has saved
    the time it cost."""

    cpu: str  # the kind, in words
    against: str  # bf16 or fp32
    speedup: float  # a prebuilt int8 model's frames/s over ``against``'s (OpenVINO, full generator, 256x256)
    megapixel_frames: float  # the at-start break-even
    source: str  # where and how it was measured, or "not measured" and whose figure it borrows

    @property
    def threshold(self) -> float:
        return INT8_AT_START_FACTOR * self.megapixel_frames

    @property
    def measured(self) -> bool:
        return not self.source.startswith("not measured")

    @property
    def int8_faster(self) -> bool:
        return self.speedup > 1.0


# Keyed by the kind of CPU (:func:`cpu_class`). A CPU without AVX2 has no row: int8 is not used there.
INT8_BREAK_EVEN = {
    "AMX": Int8BreakEven(
        "Xeon with AMX",
        "bf16",
        1.40,
        65.0,
        "measured on a 2-core AMX Xeon: OpenVINO bf16 9.0x eager at 256x256 and 10.5x at 720p, int8 12.6x and 13.5x; "
        "quantizing repays after 54 (256x256) to 65 (720p) megapixel-frames",
    ),
    "AVX512-BF16": Int8BreakEven(
        "CPU with AVX512-BF16 and VNNI, no AMX",
        "bf16",
        1.88,
        7.4,
        "measured on a 2-core AMD EPYC, 256x256: 14.5 s to the first int8 frame against 1.6 for bf16, then 0.129 s "
        "a frame against 0.243",
    ),
    "VNNI only": Int8BreakEven(
        "CPU with VNNI and no bf16 unit",
        "fp32",
        2.83,
        2.3,
        "not measured: the AMD EPYC's figure against fp32 (14.5 s against 2.3 to the first frame, then 0.129 s a "
        "frame against 0.483); its speed-up is the VNNI-only Xeon's (0.162 s a frame against 0.458 fp32)",
    ),
    "AVX2 only": Int8BreakEven(
        "CPU with AVX2 and no VNNI, AMX or bf16 unit",
        "fp32",
        1.75,
        3.9,
        "measured on a 2-core AMD EPYC (Zen 3) with AVX2 only: OpenVINO int8 0.387 s a 256x256 frame against 0.678 "
        "fp32 (1.75x; 1.91x at 720p); quantizing at start costs 19.1 s more to the first frame and repays after "
        "3.9 (256x256) to 2.4 (720p) megapixel-frames",
    ),
}


def cpu_class(int8_path: str | None, bf16_unit: str | None) -> str | None:
    """The kind of CPU, as :data:`INT8_BREAK_EVEN` keys it, from its int8 path (:func:`devices.cpu_int8_path`) and
    bf16 unit (:func:`devices.cpu_bf16_unit`); None without AVX2."""
    if int8_path is None:
        return None
    if bf16_unit in ("AMX", "AVX512-BF16"):
        return bf16_unit
    return "AVX2 only" if int8_path == "AVX2" else "VNNI only"


def int8_break_even(kind: str | None) -> Int8BreakEven | None:
    """The figure for this kind of CPU (:func:`cpu_class`); None where int8 has no figure (no AVX2)."""
    return INT8_BREAK_EVEN.get(kind) if kind is not None else None
