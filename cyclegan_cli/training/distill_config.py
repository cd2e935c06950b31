"""``cyc distill``'s settings and student presets (no torch: ``--help`` reads them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cyclegan_cli.models.run_folder import RUNS_DIR


@dataclass(frozen=True)
class Preset:
    """A student's shape: a ResNet generator of ``ngf`` width whose ``n_blocks`` residual blocks are
    depthwise-separable."""

    ngf: int
    n_blocks: int
    blocks: str = "separable"


PRESETS = {"tiny": Preset(16, 9), "small": Preset(24, 9), "medium": Preset(32, 6)}
DEFAULT_PRESET = "tiny"  # as close to the teacher as small in a quarter of the time: docs/internals.md, "cyc distill"
TEACHER_MACS_REFERENCE = (64, 9)  # the full generator the presets are compared with in --help


@dataclass
class DistillConfig:
    """Every setting of a distillation; ``config.json`` holds them, and a resumed run keeps those marked kept."""

    source: str
    data: list[str] = field(default_factory=list)
    direction: str = "AtoB"
    preset: str = DEFAULT_PRESET
    steps: int = 4000
    minutes: float | None = None
    name: str | None = None
    runs_dir: str = RUNS_DIR
    held_out: str | None = None
    frames: int = 200
    load_size: int = 256
    crop_size: int = 256  # whole frames' height: InstanceNorm sees what it sees at inference (docs/internals.md)
    batch_size: int = 1
    lr: float = 1e-3
    feature_weight: float = 0.0
    gan_weight: float = 0.0
    seed: int = 0
    save_every: int = 250
    sample_every: int = 250
    eval_every: int = 0
    log_every: int = 25
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    dist_timeout: float | None = None  # seconds a rank waits at a collective under torchrun (None: PyTorch's)
    resume: bool = False
    progress: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


# What a resumed run keeps from its config.json (the student, its material and its optimisation); the rest
# (--steps, --minutes, the logging cadence, the device, precision and compile) may change on --resume.
KEPT_ON_RESUME = (
    "source",
    "data",
    "direction",
    "preset",
    "held_out",
    "frames",
    "load_size",
    "crop_size",
    "batch_size",
    "lr",
    "feature_weight",
    "gan_weight",
    "seed",
)
