"""Finding input files: a folder walked, a glob matched, the images under a folder. Shared by the rooms that read
what a user names (``cyc run``'s jobs, int8 calibration, training and held-out images, ``cyc eval``)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from cyclegan_cli.imageio import is_image_path

GLOB_CHARACTERS = frozenset("*?[")


def walk_files(folder: Path, skip_under: Path | None = None) -> list[Path]:
    """Every file under ``folder``, sorted, leaving out hidden files and folders (our own temporary files among
    them) and anything under ``skip_under`` (an --out folder inside the input tree: never our own outputs)."""
    skip_under = skip_under.resolve() if skip_under is not None else None
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if skip_under is not None and path.resolve().is_relative_to(skip_under):
            continue
        found.append(path)
    return found


def glob_files(pattern: str) -> list[Path]:
    """The files ``pattern`` matches (``**`` recursive), sorted by name."""
    return [Path(m) for m in sorted(glob.glob(pattern, recursive=True)) if Path(m).is_file()]


def list_images(folder: Path) -> list[Path]:
    """Every image file under ``folder``, recursively (following links to folders), in a stable (sorted) order;
    hidden entries ignored."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if not f.startswith(".") and is_image_path(Path(f))]
    return sorted(found)
