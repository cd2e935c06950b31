"""The unpaired training data: two folders of images, A iterated in a shuffled order, B drawn at random.

Layouts: ``DATAROOT/trainA`` + ``DATAROOT/trainB`` (the official one), ``DATAROOT/train/A`` + ``train/B``, or two
folders named by ``--a`` / ``--b``. Folders are searched recursively for JPEG, PNG, WebP, BMP and TIFF files.

Every image is decoded once before training: an unreadable one is skipped with a warning and counted, and a
domain left with no readable image is a :class:`DataError` before any work starts.

Reproducibility: nothing here draws from a global random stream. The order of an epoch comes from
``(seed, epoch)`` and each sample's randomness (which B image, the crop offsets, the flips) from
``(seed, epoch, index)``. So a run resumed at batch ``k`` of epoch ``e`` sees exactly the samples a straight run
sees, whatever the number of DataLoader workers.

Several ranks (``torchrun``): every rank computes the same order of the epoch and takes its own share of it,
positions ``rank, rank + world, ...`` (the order padded from its start to a multiple of ``world``, so every rank
has as many batches). Batch ``k`` of all ranks together is one global batch: a stretch of the order. Each A
sample belongs to one rank, and so does the B image drawn for it (from the sample's own seed): ranks draw
different Bs. With one rank, this is exactly the one-process order.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cyclegan_cli.errors import DataError, InputError, UsageError
from cyclegan_cli.files import list_images
from cyclegan_cli.imageio import IMAGE_EXTENSIONS, read_image

LAYOUTS = (("trainA", "trainB"), ("train/A", "train/B"))


# --- finding the images -------------------------------------------------------------------------------------


@dataclass
class Domains:
    """The two image folders, their readable files, and what was skipped."""

    dir_a: Path
    dir_b: Path
    files_a: list[Path]
    files_b: list[Path]
    name_a: str = "A"
    name_b: str = "B"
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)


def find_domain_dirs(dataroot: str | Path | None, a: str | Path | None, b: str | Path | None) -> tuple[Path, Path]:
    """The A and B folders from DATAROOT (either layout) and/or explicit ``--a`` / ``--b`` folders."""
    if a is not None and b is not None:
        dir_a, dir_b = Path(a), Path(b)
    elif dataroot is None:
        raise UsageError("no training data: give DATAROOT (holding trainA/ and trainB/) or both --a DIR and --b DIR")
    else:
        root = Path(dataroot)
        if not root.is_dir():
            raise DataError(f"{root}: no such folder")
        for name_a, name_b in LAYOUTS:
            if (root / name_a).is_dir() or (root / name_b).is_dir():
                dir_a, dir_b = root / name_a, root / name_b
                break
        else:
            raise DataError(
                f"{root}: no training folders: expected {root}/trainA and {root}/trainB, "
                f"or {root}/train/A and {root}/train/B (or pass --a DIR --b DIR)"
            )
        dir_a, dir_b = (Path(a) if a is not None else dir_a), (Path(b) if b is not None else dir_b)
    for label, folder in (("A", dir_a), ("B", dir_b)):
        if not folder.is_dir():
            raise DataError(f"domain {label}: {folder}: no such folder")
    return dir_a, dir_b


def domain_names(dataroot: str | Path | None, dir_a: Path, dir_b: Path) -> tuple[str, str]:
    """``horse2zebra`` -> (horse, zebra); explicit folders -> their names; else (A, B)."""
    if dataroot is not None:
        match = re.fullmatch(r"([A-Za-z0-9_\-]+?)2([A-Za-z0-9_\-]+)", Path(dataroot).resolve().name)
        if match:
            return match.group(1), match.group(2)
    if dir_a.name not in ("trainA", "A") and dir_b.name not in ("trainB", "B") and dir_a.name != dir_b.name:
        return dir_a.name, dir_b.name
    return "A", "B"


def _check_readable(path: Path) -> str | None:
    try:
        read_image(path)
    except InputError as exc:
        return str(exc)
    return None


def scan_domains(
    dataroot: str | Path | None = None, a: str | Path | None = None, b: str | Path | None = None, threads: int = 0
) -> Domains:
    """Find both domains and decode every image once; raise DataError when a domain has no readable image."""
    dir_a, dir_b = find_domain_dirs(dataroot, a, b)
    extensions = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
    listed = {}
    for label, folder in (("A", dir_a), ("B", dir_b)):
        listed[label] = list_images(folder)
        if not listed[label]:
            raise DataError(f"domain {label}: {folder} holds no images ({extensions})")
    everything = listed["A"] + listed["B"]
    threads = threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads) as pool:  # PIL decodes without holding the GIL
        reasons = list(pool.map(_check_readable, everything))
    bad = {path: reason for path, reason in zip(everything, reasons) if reason is not None}
    files = {label: [p for p in paths if p not in bad] for label, paths in listed.items()}
    for label, folder in (("A", dir_a), ("B", dir_b)):
        if not files[label]:
            raise DataError(f"domain {label}: none of the {len(listed[label])} images in {folder} can be read")
    name_a, name_b = domain_names(dataroot, dir_a, dir_b)
    return Domains(dir_a, dir_b, files["A"], files["B"], name_a, name_b, skipped=list(bad.items()))


# --- transforms ---------------------------------------------------------------------------------------------


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, well mixed (neighbouring indices give unrelated streams)."""
    digest = hashlib.blake2b(":".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size with bicubic filtering, as the canonical 'resize_and_crop' does (aspect not kept)."""
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))


def random_transform(rgb: np.ndarray, load_size: int, crop_size: int, flip: bool, g: torch.Generator) -> torch.Tensor:
    """Resize to load size, crop crop_size at a random place, flip half the time; draws from ``g`` only."""
    image = resize(rgb, load_size)
    top = int(torch.randint(0, load_size - crop_size + 1, (1,), generator=g))
    left = int(torch.randint(0, load_size - crop_size + 1, (1,), generator=g))
    flipped = bool(torch.rand((), generator=g) < 0.5)
    image = image[top : top + crop_size, left : left + crop_size]
    if flip and flipped:
        image = image[:, ::-1]
    return to_tensor(image)


def center_transform(rgb: np.ndarray, load_size: int, crop_size: int) -> torch.Tensor:
    """The deterministic view used for sample grids: resize to load size, crop the centre."""
    image = resize(rgb, load_size)
    top = (load_size - crop_size) // 2
    return to_tensor(image[top : top + crop_size, top : top + crop_size])


# --- the dataset and its order ------------------------------------------------------------------------------


class UnpairedDataset(torch.utils.data.Dataset):
    """Indexed by ``(epoch, index)``: returns A ``index % len(A)``, a random B, each randomly cropped and flipped.

    An epoch has ``max(len(A), len(B))`` samples, as in the canonical implementation. A file that fails to decode
    now (it was readable at the scan) is replaced by the next readable one and reported in the sample's ``bad``.
    """

    def __init__(self, files_a, files_b, load_size: int, crop_size: int, flip: bool = True, seed: int = 0):
        self.files_a, self.files_b = [str(p) for p in files_a], [str(p) for p in files_b]
        self.load_size, self.crop_size, self.flip, self.seed = load_size, crop_size, flip, seed

    def __len__(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def _load(self, files: list[str], index: int, bad: list[str]) -> np.ndarray:
        for attempt in range(len(files)):
            path = files[(index + attempt) % len(files)]
            try:
                return read_image(path)[0]
            except InputError as exc:
                bad.append(f"{path}\t{exc}")
        raise DataError("no image of the domain can be read any more (were the files removed during training?)")

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch, index))
        index_b = int(torch.randint(0, len(self.files_b), (1,), generator=g))
        bad: list[str] = []
        rgb_a = self._load(self.files_a, index % len(self.files_a), bad)
        rgb_b = self._load(self.files_b, index_b, bad)
        real_a = random_transform(rgb_a, self.load_size, self.crop_size, self.flip, g)
        real_b = random_transform(rgb_b, self.load_size, self.crop_size, self.flip, g)
        return {"A": real_a, "B": real_b, "bad": bad}


def collate(samples: list[dict]) -> dict:
    return {
        "A": torch.stack([s["A"] for s in samples]),
        "B": torch.stack([s["B"] for s in samples]),
        "bad": [line for s in samples for line in s["bad"]],
    }


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of epoch ``epoch``: a permutation of range(n) from (seed, epoch) alone."""
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, -1))
    return torch.randperm(n, generator=g).tolist()


class EpochBatches(torch.utils.data.Sampler):
    """The batches of one epoch for rank ``rank`` of ``world``, starting at batch ``start`` (a resumed run skips
    the ones already done)."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.epoch, self.start = n, batch_size, seed, epoch, start
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_order(self.n, self.seed, self.epoch)
        if self.world > 1:
            padded = order + [order[i % self.n] for i in range(-(-self.n // self.world) * self.world - self.n)]
            order = padded[self.rank :: self.world]
        for first in range(self.start * self.batch_size, len(order), self.batch_size):
            yield [(self.epoch, i) for i in order[first : first + self.batch_size]]

    def __len__(self) -> int:
        return max(0, batches_per_epoch(self.n, self.batch_size, self.world) - self.start)


def batches_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    """Steps of an epoch of ``n`` samples: batches of ``batch_size`` per rank, ``world`` ranks."""
    per_rank = -(-n // world)
    return -(-per_rank // batch_size)


def batch_after_world_change(batch: int, n: int, batch_size: int, saved_world: int, world: int) -> int:
    """Where an epoch continues when a run resumed at batch ``batch`` of it changes its number of ranks: at the
    global batch that holds the first sample not yet trained (so none is skipped; up to a global batch of
    samples may be seen twice). A finished epoch stays finished."""
    if batch >= batches_per_epoch(n, batch_size, saved_world):
        return batches_per_epoch(n, batch_size, world)
    done = min(n, batch * batch_size * saved_world)  # samples of the epoch's order already trained
    return done // (batch_size * world)


def _worker_init(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group: the main process saves a checkpoint and stops the workers itself.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def epoch_loader(
    dataset: UnpairedDataset,
    batch_size: int,
    epoch: int,
    start: int = 0,
    workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world: int = 1,
) -> torch.utils.data.DataLoader:
    """A DataLoader over rank ``rank``'s share of epoch ``epoch`` from batch ``start``; it draws nothing from the
    global random state."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=EpochBatches(len(dataset), batch_size, dataset.seed, epoch, start, rank, world),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers else None,
        generator=torch.Generator().manual_seed(derive_seed(dataset.seed, epoch, -2)),
        prefetch_factor=2 if workers else None,
    )


def default_workers(device: str, processes: int = 1) -> int:
    """0 on a CPU (the training step needs every core and decoding is a small part of it); up to 4 with a GPU,
    the machine's cores shared among its ``processes`` training processes."""
    if device == "cpu":
        return 0
    return max(0, min(4, (os.cpu_count() or 1) // max(1, processes) - 1))
