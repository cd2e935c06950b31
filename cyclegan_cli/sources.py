"""Which weights: ``cyc run --checkpoint``, ``cyc export SOURCE`` and ``cyc eval SOURCE`` resolved alike.

A source is a path (a run folder, a checkpoint, a generator file, an exported file), the name of an official
pretrained model (fetched into the cache on first use), or nothing: the newest run under ``--runs-dir``.
"""

from __future__ import annotations

from pathlib import Path

from cyclegan_cli import pretrained, registry
from cyclegan_cli.artifacts import read_sidecar
from cyclegan_cli.errors import UsageError
from cyclegan_cli.plugin_api import ModelSource
from cyclegan_cli.weights import find_latest_run, load_generator


def find_model(text: str | None, runs_dir: str | Path, direction: str) -> tuple[Path, str, str | None]:
    """(the file or folder, the direction to read from it, a note for the user or None).

    The note says where the weights came from when the user did not name a path: the latest run, or a pretrained
    model (and its published partner when that stands in for ``direction``)."""
    if text is None:
        path = find_latest_run(runs_dir)
        return path, direction, f"using the latest run: {path}"
    return pretrained.resolve(text, direction)


def load_model_source(checkpoint: str | None, runs_dir: str, direction: str) -> tuple[ModelSource, str | None]:
    """``cyc run``'s model: an exported file as it is (its sidecar must agree on the direction), else the
    generator loaded from the weights; and :func:`find_model`'s note."""
    try:
        path, stored, note = find_model(checkpoint, runs_dir, direction)
    except UsageError as error:
        raise UsageError(f"--checkpoint {error}" if checkpoint is not None else str(error)) from None
    if path.suffix.lower() in registry.exported_suffixes():
        _check_exported_direction(path, direction)
        return ModelSource(path=path, direction=direction, exported=path), note
    generator, info = load_generator(path, stored)
    return ModelSource(path=path, direction=direction, generator=generator, info=info), note


def _check_exported_direction(path: Path, direction: str) -> None:
    """An exported file translates one way; its sidecar says which."""
    stored = (read_sidecar(path) or {}).get("direction")
    if stored is not None and stored != direction:
        raise UsageError(
            f"{path}: this file translates {stored}, not {direction}: pass --direction {stored}, "
            "or the other direction's file"
        )
