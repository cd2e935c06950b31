"""Quality during training (``cyc train --eval-every``): KID, and FID where there are enough images, of both
directions on held-out images, measured as ``cyc eval`` measures them (:mod:`cyclegan_cli.evaluation.quality`).

The held-out images are the data folder's ``testA/`` and ``testB/`` (or ``test/A`` and ``test/B``), never the
training images: without them evaluation is off, with a one-line note. At most ``--eval-images`` of each are
used, spread evenly over the sorted files, each seen as the sample grids see an image (resized to --load-size, the
centre cropped to --crop-size); the translations are compared with the other domain's held-out images, whose
features are cached as ``cyc eval`` caches them. Only the process that writes (rank 0) evaluates; the others go on
and wait for it at the next agreement. Evaluating changes nothing a checkpoint holds: no random stream is drawn
from and the networks are only read, so ``last.pt`` is the same with and without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cyclegan_cli.errors import CycError, DataError, first_line

if TYPE_CHECKING:
    from cyclegan_cli.training.config import TrainConfig
    from cyclegan_cli.training.state import TrainState

FID_MIN_IMAGES = 50  # fewer images a set give an FID dominated by its bias: KID alone is reported
METRICS = ("kid_AtoB", "kid_BtoA", "fid_AtoB", "fid_BtoA")  # the columns evaluation adds to metrics.csv


def evaluation_every(c: TrainConfig, steps_per_epoch: int, total_steps: int) -> int:
    """Steps between evaluations: ``--eval-every``, or by default one epoch, and 0 (off) for a run shorter than
    an epoch."""
    if c.eval_every is not None:
        return c.eval_every
    return steps_per_epoch if total_steps >= steps_per_epoch else 0


@dataclass
class Evaluation:
    step: int
    metrics: dict[str, float]  # of METRICS, those measured
    seconds: float

    def line(self) -> str:
        parts = []
        for direction, label in (("AtoB", "A -> B"), ("BtoA", "B -> A")):
            text = f"{label} KID {self.metrics[f'kid_{direction}']:.4f}"
            if f"fid_{direction}" in self.metrics:
                text += f", FID {self.metrics[f'fid_{direction}']:.1f}"
            parts.append(text)
        return f"Evaluated at step {self.step}: {'; '.join(parts)} ({self.seconds:.0f} s)"


class HeldOutEvaluator:
    """Scores the generators on the held-out images every ``every`` steps (:meth:`due`) with torch-fidelity's
    Inception network (fetched by :meth:`prepare` before the first step, as ``cyc eval`` fetches it). A failure
    (torch-fidelity missing, the weights out of reach, too few readable held-out images, anything else) is said
    once and turns evaluation off: it never stops the training."""

    def __init__(self, c: TrainConfig, folders: tuple[Path, Path], every: int, per_epoch: bool, console):
        from cyclegan_cli.files import list_images

        self.every, self.per_epoch, self.console = every, per_epoch, console
        self.load_size, self.crop_size = c.load_size, c.crop_size
        self.files = {label: _spread(list_images(folder), c.eval_images) for label, folder in zip("AB", folders)}
        self.folders = dict(zip("AB", folders))
        self._inception = None
        self._real: dict = {}  # each domain's held-out features, extracted once by prepare()

    def due(self, step: int, epoch_end: bool) -> bool:
        """At an epoch's end when evaluating once an epoch (the default), else every ``every`` steps."""
        return self.every > 0 and (epoch_end if self.per_epoch else step % self.every == 0)

    def prepare(self, device: str) -> bool:
        """Before the first step: torch-fidelity, the network (fetched on first use) and the real images' features,
        so that a missing piece is said at the start and no download waits mid-run (under torchrun the other
        ranks wait for rank 0). False, said: evaluation off."""
        from cyclegan_cli.evaluation import quality

        def setup() -> None:
            for label in "AB":
                if len(self.files[label]) < quality.MIN_IMAGES:
                    raise DataError(
                        f"{self.folders[label]} holds fewer than {quality.MIN_IMAGES} images; KID compares sets"
                    )
            quality.check_installed()
            self._inception = quality.load_inception(device, console=self.console)
            for label in "AB":
                self._real[label], _ = quality.real_features(
                    self._inception, self.folders[label], self.files[label], say=lambda _: None
                )

        return self._guarded(setup)

    def evaluate(self, s: TrainState) -> Evaluation | None:
        """Both directions' scores at this step; None when that failed (said, and evaluation turned off)."""
        import time

        from cyclegan_cli.evaluation import quality

        started, metrics = time.perf_counter(), {}

        def score() -> None:
            for direction, source, target, generator in (("AtoB", "A", "B", s.G_AB), ("BtoA", "B", "A", s.G_BA)):
                fake = self._inception.features_of(self._translated(s, generator, self.files[source]))
                real = self._real[target]
                if min(len(fake), len(real)) < quality.MIN_IMAGES:
                    raise DataError(f"fewer than {quality.MIN_IMAGES} readable held-out images of {source} or {target}")
                enough = min(len(fake), len(real)) >= FID_MIN_IMAGES
                scores = quality.compare(fake, real, with_fid=enough)
                metrics[f"kid_{direction}"] = scores.kid_mean
                if enough:
                    metrics[f"fid_{direction}"] = scores.fid

        if not self._guarded(score):
            return None
        return Evaluation(s.step, metrics, time.perf_counter() - started)

    def _guarded(self, work) -> bool:
        """Run ``work``; any failure is one warning and turns evaluation off: scoring never stops the training."""
        from rich.markup import escape

        try:
            work()
        except Exception as error:  # noqa: BLE001 - a score is never worth the run: any failure only ends scoring
            text = first_line(error, 300, named=True)
            self.console.print(f"[yellow]warning:[/] evaluation off: {escape(text)}", highlight=False)
            self.every = 0
            return False
        return True

    def _translated(self, s: TrainState, generator, files: list[Path]):
        """Each held-out image as the sample grids see it, translated: 3 x H x W uint8 tensors, one at a time."""
        import torch

        from cyclegan_cli.framing import to_uint8_frames
        from cyclegan_cli.imageio import read_image
        from cyclegan_cli.training.data import center_transform

        for path in files:
            try:
                rgb, _ = read_image(path)
            except CycError:
                continue  # an unreadable held-out image is left out, as in training
            x = center_transform(rgb, self.load_size, self.crop_size)[None]
            with torch.no_grad(), s.autocast():
                y = generator(s.to_device(x))
            yield torch.from_numpy(to_uint8_frames(y, tuple(y.shape[-2:]))[0]).permute(2, 0, 1)


def _spread(files: list[Path], count: int) -> list[Path]:
    """``count`` of ``files``, evenly spread over them (all of them when there are no more)."""
    if len(files) <= count:
        return files
    return [files[i * len(files) // count] for i in range(count)]


def best_kid(metrics_csv: Path) -> tuple[int, float, float] | None:
    """The evaluated step with the lowest mean KID of the two directions in a run's ``metrics.csv`` (the whole
    run's, resumed sessions included): (step, KID A->B, KID B->A); None without evaluations."""
    import csv

    if not metrics_csv.is_file():
        return None
    with open(metrics_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("kid_AtoB") and r.get("kid_BtoA")]
    if not rows:
        return None
    best = min(rows, key=lambda r: float(r["kid_AtoB"]) + float(r["kid_BtoA"]))
    return int(best["step"]), float(best["kid_AtoB"]), float(best["kid_BtoA"])
