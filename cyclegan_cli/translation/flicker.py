"""How steady a translated video is: the measures ``cyc run --stable`` is judged by.

Both ``benchmarks/temporal.py`` and the tests use these functions, so a figure in the docs and a bound in a test
mean the same thing.

Still-region change
    For each pair of consecutive frames t-1, t: the still mask is where the input's largest per-channel absolute
    change is below ``STILL_LEVEL`` grey levels, eroded by a ``STILL_ERODE`` square (away from moving edges);
    pairs with fewer than ``MIN_STILL_PIXELS`` still pixels are skipped. The video's still-region change is the
    mean over the pairs kept of the mean, over the mask, of the output's largest per-channel absolute change.
Warping error
    For each pair: the previous output warped to frame t along the input's optical flow (OpenCV DIS, medium
    preset), where the flow passes a forward-backward check, against output t: the mean absolute difference
    over those pixels, averaged over the pairs. It measures flicker where the camera or the scene moves.
PSNR to plain (:func:`psnr_to_plain`)
    PSNR (peak 255) of a stabilised output against the plain one, from the mean squared error over all frames:
    stability must not come from ignoring the input.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from cyclegan_cli.measured import PICTURE_PEAK_TO_PEAK, psnr_of

if TYPE_CHECKING:
    import numpy as np

STILL_LEVEL = 4  # grey levels: below this the input did not change
STILL_ERODE = 9  # pixels: the side of the square the still mask is eroded by
MIN_STILL_PIXELS = 1000  # a pair with fewer still pixels says nothing about still regions


def largest_channel_change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per pixel, the largest absolute change over the colour channels (uint8 frames, H x W x 3 -> H x W uint8).
    ``cyc run --stable`` tells still from moving by the same change (cyclegan_cli.translation.temporal)."""
    import cv2

    return cv2.absdiff(before, after).max(axis=2)


def still_mask(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Where the input did not change between two frames, away from anything that moved."""
    import cv2
    import numpy as np

    still = (largest_channel_change(before, after) < STILL_LEVEL).astype(np.uint8)
    kernel = np.ones((STILL_ERODE, STILL_ERODE), np.uint8)
    return cv2.erode(still, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1).astype(bool)


def still_region_change(inputs: np.ndarray, outputs: np.ndarray) -> tuple[float, float]:
    """The still-region change of ``outputs`` (the translations of ``inputs``), and the share of frame pairs
    that had enough still pixels to count (nan and 0.0 when none had)."""
    import numpy as np

    changes = []
    for t in range(1, len(inputs)):
        mask = still_mask(inputs[t - 1], inputs[t])
        if mask.sum() < MIN_STILL_PIXELS:
            continue
        changes.append(largest_channel_change(outputs[t - 1], outputs[t])[mask].mean())
    pairs = max(1, len(inputs) - 1)
    return (float(np.mean(changes)) if changes else float("nan")), len(changes) / pairs


@functools.cache
def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's own x and y (float32), for cv2.remap; one pair per frame size, reused."""
    import numpy as np

    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def checked_flow(flow, before: np.ndarray, now: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The optical flow from ``now`` back to ``before`` (two grey frames; for each pixel now, where it was), and
    where it is reliable (a bool mask): where it passes the forward-backward check (back along it, then forth
    along the flow from ``before`` to ``now``, lands where it began: ``|b + f|^2 <= 0.01 (|b|^2 + |f|^2) + 0.5``)
    and does not leave the frame. ``flow``: an OpenCV optical flow object (DIS)."""
    import cv2
    import numpy as np

    backward = flow.calc(now, before, None)
    forward = flow.calc(before, now, None)
    height, width = now.shape
    grid_x, grid_y = pixel_grid(height, width)
    map_x, map_y = grid_x + backward[..., 0], grid_y + backward[..., 1]
    there = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    round_trip = np.sum((backward + there) ** 2, axis=-1)
    allowed = 0.01 * (np.sum(backward**2, axis=-1) + np.sum(there**2, axis=-1)) + 0.5
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    return backward, (round_trip <= allowed) & inside


def warping_error(inputs: np.ndarray, outputs: np.ndarray) -> float:
    """The mean absolute difference between each output and the previous one warped to it along the input's
    flow, where that flow is reliable (:func:`checked_flow`)."""
    import cv2
    import numpy as np

    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grid_x, grid_y = pixel_grid(*inputs.shape[1:3])
    errors = []
    for t in range(1, len(inputs)):
        now, before = (cv2.cvtColor(inputs[k], cv2.COLOR_RGB2GRAY) for k in (t, t - 1))
        back, reliable = checked_flow(flow, before, now)
        map_x, map_y = grid_x + back[..., 0], grid_y + back[..., 1]
        warped = cv2.remap(outputs[t - 1], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        errors.append(np.abs(outputs[t].astype(np.float64) - warped)[reliable].mean())
    return float(np.mean(errors))


def psnr_to_plain(stabilised: np.ndarray, plain: np.ndarray) -> float:
    """PSNR in dB (peak 255) of ``stabilised`` against ``plain``, from the mean squared error over all frames."""
    return psnr_of(stabilised, plain, PICTURE_PEAK_TO_PEAK)
