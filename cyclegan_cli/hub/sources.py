"""Which weights: ``cyc run --checkpoint``, ``cyc export SOURCE`` and ``cyc eval SOURCE`` resolved alike.

A source is a path (a run folder, a checkpoint, a generator file, an exported file), the name of an official
pretrained model (fetched into the cache on first use), or nothing: the newest run under ``--runs-dir``.
"""

from __future__ import annotations

from pathlib import Path

from cyclegan_cli import registry
from cyclegan_cli.errors import UsageError, WeightsError
from cyclegan_cli.hub import pretrained
from cyclegan_cli.models.artifacts import read_sidecar
from cyclegan_cli.models.run_folder import latest_run
from cyclegan_cli.models.weights import DIRECTIONS, load_generator, read_generator_state
from cyclegan_cli.plugin_api import ModelSource


def find_model(text: str | None, runs_dir: str | Path, direction: str) -> tuple[Path, str, str | None]:
    """(the file or folder, the direction to read from it, a note for the user or None).

    The note says where the weights came from when the user did not name a path: the latest run, or a pretrained
    model (and its published partner when that stands in for ``direction``)."""
    if text is None:
        path = latest_run(runs_dir).path
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


def resolve_directions(source: Path, direction: str) -> list[str]:
    """``AtoB`` / ``BtoA`` as asked; ``both``: the directions the source has (an official .pth has only AtoB)."""
    if direction != "both":
        return [direction]
    found, first_error = [], None
    for d in DIRECTIONS:
        try:
            read_generator_state(source, d)
        except (UsageError, WeightsError) as exc:  # this source lacks that direction (or is not weights at all)
            first_error = first_error or exc
            continue
        found.append(d)
    if not found:
        raise first_error
    return found


def source_directions(source: str | None, runs_dir: str, direction: str) -> list[str]:
    """``AtoB`` / ``BtoA`` as asked; ``both``: the directions ``cyc run --checkpoint SOURCE`` can translate (a
    pretrained model's other way is its published partner)."""
    if direction != "both":
        return [direction]
    if source is not None and pretrained.names_one(source):
        return ["AtoB", "BtoA"] if pretrained.lookup(source).partner else ["AtoB"]
    path, _, _ = find_model(source, runs_dir, "AtoB")  # a path, or the latest run: no download on this branch
    if path.suffix.lower() in registry.exported_suffixes():
        return [(read_sidecar(path) or {}).get("direction", "AtoB")]
    return resolve_directions(path, "both")
