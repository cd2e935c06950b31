"""Generator files of the popular CycleGAN implementations, read as they are: recognised by the order and shapes of
their tensors, not by their key names, and mapped onto :class:`~cyclegan_cli.models.architectures.ResnetGenerator`.

A ResNet generator is a 7x7 conv from 3 channels, two stride-2 3x3 convs (ngf -> 2 ngf -> 4 ngf), pairs of 3x3
convs at 4 ngf (the residual blocks), two upsamplings (4 ngf -> 2 ngf -> ngf) and a 7x7 conv to 3 channels, each
conv but the last followed by a norm. Read in the file's order (a safetensors file, whose keys are sorted, in
natural order: ``model.10`` after ``model.9``), its layers tell:

* the norm: no parameters (InstanceNorm, the reference's), a weight and a bias (InstanceNorm with ``affine=True``),
  or those with running statistics (BatchNorm; statistics alone are an old InstanceNorm's, dropped);
* the upsampling: a transposed conv's weight is in x out x 3 x 3 (4 ngf x 2 ngf), a conv's out x in (2 ngf x 4
  ngf): the decoder of Upsample(x2) + conv (eriklindernoren/PyTorch-GAN) tells itself apart by that alone;
* whether the convs have biases.

Padding cannot be told from shapes: every family named here pads the 7x7 and residual convs by reflection and
the strided ones with zeros, as the reference does, and that is assumed.

Wrappers: a ``module.`` prefix (DataParallel, DDP), ``{"state_dict": ...}`` (or ``model``, ``generator``), and files
holding several networks, as nested dicts or as key prefixes (``G_A2B``/``G_B2A``, ``netG_A``/``netG_B``,
``G_AB``/``G_BA``, ``generator_ab``...): the generators among them are found by shape, and ``--direction`` picks one
where the names say which way each goes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cyclegan_cli.errors import UsageError, WeightsError

_PARAMETER = re.compile(r"^(.*)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
_WRAPPERS = ("state_dict", "model_state_dict", "model", "generator")
UNDERSTOOD = (
    "the reference's and aitorzip/PyTorch-CycleGAN's (model.N.conv_block.M), eriklindernoren/PyTorch-GAN's "
    "(model.N.block.M, upsample + conv), with InstanceNorm (plain or affine) or BatchNorm, in any wrapper"
)


@dataclass(frozen=True)
class Recognised:
    """A generator found in a file: its shape and variant, and its state under cyc's key names."""

    ngf: int
    n_blocks: int
    norm: str
    upsample: str
    bias: bool
    family: str
    state: dict


@dataclass
class _Layer:
    name: str  # the key prefix
    tensors: dict  # suffix (weight, bias, running_mean, ...) -> tensor

    @property
    def is_conv(self) -> bool:
        weight = self.tensors.get("weight")
        return weight is not None and weight.dim() == 4


def networks(payload, path: Path, natural_order: bool = False) -> dict[str, dict]:
    """The state dicts a loaded file holds, by network name ("" for a file of one network), wrappers removed.
    ``natural_order``: the file's keys are sorted (safetensors): read them in natural order instead."""
    if not isinstance(payload, dict):
        raise WeightsError(f"{path}: holds a {type(payload).__name__}, not a state dict of tensors")
    if natural_order:
        payload = {k: payload[k] for k in sorted(payload, key=lambda k: _natural(str(k)))}
    for key in _WRAPPERS:  # {"state_dict": {...}} and the like, alone or beside counters and settings
        if isinstance(payload.get(key), dict) and _holds_tensors(payload[key]):
            return networks(payload[key], path)
    nested = {str(k): v for k, v in payload.items() if isinstance(v, dict) and _tensors(v)}
    if nested:
        return {name: _strip_module(state) for name, state in nested.items()}
    state = _strip_module({str(k): v for k, v in payload.items() if _is_tensor(v)})
    if not state:
        raise WeightsError(f"{path}: holds no tensors: not a generator's weights")
    groups: dict[str, dict] = {}
    for key, tensor in state.items():  # G_A2B.model.0.weight: a network per first name, where there are several
        first, _, rest = key.partition(".")
        groups.setdefault(first, {})[rest] = tensor
    if len(groups) > 1 and any(_looks_like_generator(group) for group in groups.values()):
        return groups  # a whole generator under one first name: the first names are networks
    return {"": state}


def recognise(state: dict, path: Path) -> Recognised:
    """The ResNet generator in ``state`` (one network's tensors, in the order they were saved), mapped onto cyc's
    layout; a WeightsError that names what was found where it is none."""
    keys = list(state)
    layers = _layers(state)
    convs = [layer for layer in layers if layer.is_conv]
    norms = [layer for layer in layers if not layer.is_conv]
    ngf, n_blocks, upsample = shape = _shape(convs, path, state)
    norm = _norm_kind(norms, path)
    biases = {"bias" in conv.tensors for conv in convs[:-1]}
    if len(biases) > 1:
        raise WeightsError(f"{path}: some convs have a bias and some do not: not one generator of a known layout")
    bias = biases.pop()
    state = _canonical(convs, norms, shape, norm, bias, path)
    return Recognised(ngf, n_blocks, norm, upsample, bias, _family(keys, upsample), state)


def pick(found: dict[str, dict], direction: str, path: Path) -> tuple[str, dict]:
    """The one generator of a file's networks that translates ``direction``: the only one, or the one whose name
    says that way (G_A2B, netG_A, G_AB, generator_ab ...); a UsageError listing them where the names do not say."""
    generators = {name: state for name, state in found.items() if _looks_like_generator(state)}
    if not generators:
        return next(iter(found.items()))  # recognise() then says what the file holds instead
    if len(generators) == 1:
        return next(iter(generators.items()))
    ways = {name: known_way(name) for name in generators}
    chosen = [name for name, way in ways.items() if way == direction]
    if len(chosen) == 1:
        return chosen[0], generators[chosen[0]]
    listed = ", ".join(f"{name} ({ways[name] or 'way unknown'})" for name in generators)
    raise UsageError(
        f"{path}: holds {len(generators)} generators ({listed}) and their names do not say which translates "
        f"{direction}: save the one you mean alone (its state_dict, as one file) and pass that file"
    )


# --- the parts -------------------------------------------------------------------------------------------------


def _is_tensor(value) -> bool:
    return hasattr(value, "dim") and hasattr(value, "shape")


def _tensors(mapping: dict) -> bool:
    return any(_is_tensor(v) for v in mapping.values())


def _holds_tensors(mapping: dict) -> bool:
    """Tensors in ``mapping`` or in the dicts it holds (a wrapper of several networks)."""
    return _tensors(mapping) or any(isinstance(v, dict) and _tensors(v) for v in mapping.values())


def _strip_module(state: dict) -> dict:
    if state and all(str(k).startswith("module.") for k in state):
        return {str(k)[len("module.") :]: v for k, v in state.items()}
    return {str(k): v for k, v in state.items() if _is_tensor(v)}


def _natural(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _layers(state: dict) -> list[_Layer]:
    layers: dict[str, _Layer] = {}
    for key, tensor in state.items():
        match = _PARAMETER.match(key)
        if match is None:
            continue
        prefix, suffix = match.groups()
        layers.setdefault(prefix, _Layer(prefix, {})).tensors[suffix] = tensor
    return list(layers.values())


def _found(state: dict, count: int = 4) -> str:
    items = list(state.items())[:count]
    shown = ", ".join(f"{k} {tuple(getattr(v, 'shape', ()))}" for k, v in items)
    return f"{shown}{', ...' if len(state) > count else ''}"


def _shape(convs: list[_Layer], path: Path, state: dict) -> tuple[int, int, str]:
    """(ngf, blocks, upsampling) from the convs in order; a WeightsError naming what was found otherwise."""

    def refuse(why: str) -> WeightsError:
        return WeightsError(
            f"{path}: not a ResNet generator ({why}); found {_found(state)}; understood layouts: {UNDERSTOOD}"
        )

    weights = [tuple(c.tensors["weight"].shape) for c in convs]
    if len(weights) < 7:
        raise refuse(f"{len(weights)} conv layers" if weights else "no conv layer")
    first, last = weights[0], weights[-1]
    if first[1:] != (3, 7, 7) or last[0] != 3 or last[2:] != (7, 7) or last[1] != first[0]:
        raise refuse(f"first conv {first}, last {last}: not 3 -> ngf 7x7 ... ngf -> 3 7x7")
    ngf = first[0]
    down = [(2 * ngf, ngf, 3, 3), (4 * ngf, 2 * ngf, 3, 3)]
    if weights[1:3] != down:
        raise refuse(f"downsampling convs {weights[1:3]}, expected {down}")
    middle = weights[3:-3]
    if not middle or len(middle) % 2 or any(w != (4 * ngf, 4 * ngf, 3, 3) for w in middle):
        raise refuse(f"residual convs {middle[:3]}...: expected pairs of {(4 * ngf, 4 * ngf, 3, 3)}")
    up = weights[-3:-1]
    if up == [(4 * ngf, 2 * ngf, 3, 3), (2 * ngf, ngf, 3, 3)]:
        upsample = "transposed"  # ConvTranspose2d weights are in x out
    elif up == [(2 * ngf, 4 * ngf, 3, 3), (ngf, 2 * ngf, 3, 3)]:
        upsample = "resize"
    else:
        raise refuse(f"upsampling convs {up}")
    return ngf, len(middle) // 2, upsample


def _norm_kind(norms: list[_Layer], path: Path) -> str:
    kinds = set()
    for layer in norms:
        if "weight" in layer.tensors and "running_mean" in layer.tensors:
            kinds.add("batch")
        elif "weight" in layer.tensors:
            kinds.add("instance-affine")
        else:
            kinds.add("instance")  # running statistics alone: an old InstanceNorm's, unused in eval
    if len(kinds) > 1:
        raise WeightsError(f"{path}: norm layers of different kinds ({', '.join(sorted(kinds))}): not one generator")
    return kinds.pop() if kinds else "instance"


def _family(keys: list[str], upsample: str) -> str:
    text = " ".join(keys[:40])
    if ".conv_block." in text:
        return "reference layout (junyanz/pytorch-CycleGAN-and-pix2pix, aitorzip/PyTorch-CycleGAN)"
    if ".block." in text and upsample == "resize":
        return "eriklindernoren/PyTorch-GAN layout"
    return "ResNet generator recognised by its shapes"


def _canonical(convs, norms, shape, norm: str, bias: bool, path: Path) -> dict:
    """The tensors under the key names of cyc's generator of this variant, layer for layer in order."""
    from cyclegan_cli.models.architectures import ResnetGenerator

    ngf, n_blocks, upsample = shape
    model = ResnetGenerator(ngf, n_blocks, norm=norm, upsample=upsample, bias=bias)
    target = _layers(model.state_dict())
    # each conv but the last followed by its norm (plain InstanceNorm has no tensors: the convs alone)
    theirs = convs if norm == "instance" else [*(layer for pair in zip(convs, norms) for layer in pair), convs[-1]]
    if len(target) != len(theirs):
        raise WeightsError(f"{path}: {len(theirs)} layers where a {norm} generator has {len(target)}")
    state = {}
    for ours, layer in zip(target, theirs):
        for suffix, tensor in ours.tensors.items():
            found = layer.tensors.get(suffix)
            if found is None and suffix == "num_batches_tracked":
                found = tensor  # not every writer keeps the counter; eval never reads it
            if found is None or tuple(found.shape) != tuple(tensor.shape):
                raise WeightsError(f"{path}: {layer.name}.{suffix} does not fit {ours.name}.{suffix}")
            state[f"{ours.name}.{suffix}"] = found
    return state


def _looks_like_generator(state: dict) -> bool:
    """Seven convs or more, from 3 channels (7x7) back to 3 (7x7): a whole generator, not a part of one."""
    weights = [tuple(t.shape) for k, t in state.items() if k.endswith("weight") and _is_tensor(t) and t.dim() == 4]
    return len(weights) >= 7 and weights[0][1:] == (3, 7, 7) and weights[-1] == (3, weights[0][0], 7, 7)


def known_way(name: str) -> str | None:
    """AtoB or BtoA where a network's name says it (G_A2B, netG_A, G_AB, generator_ab ...), else None."""
    plain = re.sub(r"[^a-z0-9]", "", name.lower())
    if re.search(r"(a2b|atob|ab)$", plain) or plain in ("netga", "ga"):
        return "AtoB"
    if re.search(r"(b2a|btoa|ba)$", plain) or plain in ("netgb", "gb"):
        return "BtoA"
    return None
