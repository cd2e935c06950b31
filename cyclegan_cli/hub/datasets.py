"""The official CycleGAN unpaired datasets by name: ``cyc datasets download horse2zebra`` then
``cyc train data/horse2zebra``.

The zips (``http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/NAME.zip``, or ``$CYC_DATASETS_URL/NAME.zip``)
are fetched into the cache's ``datasets/`` folder with the same machinery as the pretrained models (resumable,
atomic, digest recorded on first use), then unpacked into ``OUT/NAME/{trainA,trainB,testA,testB}``, the layout
``cyc train`` reads.

A zip is checked before anything is unpacked: no member may leave the target folder (an absolute path, a drive,
``..``) or be a link, and the bytes it unpacks to are bounded (declared sizes and the bytes actually written
both count). It is unpacked into a temporary folder beside the target and renamed into place when whole, so an
interrupted unpack leaves nothing; an existing folder is never written into.

The image counts come from the authors' own list (docs/datasets.md of junyanz/pytorch-CycleGAN-and-pix2pix).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cyclegan_cli.errors import DataError, UsageError, nearest_hint
from cyclegan_cli.hub.download import DownloadError

OFFICIAL_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
URL_ENV = "CYC_DATASETS_URL"
MAX_UNPACKED_BYTES = 32 * 2**30  # the largest official set unpacks to well under 2 GB
MAX_RATIO = 50  # unpacked / zipped: photographs barely compress; a zip bomb does
COMPLETE_MARKER = ".cyc-dataset.json"
CITYSCAPES = (
    "cityscapes may not be redistributed: register at https://www.cityscapes-dataset.com, download "
    "gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip, and lay them out as trainA/ (photos) and "
    "trainB/ (label maps) with the official repository's datasets/prepare_cityscapes_dataset.py"
)

_IMAGENET = "ImageNet images: non-commercial research and education only (ImageNet's terms of access)"
_FLICKR = "Flickr photos: each under its owner's licence"
_ART = "paintings from WikiArt (public domain or their owners' rights) and Flickr photos (their owners' licences)"


@dataclass(frozen=True)
class Dataset:
    name: str
    domain_a: str
    domain_b: str
    size: str  # what it holds, in the authors' words
    licence: str


DATASETS = {
    d.name: d
    for d in (
        Dataset("apple2orange", "apple", "orange", "996 apple and 1020 orange images (ImageNet)", _IMAGENET),
        Dataset("summer2winter_yosemite", "summer", "winter", "1273 summer and 854 winter photos of Yosemite", _FLICKR),
        Dataset("horse2zebra", "horse", "zebra", "939 horse and 1177 zebra images (ImageNet)", _IMAGENET),
        Dataset("monet2photo", "Monet", "photo", "1074 Monet paintings and 6853 photos", _ART),
        Dataset("cezanne2photo", "Cezanne", "photo", "584 Cezanne paintings and 6853 photos", _ART),
        Dataset("ukiyoe2photo", "Ukiyo-e", "photo", "1433 Ukiyo-e prints and 6853 photos", _ART),
        Dataset("vangogh2photo", "Van Gogh", "photo", "401 Van Gogh paintings and 6853 photos", _ART),
        Dataset("maps", "satellite", "map", "1096 training images scraped from Google Maps", "Google Maps' terms"),
        Dataset(
            "facades", "facade", "label map", "400 images from the CMP Facades dataset", "cite Tylecek & Sara 2013"
        ),
        Dataset("iphone2dslr_flower", "iPhone", "DSLR", "1813 iPhone and 3316 DSLR flower photos", _FLICKR),
        Dataset("mini", "A", "B", "a handful of images, to check a setup in seconds", "as horse2zebra"),
    )
}


def base_url() -> str:
    return os.environ.get(URL_ENV, "").rstrip("/") or OFFICIAL_URL


def lookup(name: str) -> Dataset:
    if name == "cityscapes":
        raise UsageError(CITYSCAPES)
    dataset = DATASETS.get(name)
    if dataset is None:
        raise UsageError(f"no official dataset named {name!r}{nearest_hint(name, DATASETS, 'cyc datasets list')}")
    return dataset


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` is a dataset this module unpacked whole (its marker, and every file it lists)."""
    try:
        marker = json.loads((folder / COMPLETE_MARKER).read_text())
        return sum(1 for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER) >= marker["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def download(name: str, out: str | Path = "data", console=None) -> tuple[Path, bool]:
    """Fetch (or take from the cache) and unpack the dataset ``name`` into ``out/name``.

    Returns the folder and whether anything was done (False: it was complete already)."""
    from rich.console import Console

    from cyclegan_cli.cache import cache_dir
    from cyclegan_cli.hub.download import TransferProgress, fetch

    dataset = lookup(name)
    target = Path(out) / name
    if is_complete(target):
        return target, False
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(
            f"{target} exists and is not a complete {name} dataset: it is left as it is; move it away, "
            "or choose another --out"
        )
    archive = fetch(
        f"{base_url()}/{name}.zip",
        cache_dir("datasets") / f"{name}.zip",
        what=f"dataset {dataset.name}",
        check=check_archive,
        progress=TransferProgress(console or Console(stderr=True)),
        mirror_env=URL_ENV,
    )
    unpack(archive, target)
    return target, True


def check_archive(path: Path) -> None:
    """Refuse a fetched file that is no zip, or whose members would escape, be links, or unpack too large:
    checked before the file is kept, so a refused archive is never cached nor its digest recorded."""
    try:
        with zipfile.ZipFile(path) as zf:
            _checked_members(zf, path)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"not a zip archive ({error})") from None


def unpack(archive: Path, target: Path) -> None:
    """Unpack a checked ``archive`` into ``target`` (which must not hold anything), whole or not at all."""
    target = Path(target)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _checked_members(zf, archive)
            _check_space(members, target.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.cyc-tmp-", dir=target.parent))
            try:
                count = _extract(zf, members, staging, archive)
                (staging / COMPLETE_MARKER).write_text(
                    json.dumps({"dataset": target.name, "files": count, "archive": archive.name}) + "\n"
                )
                if target.is_dir():
                    target.rmdir()  # empty (checked by the caller): replaced by the whole unpacked set
                os.replace(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{archive}: a damaged zip archive ({error}); delete it and download again") from None


def _checked_members(zf: zipfile.ZipFile, archive: Path) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Each file member and where it goes, relative to the target; refuses escapes, links and bombs."""
    infos = [i for i in zf.infolist() if not i.filename.startswith("__MACOSX/")]
    paths = []
    for info in infos:
        name = info.filename.replace("\\", "/")
        path = PurePosixPath(name)
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in path.parts:
            raise DownloadError(f"{archive}: its member {info.filename!r} would be written outside the folder")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DownloadError(f"{archive}: its member {info.filename!r} is a link")
        paths.append((info, path))
    total = sum(info.file_size for info, _ in paths)
    packed = sum(info.compress_size for info, _ in paths) or 1
    if total > MAX_UNPACKED_BYTES or total > MAX_RATIO * packed + 2**20:
        raise DownloadError(f"{archive}: it would unpack to {total / 1e9:.1f} GB from {packed / 1e6:.1f} MB")
    # the official zips hold one folder named after the set: its contents go into the target itself
    tops = {p.parts[0] for _, p in paths if p.parts}
    strip = len(tops) == 1 and all(len(p.parts) > 1 or info.is_dir() for info, p in paths)
    files = [(info, PurePosixPath(*p.parts[1:]) if strip else p) for info, p in paths if not info.is_dir()]
    for domain in ("trainA", "trainB"):
        if not any(p.parts[:1] == (domain,) for _, p in files):
            raise DownloadError(f"{archive}: has no {domain}/ folder: not an unpaired CycleGAN dataset")
    return files


def _check_space(members, folder: Path) -> None:
    need = sum(info.file_size for info, _ in members)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise DataError(f"{folder}: {need / 1e9:.1f} GB needed to unpack, {free / 1e9:.1f} GB free")


def _extract(zf: zipfile.ZipFile, members, staging: Path, archive: Path) -> int:
    """Copy each member's bytes, counting them: a member that unpacks to more than it declared is refused."""
    for info, relative in members:
        dest = staging.joinpath(*relative.parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with zf.open(info) as src, open(dest, "wb") as out:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > info.file_size:
                    raise DownloadError(f"{archive}: {info.filename!r} unpacks to more than it declares")
                out.write(chunk)
    return len(members)
