"""Weights I/O: one entry point that turns any generator source into a ready model.

Sources: a run folder, a training checkpoint (``*.pt``), a ``*.safetensors`` generator written by cyc, or a
generator file of another implementation (the reference's ``*.pth``, the re-implementations' layouts, wrappers and
files of several networks: :mod:`cyclegan_cli.models.layouts`), as ``.pth`` or ``.safetensors``. Everything is read
with ``torch.load(weights_only=True)`` or safetensors: no pickle code from a file ever runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cyclegan_cli.atomic import atomic_write_bytes
from cyclegan_cli.errors import UsageError, WeightsError, first_line
from cyclegan_cli.models.layouts import known_way, networks, pick, recognise
from cyclegan_cli.models.run_folder import RunFolder

if TYPE_CHECKING:
    from cyclegan_cli.models.architectures import ResnetGenerator

DIRECTIONS = ("AtoB", "BtoA")
CHECKPOINT_FORMAT = "cyc-checkpoint"
GENERATOR_FORMAT = "cyc-generator"


@dataclass(frozen=True)
class GeneratorInfo:
    """What a generator is: its shape, which way it translates, and where it came from."""

    ngf: int
    n_blocks: int
    direction: str
    domain_a: str = "A"
    domain_b: str = "B"
    source: str = ""
    kind: str = ""  # checkpoint, safetensors, official (a run folder reads as one of the first two)
    norm: str = "instance"  # the variant (models.architectures.NORMS, UPSAMPLINGS): the reference's by default
    upsample: str = "transposed"
    bias: bool = True
    family: str = ""  # whose layout a file not written by cyc has (models.layouts)
    blocks: str = "full"  # the residual blocks' convs (models.architectures.BLOCKS): "separable" for a student
    distilled: str = ""  # a student's provenance and fidelity (JSON, written by cyc distill); "" otherwise

    @property
    def architecture(self) -> str:
        return f"{'mobile_' if self.blocks == 'separable' else ''}resnet_{self.n_blocks}blocks"

    @property
    def distillation(self) -> dict:
        """What ``cyc distill`` recorded of a student: its teacher's digest, steps, fidelity; {} for others."""
        return json.loads(self.distilled) if self.distilled else {}

    def macs(self, width: int, height: int) -> int:
        from cyclegan_cli.models.macs import generator_macs

        return generator_macs(self.ngf, self.n_blocks, width, height, self.upsample, self.blocks)

    @property
    def relative_work(self) -> float:
        """This generator's MACs per frame against the reference's (width 64, 9 blocks): what the engine
        choice's break-even figures, measured on that generator, scale by."""
        from cyclegan_cli.models.macs import generator_macs

        return self.macs(256, 256) / generator_macs(64, 9, 256, 256)

    def distilled_line(self) -> str | None:
        """One line on a distilled student's teacher and fidelity; None for any other generator."""
        d = self.distillation
        if not d:
            return None
        return (
            f"a student distilled from {d.get('teacher')} ({d.get('preset')}, {d.get('steps')} steps, "
            f"{self.macs(256, 256) / 1e9:.2f} GMACs at 256x256): {d.get('psnr_db')} dB PSNR against it on "
            f"{d.get('held_out_frames')} held-out frames (identity {d.get('identity_psnr_db')}, best colour matrix "
            f"{d.get('colour_matrix_psnr_db')})"
        )

    def metadata(self) -> dict[str, str]:
        """The safetensors metadata that lets the file describe itself (all values are strings)."""
        return {
            "format": GENERATOR_FORMAT,
            "architecture": self.architecture,
            "ngf": str(self.ngf),
            "n_blocks": str(self.n_blocks),
            "direction": self.direction,
            "domain_a": self.domain_a,
            "domain_b": self.domain_b,
            "norm": self.norm,
            "upsample": self.upsample,
            "conv_bias": "true" if self.bias else "false",
            "blocks": self.blocks,
            **({"distilled": self.distilled} if self.distilled else {}),
        }


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise UsageError(f"unknown direction {direction!r}: use AtoB or BtoA")
    return direction


def generator_key(direction: str) -> str:
    """The model name that translates ``direction``: G_AB for AtoB, G_BA for BtoA."""
    return "G_AB" if check_direction(direction) == "AtoB" else "G_BA"


def load_generator(source: str | Path, direction: str = "AtoB", device: str = "cpu"):
    """Return ``(model, info)`` for ``source`` translating ``direction``; the model is in eval mode on ``device``."""
    state, info = read_generator_state(source, direction)
    model = build_generator(state, info)
    return model.to(device).eval(), info


def read_generator_state(source: str | Path, direction: str = "AtoB") -> tuple[dict, GeneratorInfo]:
    """The generator's state dict (official key names) and its description, without building the model."""
    check_direction(direction)
    path = Path(source)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_run_folder(path, direction)
    if path.suffix == ".safetensors":
        return _read_safetensors(path, direction)
    payload = torch_load(path)
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        return _state_from_checkpoint(payload, path, direction)
    return _state_from_other(payload, path, direction)


def build_generator(state: dict, info: GeneratorInfo) -> ResnetGenerator:
    from cyclegan_cli.models.architectures import ResnetGenerator

    model = ResnetGenerator(
        ngf=info.ngf, n_blocks=info.n_blocks, norm=info.norm, upsample=info.upsample, bias=info.bias, blocks=info.blocks
    )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"{info.source}: weights do not fit a {info.architecture} generator ({first_line(exc)})"
        ) from None
    return model


def save_generator(model, info: GeneratorInfo, path: str | Path) -> None:
    """Write the generator as safetensors, architecture and direction in the metadata, atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata=info.metadata()))


# --- the individual formats ---------------------------------------------------------------------------------


def torch_load(path: Path, fix: str = "save a plain state_dict (or .safetensors) where it was made"):
    """``torch.load`` with ``weights_only``: bad bytes or a pickled object become a one-line WeightsError;
    ``fix`` ends the message for a file that holds a Python object."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # The weights-only unpickler raises this both for a pickled Python object (unsafe) and for bytes that are
        # no pickle at all; only its "Unsupported global" wording tells them apart.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise WeightsError(
                f"{path}: refused to load: it holds a Python object ({found.group(1)}), not only tensors; {fix}"
            ) from None
        raise WeightsError(f"{path}: truncated or not a PyTorch weights file") from None
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types (KeyError, RuntimeError, EOFError...) on bad bytes
        reason = first_line(exc, 160, named=True)
        raise WeightsError(f"{path}: truncated or not a PyTorch weights file ({reason})") from None


def _read_run_folder(folder: Path, direction: str) -> tuple[dict, GeneratorInfo]:
    """A run folder: its newest training checkpoint, else the generator it exported when training ended."""
    run = RunFolder(folder)
    last, exported = run.last_checkpoint, run.generator(generator_key(direction))
    if last.is_file() and not (exported.is_file() and exported.stat().st_mtime >= last.stat().st_mtime):
        return _state_from_checkpoint(torch_load(last), last, direction)
    if exported.is_file():
        return _read_safetensors(exported, direction)
    raise UsageError(f"{folder}: not a run folder (no checkpoints/last.pt and no {exported.name})")


def _state_from_checkpoint(payload: dict, path: Path, direction: str) -> tuple[dict, GeneratorInfo]:
    """A cyc train checkpoint (both generators) or a cyc distill one (its student: one direction, in
    ``config["direction"]``)."""
    key = generator_key(direction)
    config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
    trained_way = config.get("direction")
    if trained_way in DIRECTIONS and trained_way != direction:
        raise UsageError(f"{path}: this distilled student translates {trained_way}, not {direction}")
    try:
        state, ngf, n_blocks = payload["models"][key], int(config["ngf"]), int(config["n_blocks"])
    except (KeyError, TypeError, ValueError):
        raise WeightsError(f"{path}: a cyc checkpoint without {key}: the file is damaged") from None
    info = GeneratorInfo(
        ngf=ngf,
        n_blocks=n_blocks,
        direction=direction,
        domain_a=str(config.get("domain_a", "A")),
        domain_b=str(config.get("domain_b", "B")),
        source=str(path),
        kind="checkpoint",
        blocks=str(config.get("blocks", "full")),
        distilled=str(payload.get("distilled", "")),
    )
    return state, info


def _read_safetensors(path: Path, direction: str) -> tuple[dict, GeneratorInfo]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: truncated or not a safetensors file ({exc})") from None
    if meta.get("format") == GENERATOR_FORMAT:
        variant = {
            "ngf": int(meta["ngf"]),
            "n_blocks": int(meta["n_blocks"]),
            "norm": meta.get("norm", "instance"),
            "upsample": meta.get("upsample", "transposed"),
            "bias": meta.get("conv_bias", "true") == "true",
            "blocks": meta.get("blocks", "full"),
            "distilled": meta.get("distilled", ""),
        }
        stored = meta.get("direction", "AtoB")
    else:  # written by someone else: as any other implementation's file (keys sorted: read in natural order)
        return _state_from_other(state, path, direction, kind="safetensors", natural_order=True)
    if stored != direction:
        raise UsageError(
            f"{path}: this file translates {stored}, not {direction}: pass the other direction's file, "
            f"or the run folder that holds both"
        )
    info = GeneratorInfo(
        direction=direction,
        domain_a=meta.get("domain_a", "A"),
        domain_b=meta.get("domain_b", "B"),
        source=str(path),
        kind="safetensors",
        **variant,
    )
    return state, info


def _state_from_other(
    payload, path: Path, direction: str, kind: str = "official", natural_order: bool = False
) -> tuple[dict, GeneratorInfo]:
    """A generator file written by another implementation (the reference's or a re-implementation's), wrappers
    and several networks allowed (:mod:`cyclegan_cli.models.layouts`)."""
    name, state = pick(networks(payload, path, natural_order), direction, path)
    stored = known_way(name) if name else None
    if stored is None and direction != "AtoB":
        raise UsageError(
            f"{path}: a generator file of one network translates one way only (AtoB); for the other way use its "
            "partner file (e.g. zebra2horse for horse2zebra)"
        )
    if stored is not None and stored != direction:
        raise UsageError(f"{path}: its one generator ({name}) translates {stored}, not {direction}")
    found = recognise(state, path)
    family = f"{found.family}, network {name}" if name else found.family
    info = GeneratorInfo(
        ngf=found.ngf,
        n_blocks=found.n_blocks,
        direction=direction,
        source=str(path),
        kind=kind,
        norm=found.norm,
        upsample=found.upsample,
        bias=found.bias,
        family=family,
    )
    return found.state, info
