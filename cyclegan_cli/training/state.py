"""The training state and the canonical CycleGAN step: what the loop in :mod:`cyclegan_cli.training.loop` repeats.

:func:`build_state` makes the models, optimizers, schedulers and replay pools (:class:`TrainState`, everything the
step changes plus where the loop is); :func:`train_step` is one iteration of the canonical algorithm (the
generators' step, then the discriminators'); :func:`end_epoch` decays the learning rates.

The algorithm (Zhu et al. 2017 and the official implementation): LSGAN (MSE) adversarial losses (``--gan-mode
vanilla``: binary cross-entropy on the logits, the reference's other choice), cycle L1 x
``lambda_cyc`` (10), identity L1 x ``lambda_id * lambda_cyc`` (5), discriminator loss (real + fake) / 2 on
images drawn from a replay pool of 50, Adam 2e-4 betas (0.5, 0.999) with one optimizer for both generators and
one for both discriminators, lr constant for ``epochs`` then linear decay over ``epochs_decay``, stepped per
epoch; weights initialised N(0, 0.02).

Names: ``G_AB`` translates A into B and ``D_B`` judges B images (real B vs G_AB's fakes); ``G_BA`` and ``D_A``
the other way. The losses (:data:`LOSS_NAMES`, in the order :func:`train_step` returns them): ``G_AB``/``G_BA``
adversarial, ``cyc_A`` = |G_BA(G_AB(A)) - A|, ``cyc_B``, ``idt_A`` = |G_BA(A) - A|, ``idt_B``, ``D_A``, ``D_B``
(weighted as they enter the sums).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cyclegan_cli.models.architectures import NLayerDiscriminator, ResnetGenerator, init_weights
from cyclegan_cli.training import data as training_data
from cyclegan_cli.training.config import TrainConfig

LOSS_NAMES = ("G_AB", "G_BA", "cyc_A", "cyc_B", "idt_A", "idt_B", "D_A", "D_B")


# --- the models, optimizers and replay pools ----------------------------------------------------------------


class ImagePool:
    """The canonical replay buffer: until full, return what comes in; then half the time swap it with an old one."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.g = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach().split(1):
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif torch.rand((), generator=self.g) > 0.5:
                i = int(torch.randint(0, self.size, (1,), generator=self.g))
                out.append(self.images[i])
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out)

    def state_dict(self) -> dict:
        stacked = torch.cat(self.images).cpu() if self.images else torch.empty(0)
        return {"images": stacked, "rng": self.g.get_state()}

    def load_state_dict(self, state: dict, device: torch.device, channels_last: bool) -> None:
        images = state["images"].to(device)
        if channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        self.images = list(images.split(1)) if images.numel() else []
        self.g.set_state(state["rng"])


@dataclass
class TrainState:
    """Everything the step changes, plus where the loop is."""

    config: TrainConfig
    device: torch.device
    G_AB: nn.Module
    G_BA: nn.Module
    D_A: nn.Module
    D_B: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    sched_G: torch.optim.lr_scheduler.LRScheduler
    sched_D: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    pool_A: ImagePool  # fakes of domain A (from G_BA), judged by D_A
    pool_B: ImagePool
    amp_dtype: torch.dtype | None
    channels_last: bool
    forward: dict[str, Callable]  # the modules as the step calls them (compiled with --compile)
    epoch: int = 0  # 0-based; the epoch being trained
    batch_in_epoch: int = 0  # batches of this epoch already trained
    step: int = 0  # iterations done in all
    elapsed_s: float = 0.0  # training time over all sessions of the run

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


def lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """The canonical 'linear' policy: 1 for ``epochs`` epochs, then down by 1/(epochs_decay+1) each epoch."""
    return lambda epoch: 1.0 - max(0, epoch + 1 - config.epochs) / float(config.epochs_decay + 1)


def pool_seed(seed: int, stream: int, rank: int) -> int:
    """The seed of a replay pool (stream 1: fakes of A, 2: of B) on rank ``rank``; rank 0's is one process's."""
    return training_data.derive_seed(seed, stream) if rank == 0 else training_data.derive_seed(seed, stream, rank, -4)


def build_state(config: TrainConfig, device: str = "cpu", precision: str = "fp32", rank: int = 0) -> TrainState:
    """The models (initialised from ``config.seed``, the same on every rank), optimizers, schedulers and pools
    (seeded by ``rank``: each rank swaps its own), ready for :func:`train_step`."""
    dev = torch.device(device)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    G_AB = init_weights(ResnetGenerator(config.ngf, config.n_blocks))
    G_BA = init_weights(ResnetGenerator(config.ngf, config.n_blocks))
    D_A = init_weights(NLayerDiscriminator(config.ndf, config.n_layers_d))
    D_B = init_weights(NLayerDiscriminator(config.ndf, config.n_layers_d))
    channels_last = config.channels_last
    if channels_last is None:
        channels_last = dev.type == "cuda"
    models = [G_AB, G_BA, D_A, D_B]
    for model in models:
        model.to(dev)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
    fused = dev.type in ("cpu", "cuda") or None
    betas = (config.beta1, 0.999)
    opt_G = torch.optim.Adam([*G_AB.parameters(), *G_BA.parameters()], lr=config.lr, betas=betas, fused=fused)
    opt_D = torch.optim.Adam([*D_A.parameters(), *D_B.parameters()], lr=config.lr, betas=betas, fused=fused)
    sched_G = torch.optim.lr_scheduler.LambdaLR(opt_G, lr_factor(config))
    sched_D = torch.optim.lr_scheduler.LambdaLR(opt_D, lr_factor(config))
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    amp_dtype = None if precision == "fp32" else {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    forward = {"G_AB": G_AB, "G_BA": G_BA, "D_A": D_A, "D_B": D_B}
    if config.compile:
        # static shapes: a step has few (batch n and 2n, a last smaller batch), each compiled once
        forward = {name: torch.compile(model, dynamic=False) for name, model in forward.items()}
    return TrainState(
        config=config,
        device=dev,
        G_AB=G_AB,
        G_BA=G_BA,
        D_A=D_A,
        D_B=D_B,
        opt_G=opt_G,
        opt_D=opt_D,
        sched_G=sched_G,
        sched_D=sched_D,
        scaler=scaler,
        pool_A=ImagePool(config.pool_size, pool_seed(config.seed, 1, rank)),
        pool_B=ImagePool(config.pool_size, pool_seed(config.seed, 2, rank)),
        amp_dtype=amp_dtype,
        channels_last=channels_last,
        forward=forward,
    )


def _set_requires_grad(models: tuple[nn.Module, ...], flag: bool) -> None:
    for model in models:
        for p in model.parameters():
            p.requires_grad_(flag)


def _gan_loss(prediction: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """The adversarial loss of the patch scores against 1 (real) or 0 (fake): LSGAN, their mean squared distance;
    vanilla, binary cross-entropy with the scores as logits (the original GAN's loss)."""
    prediction = prediction.float()
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(prediction, target)
    return F.mse_loss(prediction, target)


def train_step(s: TrainState, real_A: torch.Tensor, real_B: torch.Tensor) -> torch.Tensor:
    """One canonical iteration on a batch: the generators' step, then the discriminators'. Returns the 8 losses."""
    c, f = s.config, s.forward
    n = real_A.shape[0]

    # generators: fool the discriminators, cycle back, leave the target domain alone (identity)
    _set_requires_grad((s.D_A, s.D_B), False)  # the G step needs no gradient for D's weights
    with s.autocast():
        # (outputs in fp32 under autocast too: the networks always see one input dtype, compile once)
        fake_B = f["G_AB"](real_A).float()
        fake_A = f["G_BA"](real_B).float()
        rec_A = f["G_BA"](fake_B).float()
        rec_B = f["G_AB"](fake_A).float()
        loss_G_AB = _gan_loss(f["D_B"](fake_B), True, c.gan_mode)
        loss_G_BA = _gan_loss(f["D_A"](fake_A), True, c.gan_mode)
        loss_cyc_A = F.l1_loss(rec_A, real_A) * c.lambda_cyc
        loss_cyc_B = F.l1_loss(rec_B, real_B) * c.lambda_cyc
        if c.lambda_id > 0:
            loss_idt_A = F.l1_loss(f["G_BA"](real_A).float(), real_A) * (c.lambda_cyc * c.lambda_id)
            loss_idt_B = F.l1_loss(f["G_AB"](real_B).float(), real_B) * (c.lambda_cyc * c.lambda_id)
        else:
            loss_idt_A = loss_idt_B = torch.zeros((), device=s.device)
        loss_G = loss_G_AB + loss_G_BA + loss_cyc_A + loss_cyc_B + loss_idt_A + loss_idt_B
    s.opt_G.zero_grad(set_to_none=True)
    s.scaler.scale(loss_G).backward()
    s.scaler.step(s.opt_G)

    # discriminators: real -> 1, a fake from the replay pool -> 0, (real + fake) / 2 each
    _set_requires_grad((s.D_A, s.D_B), True)
    old_fake_B = s.pool_B.query(fake_B.detach())
    old_fake_A = s.pool_A.query(fake_A.detach())
    with s.autocast():
        pred_B = f["D_B"](torch.cat([real_B, old_fake_B]))
        loss_D_B = (_gan_loss(pred_B[:n], True, c.gan_mode) + _gan_loss(pred_B[n:], False, c.gan_mode)) * 0.5
        pred_A = f["D_A"](torch.cat([real_A, old_fake_A]))
        loss_D_A = (_gan_loss(pred_A[:n], True, c.gan_mode) + _gan_loss(pred_A[n:], False, c.gan_mode)) * 0.5
    s.opt_D.zero_grad(set_to_none=True)
    s.scaler.scale(loss_D_A + loss_D_B).backward()
    s.scaler.step(s.opt_D)
    s.scaler.update()
    losses = (loss_G_AB, loss_G_BA, loss_cyc_A, loss_cyc_B, loss_idt_A, loss_idt_B, loss_D_A, loss_D_B)
    return torch.stack([loss.detach().float() for loss in losses])


def end_epoch(s: TrainState) -> None:
    """Decay both learning rates one epoch's worth and move to the next epoch's first batch.

    Four changes that belong together: the loop applies them with a second Ctrl-C deferred and the state marked
    unsaveable, so no checkpoint holds the schedulers of one epoch and the counters of another."""
    s.sched_G.step()
    s.sched_D.step()
    s.epoch += 1
    s.batch_in_epoch = 0
