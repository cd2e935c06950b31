"""Plugin discovery through entry points: one code path for first-party and third-party plugins.

Engines, readers and writers register under the entry-point groups ``cyc.engines``, ``cyc.readers`` and
``cyc.writers`` (ours too, in our own pyproject). A plugin that fails to import (a third-party package built for
another version, a missing dependency of its own) is skipped with one warning naming its package, so that it
breaks nothing else; asking for it by name gives that reason as the error.
"""

from __future__ import annotations

import sys
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from cyclegan_cli.errors import InputError, PluginError, UsageError

GROUPS = {"engines": "cyc.engines", "readers": "cyc.readers", "writers": "cyc.writers"}


@cache
def _entry_points(kind: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in sorted(entry_points(group=GROUPS[kind]), key=lambda ep: ep.name)}


def provider(kind: str, name: str) -> str:
    """The distribution that declares the plugin, for messages and ``cyc plugins``."""
    dist = _entry_points(kind)[name].dist
    return dist.name if dist is not None else "an unknown package"


@cache
def names(kind: str) -> tuple[str, ...]:
    """Registered plugin names of ``kind`` (engines, readers, writers), without importing any plugin."""
    return tuple(_entry_points(kind))


@cache
def load_error(kind: str, name: str) -> str | None:
    """None when the plugin ``name`` imports, else one line saying why not and which package provides it."""
    try:
        load(kind, name)
    except UsageError:
        raise
    except PluginError as error:
        return str(error)
    return None


@cache
def load(kind: str, name: str) -> type:
    """The plugin class registered as ``name``; its optional libraries are imported only when it runs."""
    ep = _entry_points(kind).get(name)
    if ep is None:
        raise UsageError(f"no {kind[:-1]} named {name!r}: installed are {', '.join(names(kind))}")
    try:
        return ep.load()
    except Exception as error:  # noqa: BLE001 - a broken plugin is reported, never fatal to the others
        what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        package = provider(kind, name)
        raise PluginError(
            f"the {kind[:-1]} {name!r} from the package {package} fails to load ({what}); "
            f"reinstall or uninstall {package}"
        ) from error


def unavailable(kind: str, name: str) -> str | None:
    """None when the plugin loads and can work here, else why not (it fails to load, or a library or the
    hardware it needs is missing): what ``cyc plugins`` and ``cyc doctor`` show."""
    return load_error(kind, name) or load(kind, name).unavailable_reason()


_warned_packages: set[str] = set()


@cache
def load_all(kind: str) -> dict[str, type]:
    """Every plugin of ``kind`` that imports; a package whose plugins do not is skipped with one warning on
    stderr (one per package, however many plugins it declares)."""
    loaded = {}
    for name in names(kind):
        reason = load_error(kind, name)
        if reason is None:
            loaded[name] = load(kind, name)
        elif provider(kind, name) not in _warned_packages:
            _warned_packages.add(provider(kind, name))
            print(f"warning: {reason}; skipped", file=sys.stderr)
    return loaded


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


def exported_suffixes() -> frozenset[str]:
    """The suffixes of exported model files that some installed engine runs directly (``Engine.file_suffixes``)."""
    return frozenset(suffix for cls in load_all("engines").values() for suffix in cls.file_suffixes)
