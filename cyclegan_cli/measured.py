"""Measured numbers, one rule each: PSNR, and a float written to JSON and read back.

PSNR: a broken output (NaN or infinite anywhere) is the worst fidelity there is, minus infinity, never the best;
identical outputs are plus infinity. JSON has no infinities or NaN: :func:`to_json` writes them as the strings
``"inf"``, ``"-inf"`` and ``"nan"`` (and rounds finite values), :func:`from_json` reads every one of them back as
the float it was, so that a failure written into a sidecar or a cache record is still a failure when it is read.
Imports nothing heavier than the standard library (numpy only inside :func:`psnr_of`).
"""

from __future__ import annotations

import math

GENERATOR_PEAK_TO_PEAK = 2.0  # a generator's outputs lie in [-1, 1]
PICTURE_PEAK_TO_PEAK = 255.0  # 8-bit pictures
_SPELLED = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def psnr(mse: float, peak_to_peak: float) -> float:
    """PSNR in dB from a mean squared error, for values spanning ``peak_to_peak`` (2 for [-1, 1], 255 for
    8-bit pictures): +inf for 0, -inf where the error is not finite (NaN or infinite outputs)."""
    if mse == 0:
        return math.inf
    if not math.isfinite(mse):
        return -math.inf
    return 10 * math.log10(peak_to_peak**2 / mse)


def squared_error(got, expected) -> tuple[float, int]:
    """(sum of squared differences, element count) of two arrays, in float64: summed over several pairs, the
    mean squared error for :func:`psnr`. NaN where either holds NaN."""
    import numpy as np

    diff = np.asarray(got, dtype=np.float64) - np.asarray(expected, dtype=np.float64)
    return float(np.sum(diff**2)), diff.size


def psnr_of(got, expected, peak_to_peak: float) -> float:
    """PSNR in dB of ``got`` against ``expected`` (arrays of one shape), from their mean squared error."""
    total, count = squared_error(got, expected)
    return psnr(total / max(count, 1), peak_to_peak)


def to_json(value: float, digits: int | None = None) -> float | str:
    """A float as JSON can hold it: finite values (rounded to ``digits`` where given) as numbers, the others as
    ``"inf"``, ``"-inf"`` or ``"nan"``."""
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return round(value, digits) if digits is not None else value


def from_json(value) -> float:
    """The float :func:`to_json` wrote (a number or one of its strings); ``ValueError`` for anything else."""
    if isinstance(value, str):
        if value not in _SPELLED:
            raise ValueError(f"not a number: {value!r}")
        return _SPELLED[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a number: {value!r}")
    return float(value)
