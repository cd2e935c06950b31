"""Plugin discovery through entry points: one code path for first-party and third-party plugins."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from cyclegan_cli.errors import InputError, UsageError

GROUPS = {"engines": "cyc.engines", "readers": "cyc.readers", "writers": "cyc.writers"}


@cache
def names(kind: str) -> tuple[str, ...]:
    """Registered plugin names of ``kind`` (engines, readers, writers), without importing any plugin."""
    return tuple(sorted({ep.name for ep in entry_points(group=GROUPS[kind])}))


@cache
def load(kind: str, name: str) -> type:
    """The plugin class registered as ``name``; its optional libraries are imported only when it runs."""
    for ep in entry_points(group=GROUPS[kind]):
        if ep.name == name:
            return ep.load()
    raise UsageError(f"no {kind[:-1]} named {name!r}: installed are {', '.join(names(kind))}")


def load_all(kind: str) -> dict[str, type]:
    return {name: load(kind, name) for name in names(kind)}


def _pick(kind: str, path: Path, score_method: str) -> type:
    best, best_score = None, 0
    for cls in load_all(kind).values():
        score = getattr(cls, score_method)(path)
        if score > best_score and cls.unavailable_reason() is None:
            best, best_score = cls, score
    if best is None:
        raise InputError(f"{path}: unsupported file type (no installed {kind[:-1]} takes '{path.suffix}')")
    return best


def reader_for(path: Path) -> type:
    return _pick("readers", path, "can_read")


def writer_for(path: Path) -> type:
    return _pick("writers", path, "can_write")
