"""Training step time: cyc's loop against a plain eager fp32 CycleGAN loop written the canonical way.

    python benchmarks/train_step.py                       # 128 and 256 px, batch 1, a few steps each
    python benchmarks/train_step.py --sizes 256 --steps 10 --warmup 3
    python benchmarks/train_step.py --no-compile          # skip the bf16 + torch.compile variant

Both loops run in this process on the same inputs and the same full-size networks (ngf 64, 9 blocks, 70x70
PatchGAN). cyc's step is ``cyclegan_cli.training.state.train_step`` on a state from ``build_state``, exactly what
``cyc train`` runs (plus reading the losses back, as the loop does each step); the reference is the official
implementation's ``optimize_parameters`` written out plainly: forward, G step with the discriminators frozen,
then D_A and D_B on (real + pooled fake) / 2 each, Adam for both. The two are timed step for step in
alternation, so a noisy machine slows both alike; the figures are medians. Then cyc with ``--precision bf16
--compile`` (its compilation time is reported apart). Not run in CI.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cyclegan_cli.models.architectures import NLayerDiscriminator, ResnetGenerator, init_weights  # noqa: E402
from cyclegan_cli.training.config import TrainConfig  # noqa: E402
from cyclegan_cli.training.state import build_state, train_step  # noqa: E402

# --- the reference: the canonical loop, plain eager fp32 --------------------------------------------------


class CanonicalPool:
    def __init__(self, size: int = 50):
        self.size, self.images = size, []

    def query(self, images):
        out = []
        for image in images:
            image = image.data.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif random.uniform(0, 1) > 0.5:
                i = random.randint(0, self.size - 1)
                out.append(self.images[i].clone())
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


class CanonicalCycleGAN:
    def __init__(self, lr: float = 2e-4):
        self.G_A, self.G_B = init_weights(ResnetGenerator(64, 9)), init_weights(ResnetGenerator(64, 9))
        self.D_A, self.D_B = init_weights(NLayerDiscriminator(64, 3)), init_weights(NLayerDiscriminator(64, 3))
        self.gan, self.cycle, self.idt = nn.MSELoss(), nn.L1Loss(), nn.L1Loss()
        self.opt_G = torch.optim.Adam(
            itertools.chain(self.G_A.parameters(), self.G_B.parameters()), lr, betas=(0.5, 0.999)
        )
        self.opt_D = torch.optim.Adam(
            itertools.chain(self.D_A.parameters(), self.D_B.parameters()), lr, betas=(0.5, 0.999)
        )
        self.fake_A_pool, self.fake_B_pool = CanonicalPool(), CanonicalPool()

    def gan_loss(self, prediction, is_real: bool):
        target = torch.tensor(1.0 if is_real else 0.0).expand_as(prediction)
        return self.gan(prediction, target)

    def backward_D_basic(self, netD, real, fake):
        loss = (self.gan_loss(netD(real), True) + self.gan_loss(netD(fake.detach()), False)) * 0.5
        loss.backward()
        return loss

    def optimize_parameters(self, real_A, real_B):
        fake_B = self.G_A(real_A)
        rec_A = self.G_B(fake_B)
        fake_A = self.G_B(real_B)
        rec_B = self.G_A(fake_A)
        for p in itertools.chain(self.D_A.parameters(), self.D_B.parameters()):
            p.requires_grad = False
        self.opt_G.zero_grad()
        loss_idt_A = self.idt(self.G_A(real_B), real_B) * 10 * 0.5
        loss_idt_B = self.idt(self.G_B(real_A), real_A) * 10 * 0.5
        loss_G_A = self.gan_loss(self.D_A(fake_B), True)
        loss_G_B = self.gan_loss(self.D_B(fake_A), True)
        loss_cycle_A = self.cycle(rec_A, real_A) * 10
        loss_cycle_B = self.cycle(rec_B, real_B) * 10
        (loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B).backward()
        self.opt_G.step()
        for p in itertools.chain(self.D_A.parameters(), self.D_B.parameters()):
            p.requires_grad = True
        self.opt_D.zero_grad()
        self.backward_D_basic(self.D_A, real_B, self.fake_B_pool.query(fake_B))
        self.backward_D_basic(self.D_B, real_A, self.fake_A_pool.query(fake_A))
        self.opt_D.step()


# --- timing ---------------------------------------------------------------------------------------------------


def cyc_stepper(size: int, precision: str = "fp32", compile: bool = False):
    config = TrainConfig(crop_size=size, load_size=size, precision=precision, compile=compile)
    state = build_state(config, "cpu", precision)
    return lambda a, b: train_step(state, state.to_device(a), state.to_device(b)).tolist()


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="crop sizes (square), batch 1")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per loop and size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (cyc compiled: at least 2)")
    parser.add_argument("--no-compile", action="store_true", help="skip cyc --precision bf16 --compile")
    args = parser.parse_args()
    torch.manual_seed(0)
    random.seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, full-size networks "
        f"(ngf 64, 9 blocks), median of {args.steps} steps after {args.warmup} warm-up"
    )
    print(
        f"{'size':>5} {'canonical s/step':>17} {'cyc s/step':>11} {'cyc/canonical':>14}"
        f" {'cyc bf16+compile s/step':>24} {'speed-up':>9} {'compile s':>10}"
    )
    for size in args.sizes:
        a, b = torch.rand(1, 3, size, size) * 2 - 1, torch.rand(1, 3, size, size) * 2 - 1
        canonical, cyc = CanonicalCycleGAN(), cyc_stepper(size)
        for _ in range(args.warmup):
            canonical.optimize_parameters(a, b)
            cyc(a, b)
        t_canon, t_cyc = [], []
        for _ in range(args.steps):  # alternate, so load from elsewhere hits both alike
            t_canon.append(timed(canonical.optimize_parameters, a, b))
            t_cyc.append(timed(cyc, a, b))
        canon_s, cyc_s = statistics.median(t_canon), statistics.median(t_cyc)
        del canonical, cyc
        fast_text = f"{'-':>24} {'-':>9} {'-':>10}"
        if not args.no_compile:
            fast = cyc_stepper(size, "bf16", compile=True)
            started = time.perf_counter()
            for _ in range(max(2, args.warmup)):
                fast(a, b)
            compile_s = time.perf_counter() - started
            fast_s = statistics.median(timed(fast, a, b) for _ in range(args.steps))
            fast_text = f"{fast_s:>24.3f} {canon_s / fast_s:>8.2f}x {compile_s:>10.1f}"
            del fast
        print(f"{size:>5} {canon_s:>17.3f} {cyc_s:>11.3f} {cyc_s / canon_s:>14.3f} {fast_text}", flush=True)
    print(
        "cyc/canonical <= 1.05 means the default loop costs nothing over the canonical one; "
        "speed-up = canonical s/step over cyc bf16+compile s/step."
    )


if __name__ == "__main__":
    main()
