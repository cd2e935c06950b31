"""The official CycleGAN generator files load as they are: key names and shapes written out here from the
official layout (not taken from our model), saved with ``torch.save`` as the published ``*.pth`` files are."""

from __future__ import annotations

import argparse

import pytest
import torch

from cyclegan_cli.errors import UsageError, WeightsError
from cyclegan_cli.models.architectures import NLayerDiscriminator, ResnetGenerator
from cyclegan_cli.models.weights import load_generator

OFFICIAL_PARAMETERS_RESNET_9BLOCKS = 11_378_179


def official_state_dict(ngf: int = 64, n_blocks: int = 9, stale_norm_buffers: bool = False) -> dict:
    """The state dict of the official ``ResnetGenerator`` (``resnet_{n}blocks``, InstanceNorm, no dropout).

    ``nn.Sequential`` ``model``: 0 pad, 1 conv 3->ngf k7, 2 IN, 3 ReLU, 4 conv ngf->2ngf k3 s2, 5 IN, 6 ReLU,
    7 conv 2ngf->4ngf k3 s2, 8 IN, 9 ReLU, 10.. residual blocks (conv_block: 0 pad, 1 conv, 2 IN, 3 ReLU, 4 pad,
    5 conv, 6 IN), then ConvTranspose 4ngf->2ngf, IN, ReLU, ConvTranspose 2ngf->ngf, IN, ReLU, pad, conv ngf->3
    k7, tanh. ConvTranspose weights are (in, out, k, k)."""
    g = torch.Generator().manual_seed(ngf * 100 + n_blocks)
    state: dict[str, torch.Tensor] = {}

    def conv(index: str, out_ch: int, in_ch: int, k: int, transposed: bool = False, norm: str | None = None):
        shape = (in_ch, out_ch, k, k) if transposed else (out_ch, in_ch, k, k)
        state[f"model.{index}.weight"] = torch.randn(shape, generator=g) * 0.02
        state[f"model.{index}.bias"] = torch.randn(out_ch, generator=g) * 0.02
        if stale_norm_buffers and norm is not None:  # what PyTorch 0.3 saved for InstanceNorm layers
            state[f"model.{norm}.running_mean"] = torch.zeros(out_ch)
            state[f"model.{norm}.running_var"] = torch.ones(out_ch)
            state[f"model.{norm}.num_batches_tracked"] = torch.tensor(0)

    conv("1", ngf, 3, 7, norm="2")
    conv("4", 2 * ngf, ngf, 3, norm="5")
    conv("7", 4 * ngf, 2 * ngf, 3, norm="8")
    for block in range(10, 10 + n_blocks):
        conv(f"{block}.conv_block.1", 4 * ngf, 4 * ngf, 3, norm=f"{block}.conv_block.2")
        conv(f"{block}.conv_block.5", 4 * ngf, 4 * ngf, 3, norm=f"{block}.conv_block.6")
    up = 10 + n_blocks
    conv(str(up), 2 * ngf, 4 * ngf, 3, transposed=True, norm=str(up + 1))
    conv(str(up + 3), ngf, 2 * ngf, 3, transposed=True, norm=str(up + 4))
    conv(str(up + 7), 3, ngf, 7)
    return state


def test_official_key_layout_has_the_published_parameter_count():
    state = official_state_dict(64, 9)
    assert sum(t.numel() for t in state.values()) == OFFICIAL_PARAMETERS_RESNET_9BLOCKS
    assert "model.26.weight" in state and "model.18.conv_block.5.bias" in state
    model = ResnetGenerator(ngf=64, n_blocks=9)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMETERS_RESNET_9BLOCKS
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in state.items()}


def test_official_pth_loads_strictly(tmp_path):
    state = official_state_dict(64, 9)
    path = tmp_path / "horse2zebra.pth"
    torch.save(state, path)
    model, info = load_generator(path)
    assert (info.ngf, info.n_blocks, info.direction, info.kind) == (64, 9, "AtoB", "official")
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 3, 64, 64) and out.abs().max() <= 1


def test_stale_norm_buffers_are_dropped(tmp_path):
    state = official_state_dict(16, 9, stale_norm_buffers=True)
    assert any(k.endswith("running_mean") for k in state) and any(k.endswith("num_batches_tracked") for k in state)
    path = tmp_path / "old_style.pth"
    torch.save(state, path)
    model, info = load_generator(path)
    assert (info.ngf, info.n_blocks) == (16, 9)
    assert not any("running" in k or "num_batches" in k for k in model.state_dict())


def test_six_block_file_is_recognised(tmp_path):
    path = tmp_path / "resnet_6blocks.pth"
    torch.save(official_state_dict(32, 6), path)
    model, info = load_generator(path)
    assert (info.ngf, info.n_blocks, info.architecture) == (32, 6, "resnet_6blocks")
    assert len(model.model) == 10 + 6 + 9  # the official Sequential for 6 blocks has 25 entries


def test_truncated_file_is_a_weights_error(tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save(official_state_dict(8, 6), whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(WeightsError, match="cut.pth"):
        load_generator(cut)


@pytest.mark.parametrize("what", ["unrelated", "discriminator", "text"])
def test_a_file_that_is_not_a_generator_is_a_weights_error(tmp_path, what):
    path = tmp_path / f"{what}.pth"
    if what == "unrelated":
        torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    elif what == "discriminator":
        torch.save(NLayerDiscriminator(8, 3).state_dict(), path)
    else:
        path.write_text("hello")
    with pytest.raises(WeightsError) as error:
        load_generator(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message


def test_btoa_on_an_official_file_is_a_usage_error(tmp_path):
    path = tmp_path / "horse2zebra.pth"
    torch.save(official_state_dict(8, 6), path)
    with pytest.raises(UsageError, match="AtoB"):
        load_generator(path, "BtoA")


def test_a_pickled_python_object_is_refused_and_garbage_is_named_as_such(tmp_path):
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"weights": official_state_dict(8, 6), "args": argparse.Namespace(ngf=8)}, unsafe)
    with pytest.raises(WeightsError, match=r"unsafe\.pth: refused to load: it holds a Python object \(argparse"):
        load_generator(unsafe)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"garbage\n")
    with pytest.raises(WeightsError, match=r"garbage\.pth: truncated or not a PyTorch weights file"):
        load_generator(garbage)
