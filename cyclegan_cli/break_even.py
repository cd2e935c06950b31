"""The measured figures behind ``--engine auto``: after how much work compiling, or quantizing at start, repays.

Work is counted in megapixel-frames (frames x width x height / 1e6; 256x256 is 0.066, 720p 0.92). Each figure is a
break-even measured with ``benchmarks/run_throughput.py`` on one kind of CPU (2 cores, the full generator), with
its source; the rule acts at :data:`INT8_AT_START_FACTOR` times the break-even, so that the job's frames being
decoded first and a slower machine of the same kind still leave a gain. A kind not measured borrows a measured
kind's figure and says so. The rule is in :mod:`cyclegan_cli.engine_choice`; ``cyc doctor`` and ``cyc run --help``
read their numbers from here. Imports nothing.
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
    """Where int8 quantized at start has saved the time it cost, on one kind of CPU, against the precision it
    replaces there (what ``--engine auto`` would run otherwise)."""

    cpu: str  # the kind, in words
    against: str  # bf16 or fp32
    megapixel_frames: float
    source: str  # where and how it was measured, or "not measured" and whose figure it borrows

    @property
    def threshold(self) -> float:
        return INT8_AT_START_FACTOR * self.megapixel_frames


# Keyed by the CPU's bf16 unit (devices.cpu_bf16_unit), on CPUs that have an int8 unit (VNNI or AMX).
INT8_BREAK_EVEN = {
    "AMX": Int8BreakEven(
        "Xeon with AMX",
        "bf16",
        65.0,
        "measured on a 2-core AMX Xeon: OpenVINO bf16 9.0x eager at 256x256 and 10.5x at 720p, int8 12.6x and 13.5x; "
        "quantizing repays after 54 (256x256) to 65 (720p) megapixel-frames",
    ),
    "AVX512-BF16": Int8BreakEven(
        "CPU with AVX512-BF16 and VNNI, no AMX",
        "bf16",
        7.4,
        "measured on a 2-core AMD EPYC, 256x256: 14.5 s to the first int8 frame against 1.6 for bf16, then 0.129 s "
        "a frame against 0.243",
    ),
    None: Int8BreakEven(
        "CPU with VNNI and no bf16 unit",
        "fp32",
        2.3,
        "not measured: the AMD EPYC's figure against fp32 (14.5 s against 2.3 to the first frame, then 0.129 s a "
        "frame against 0.483)",
    ),
}


def int8_break_even(bf16_unit: str | None) -> Int8BreakEven:
    """The figure for a CPU with an int8 unit and this bf16 unit ("AMX", "AVX512-BF16" or None)."""
    return INT8_BREAK_EVEN.get(bf16_unit, INT8_BREAK_EVEN[None])
