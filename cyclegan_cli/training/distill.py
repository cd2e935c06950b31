"""``cyc distill``: a small student generator taught by a trained teacher, resumable bit for bit.

Read :func:`distill` top to bottom. The material (frames, the teacher's outputs, the baselines) is prepared by
:mod:`cyclegan_cli.training.distill_data`; the settings are in :mod:`cyclegan_cli.training.distill_config`.

The student is an ordinary cyc generator (``blocks="separable"``, described by its safetensors metadata), so every
other command takes it. Each step: a batch of random crops of the (frame, teacher output) pairs, drawn from a
generator seeded by the step alone; the loss is the L1 distance of the student's output to the teacher's, plus
``--feature-weight`` x the distance of the student's block activations, through learned 1x1 maps, to the
teacher's (GAN Compression's feature distillation; the teacher then runs on the step's crops, online), plus
``--gan-weight`` x an LSGAN term from a fresh PatchGAN that takes the teacher's outputs as real. The learning rate
follows a cosine from ``--lr`` to zero over ``--steps``. A checkpoint holds the student, the maps, the
discriminator, the optimizers and the step: with the same ``--steps``, N steps + ``--resume`` + the rest equal the
whole run in one go, on the CPU exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cyclegan_cli.models.architectures import NLayerDiscriminator, ResnetGenerator, init_weights
from cyclegan_cli.training.data import derive_seed
from cyclegan_cli.training.distill_config import PRESETS, DistillConfig
from cyclegan_cli.training.distill_data import (
    Pairs,
    crop_batch,
)

FIRST_BLOCK = 10  # index of the first residual block in ResnetGenerator.model (stem 4 layers, 2 x 3 downsampling)
DISTILLED_LAYERS = 3  # block outputs matched by feature distillation, evenly spaced


def block_indices(n_blocks: int) -> list[int]:
    """The ``model`` indices of the residual blocks whose outputs feature distillation matches."""
    return [FIRST_BLOCK + max(0, round(k * n_blocks / DISTILLED_LAYERS) - 1) for k in range(1, DISTILLED_LAYERS + 1)]


def forward_with_features(generator: ResnetGenerator, x: torch.Tensor, wanted: list[int]):
    """The generator's output and its activations after the layers ``wanted``."""
    features = []
    for index, layer in enumerate(generator.model):
        x = layer(x)
        if index in wanted:
            features.append(x)
    return x, features


@dataclass
class Student:
    """What a step changes: the student, the feature maps, the discriminator, their optimizers, the step."""

    generator: ResnetGenerator
    maps: nn.ModuleList
    discriminator: NLayerDiscriminator | None
    optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer | None
    step: int = 0
    compiled: Callable | None = None  # the student's forward as a step calls it with --compile

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.compiled if self.compiled is not None else self.generator)(x)

    @property
    def modules(self) -> tuple[nn.Module, ...]:
        return (self.generator, self.maps, *((self.discriminator,) if self.discriminator is not None else ()))

    @property
    def optimizers(self) -> tuple[torch.optim.Optimizer, ...]:
        return (self.optimizer, *((self.d_optimizer,) if self.d_optimizer is not None else ()))

    def state(self) -> dict:
        return {
            "models": {"maps": self.maps.state_dict()}
            | ({"D": self.discriminator.state_dict()} if self.discriminator is not None else {}),
            "optimizers": {"G": self.optimizer.state_dict()}
            | ({"D": self.d_optimizer.state_dict()} if self.d_optimizer is not None else {}),
            "step": self.step,
        }

    def restore(self, payload: dict, key: str) -> None:
        self.generator.load_state_dict(payload["models"][key])
        self.maps.load_state_dict(payload["models"]["maps"])
        self.optimizer.load_state_dict(payload["optimizers"]["G"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(payload["models"]["D"])
            self.d_optimizer.load_state_dict(payload["optimizers"]["D"])
        self.step = int(payload["step"])


def build_student(c: DistillConfig, teacher_channels: int, device: str) -> Student:
    preset = PRESETS[c.preset]
    torch.manual_seed(c.seed)
    generator = init_weights(ResnetGenerator(preset.ngf, preset.n_blocks, blocks=preset.blocks)).to(device)
    maps = nn.ModuleList(
        nn.Conv2d(4 * preset.ngf, teacher_channels, kernel_size=1) for _ in range(DISTILLED_LAYERS)
    ).to(device)
    params = list(generator.parameters()) + (list(maps.parameters()) if c.feature_weight > 0 else [])
    optimizer = torch.optim.Adam(params, lr=c.lr, betas=(0.9, 0.999))
    discriminator = d_optimizer = None
    if c.gan_weight > 0:
        discriminator = init_weights(NLayerDiscriminator(ndf=32)).to(device)
        d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    # static shapes: every step's crops have one size (a frame smaller than --crop-size adds one more)
    compiled = torch.compile(generator, dynamic=False) if c.compile else None
    return Student(generator, maps, discriminator, optimizer, d_optimizer, compiled=compiled)


def learning_rate(c: DistillConfig, step: int) -> float:
    """A cosine from ``--lr`` at step 0 to zero at ``--steps``."""
    return c.lr * 0.5 * (1 + math.cos(math.pi * min(step, c.steps) / c.steps))


def distill_step(
    s: Student, teacher, pairs: Pairs, c: DistillConfig, device: str, rank: int = 0, world: int = 1
) -> dict[str, float]:
    """One step on the batch of step ``s.step + 1``; the losses it took. Under torchrun the step's batch is
    ``world`` x ``--batch-size`` crops, each rank its share, so N ranks step as one process with N times the
    batch (their gradients are averaged inside ``backward()``: :mod:`cyclegan_cli.training.distributed`)."""
    generator = torch.Generator().manual_seed(derive_seed(c.seed, s.step + 1))
    share = slice(rank * c.batch_size, (rank + 1) * c.batch_size)
    x, target = (t[share].to(device) for t in crop_batch(pairs, world * c.batch_size, c.crop_size, generator))
    for group in s.optimizer.param_groups:
        group["lr"] = learning_rate(c, s.step)
    dtype = torch.bfloat16 if c.precision == "bf16" else None
    autocast = torch.autocast(device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None)
    losses = {}
    with autocast:
        if c.feature_weight > 0:
            y, got = forward_with_features(s.generator, x, block_indices(s.generator.n_blocks))
            with torch.no_grad():
                _, wanted = forward_with_features(teacher, x, block_indices(teacher.n_blocks))
            losses["feature"] = sum(F.mse_loss(m(f).float(), w.float()) for m, f, w in zip(s.maps, got, wanted))
        else:
            y = s.forward(x)
        losses["l1"] = F.l1_loss(y.float(), target)
        if s.discriminator is not None:
            verdict = s.discriminator(y).float()
            losses["gan"] = F.mse_loss(verdict, torch.ones_like(verdict))
    total = losses["l1"] + c.feature_weight * losses.get("feature", 0) + c.gan_weight * losses.get("gan", 0)
    s.optimizer.zero_grad(set_to_none=True)
    total.backward()
    s.optimizer.step()
    if s.discriminator is not None:
        with autocast:
            real, fake = s.discriminator(target).float(), s.discriminator(y.detach()).float()
            losses["D"] = 0.5 * (F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake)))
        s.d_optimizer.zero_grad(set_to_none=True)
        losses["D"].backward()
        s.d_optimizer.step()
    s.step += 1
    return {k: float(v.detach()) for k, v in losses.items()}
