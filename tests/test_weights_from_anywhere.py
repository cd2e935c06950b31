"""Weights from anywhere: the generator files of the popular CycleGAN implementations load as they are, and
``cyc inspect`` says what a file is.

Each family's network is written out here from its published code's description (the layers, their order and
their names), seeded, and saved as that implementation saves it; cyc loads the file and must compute what the
test's own module computes, on a real photograph at an odd size padded as cyc pads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from cyclegan_cli.cli import cli
from cyclegan_cli.errors import WeightsError
from cyclegan_cli.framing import to_input_tensor
from cyclegan_cli.models.weights import load_generator, save_generator
from tests.helpers import CPU, real_clip, write_run

NGF, BLOCKS = 8, 2


def photo(height: int = 250, width: int = 330) -> np.ndarray:
    """A real photograph (scikit-image's astronaut), cut to an odd size: 1 x H x W x 3 uint8."""
    from skimage import data

    return data.astronaut()[100 : 100 + height, 90 : 90 + width][None]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm2d(channels, affine=kind == "instance-affine")


# --- the families, as their code builds them ---------------------------------------------------------------------


class PyTorchGanResidual(nn.Module):
    """eriklindernoren/PyTorch-GAN, implementations/cyclegan/models.py: ResidualBlock (``block``)."""

    def __init__(self, features: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(features, features, 3),
            nn.InstanceNorm2d(features),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(features, features, 3),
            nn.InstanceNorm2d(features),
        )

    def forward(self, x):
        return x + self.block(x)


class PyTorchGanGenerator(nn.Module):
    """eriklindernoren/PyTorch-GAN: GeneratorResNet, whose decoder is Upsample(x2) + a 3x3 conv."""

    def __init__(self, ngf: int = NGF, blocks: int = BLOCKS):
        super().__init__()
        out = ngf
        model = [nn.ReflectionPad2d(3), nn.Conv2d(3, out, 7), nn.InstanceNorm2d(out), nn.ReLU(inplace=True)]
        for _ in range(2):
            model += [
                nn.Conv2d(out, out * 2, 3, stride=2, padding=1),
                nn.InstanceNorm2d(out * 2),
                nn.ReLU(inplace=True),
            ]
            out *= 2
        model += [PyTorchGanResidual(out) for _ in range(blocks)]
        for _ in range(2):
            model += [
                nn.Upsample(scale_factor=2),
                nn.Conv2d(out, out // 2, 3, stride=1, padding=1),
                nn.InstanceNorm2d(out // 2),
                nn.ReLU(inplace=True),
            ]
            out //= 2
        model += [nn.ReflectionPad2d(3), nn.Conv2d(out, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class RenamedBlock(nn.Module):
    def __init__(self, channels: int, norm: str, bias: bool):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv1, self.norm1 = nn.Conv2d(channels, channels, 3, bias=bias), _norm(norm, channels)
        self.conv2, self.norm2 = nn.Conv2d(channels, channels, 3, bias=bias), _norm(norm, channels)

    def forward(self, x):
        return x + self.norm2(self.conv2(self.pad(torch.relu(self.norm1(self.conv1(self.pad(x)))))))


class RenamedGenerator(nn.Module):
    """A re-implementation with names of its own (stem, down, res, up, head) and a variant: InstanceNorm with
    learned scale and shift, or BatchNorm; convs with or without bias."""

    def __init__(self, norm: str, bias: bool, ngf: int = NGF, blocks: int = BLOCKS):
        super().__init__()
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=bias), _norm(norm, ngf), nn.ReLU())
        self.down = nn.Sequential(
            nn.Conv2d(ngf, 2 * ngf, 3, 2, 1, bias=bias),
            _norm(norm, 2 * ngf),
            nn.ReLU(),
            nn.Conv2d(2 * ngf, 4 * ngf, 3, 2, 1, bias=bias),
            _norm(norm, 4 * ngf),
            nn.ReLU(),
        )
        self.res = nn.ModuleList(RenamedBlock(4 * ngf, norm, bias) for _ in range(blocks))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, 2, 1, output_padding=1, bias=bias),
            _norm(norm, 2 * ngf),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * ngf, ngf, 3, 2, 1, output_padding=1, bias=bias),
            _norm(norm, ngf),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh())

    def forward(self, x):
        x = self.down(self.stem(x))
        for block in self.res:
            x = block(x)
        return self.head(self.up(x))


def seeded(module: nn.Module, seed: int) -> nn.Module:
    """Weights, biases, norm scales and shifts, and BatchNorm's running statistics, all drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.dtype.is_floating_point:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.2)
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.running_var.uniform_(0.5, 1.5, generator=generator)
    return module.eval()


def assert_translates_alike(path: Path, direction: str, theirs: nn.Module) -> None:
    """cyc's generator from ``path`` and the family's own module agree within 1e-5 on the padded photograph."""
    ours, _ = load_generator(path, direction)
    x, _ = to_input_tensor(photo(), "cpu", torch.float32)
    assert tuple(x.shape[-2:]) == (252, 332)  # padded to multiples of 4, as every engine does
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    # Measured on a 2-core AVX2-only AMD EPYC: output std 0.43-0.80 for the three families, and the two modules
    # agree exactly (max abs difference 0.0: the same ops in the same order, on one machine, so on any CPU kind);
    # 1e-5 leaves room for a kernel that orders its sums otherwise; bilinear for nearest, or a dropped affine, fail it.
    assert float(expected.std()) > 0.01  # a real output, not a constant one
    assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())


# --- the families load and translate as their own modules do -----------------------------------------------------


@pytest.fixture(scope="module")
def family_files(tmp_path_factory) -> dict[str, tuple[Path, dict[str, nn.Module]]]:
    """Each family's file as it publishes it, with the modules it was saved from, by direction."""
    root = tmp_path_factory.mktemp("families")
    files = {}
    # eriklindernoren/PyTorch-GAN: torch.save(G_AB.state_dict(), "saved_models/%s/G_AB_%d.pth")
    pytorch_gan = seeded(PyTorchGanGenerator(), 1)
    torch.save(pytorch_gan.state_dict(), root / "G_AB_10.pth")
    files["pytorch-gan"] = (root / "G_AB_10.pth", {"AtoB": pytorch_gan})
    # two generators and a discriminator in one file, each trained under DataParallel ("module." keys)
    g_ab, g_ba = (
        seeded(RenamedGenerator("instance-affine", bias=False), 2),
        seeded(RenamedGenerator("instance-affine", False), 3),
    )
    discriminator = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 4, 1, 1))

    def dp(module):
        return {f"module.{k}": v for k, v in module.state_dict().items()}

    torch.save({"G_A2B": dp(g_ab), "G_B2A": dp(g_ba), "D_A": dp(discriminator)}, root / "both.pth")
    files["affine, several networks"] = (root / "both.pth", {"AtoB": g_ab, "BtoA": g_ba})
    # BatchNorm without conv biases (the reference's --norm batch), wrapped as {"state_dict": ..., "epoch": ...}
    batch = seeded(RenamedGenerator("batch", bias=False), 4)
    torch.save({"state_dict": batch.state_dict(), "epoch": 7}, root / "batch.pth")
    files["batchnorm, wrapped"] = (root / "batch.pth", {"AtoB": batch})
    return files


@pytest.mark.parametrize("family", ["pytorch-gan", "affine, several networks", "batchnorm, wrapped"])
def test_each_family_translates_as_its_own_module(family_files, family):
    path, modules = family_files[family]
    for direction, module in modules.items():
        assert_translates_alike(path, direction, module)


def test_the_variant_travels_in_the_safetensors_metadata(family_files, tmp_path):
    path, modules = family_files["pytorch-gan"]
    model, info = load_generator(path, "AtoB")
    assert (info.ngf, info.n_blocks, info.norm, info.upsample, info.bias) == (NGF, BLOCKS, "instance", "resize", True)
    assert "PyTorch-GAN" in info.family
    save_generator(model, info, tmp_path / "G.safetensors")
    assert_translates_alike(tmp_path / "G.safetensors", "AtoB", modules["AtoB"])
    path, _ = family_files["batchnorm, wrapped"]
    _, info = load_generator(path, "AtoB")
    assert (info.norm, info.bias) == ("batch", False)


def test_several_generators_without_a_direction_in_their_names_are_listed(tmp_path):
    one, two = RenamedGenerator("instance", True).state_dict(), RenamedGenerator("instance", True).state_dict()
    torch.save({"first": one, "second": two}, tmp_path / "two.pth")
    result = CliRunner().invoke(
        cli, ["run", str(photo_file(tmp_path)), "--checkpoint", str(tmp_path / "two.pth"), *CPU]
    )
    assert result.exit_code == 2, result.output
    assert "holds 2 generators (first (way unknown), second (way unknown))" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_file_that_is_no_generator_is_one_line_naming_what_it_holds(tmp_path):
    torch.save({"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}, tmp_path / "classifier.pth")
    result = CliRunner().invoke(
        cli, ["run", str(photo_file(tmp_path)), "--checkpoint", str(tmp_path / "classifier.pth"), *CPU]
    )
    assert result.exit_code == 2, result.output  # as every weights file cyc cannot use (WeightsError)
    line = result.output.strip()
    assert "not a ResNet generator" in line and "fc.weight (10, 4)" in line and "PyTorch-GAN" in line
    assert len(line.splitlines()) == 1 and "Traceback" not in line


def photo_file(folder: Path) -> Path:
    from PIL import Image

    path = folder / "photo.png"
    Image.fromarray(photo()[0]).save(path)
    return path


# --- everything downstream accepts them ---------------------------------------------------------------------------


def test_a_pytorch_gan_file_exports_with_parity_and_runs_on_a_real_clip(family_files, tmp_path):
    path, _ = family_files["pytorch-gan"]
    exported = CliRunner().invoke(cli, ["export", str(path), "--format", "onnx", "--out", str(tmp_path / "x"), *CPU])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "x" / "G_AB.onnx").is_file()
    out = tmp_path / "clip.mp4"
    run = ["run", str(real_clip("bikes.mp4")), "--checkpoint", str(path), "--max-frames", "6", "--out", str(out)]
    result = CliRunner().invoke(cli, [*run, "--engine", "torch", *CPU])
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.stat().st_size > 0


# --- cyc inspect ---------------------------------------------------------------------------------------------------


def inspect(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["inspect", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_inspect_describes_each_kind_of_file(family_files, tmp_path):
    pytorch_gan = inspect(str(family_files["pytorch-gan"][0]))
    assert pytorch_gan["format"] == "PyTorch weights (not written by cyc)" and "PyTorch-GAN" in pytorch_gan["family"]
    generator = pytorch_gan["generators"]["AtoB"]
    assert (generator["ngf"], generator["blocks"], generator["upsampling"]) == (NGF, BLOCKS, "upsample + conv")
    assert generator["parameters"] == sum(p.numel() for p in PyTorchGanGenerator().parameters())
    both = inspect(str(family_files["affine, several networks"][0]))
    assert set(both["generators"]) == {"AtoB", "BtoA"} and both["generators"]["BtoA"]["norm"] == "instance-affine"

    run = write_run(tmp_path, ngf=8, n_blocks=2)
    folder = inspect(str(run))
    assert folder["format"].startswith("cyc run folder") and set(folder["generators"]) == {"AtoB", "BtoA"}
    assert folder["domains"] == "horse -> zebra"
    model, info = load_generator(run, "AtoB")
    save_generator(model, info, tmp_path / "G_AB.safetensors")
    safetensors = inspect(str(tmp_path / "G_AB.safetensors"))
    assert safetensors["format"] == "cyc safetensors generator" and list(safetensors["generators"]) == ["AtoB"]

    exported = CliRunner().invoke(cli, ["export", str(run), "--format", "onnx", "--direction", "AtoB", *CPU])
    assert exported.exit_code == 0, exported.output
    graph = inspect(str(run / "export" / "G_AB.onnx"))
    assert graph["format"] == "ONNX graph" and graph["precision"] == "fp32"
    assert graph["digest"].startswith("matches")

    text = CliRunner().invoke(cli, ["inspect", str(family_files["batchnorm, wrapped"][0])])
    assert text.exit_code == 0 and "norm batch" in text.output and "conv_bias False" in text.output


def test_inspect_describes_what_it_cannot_load_and_refuses_only_a_missing_path(tmp_path):
    torch.save({"fc.weight": torch.zeros(10, 4)}, tmp_path / "classifier.pth")
    facts = inspect(str(tmp_path / "classifier.pth"))
    assert "not a ResNet generator" in facts["problem"]
    missing = CliRunner().invoke(cli, ["inspect", str(tmp_path / "nothing.pth")])
    assert missing.exit_code == 2 and "no such file" in missing.output


@pytest.mark.parametrize(
    ("upsample", "blocks"), [("transposed", "full"), ("resize", "full"), ("transposed", "separable")]
)
def test_the_macs_formula_counts_every_conv_of_the_module(upsample, blocks):
    """generator_macs against a count made by hooks on the module itself (output pixels x out x in / groups x
    kernel area for a conv, input pixels x in x out x kernel area for a transposed conv); separable blocks are
    cyc distill's students."""
    from cyclegan_cli.models.architectures import ResnetGenerator
    from cyclegan_cli.models.macs import generator_macs

    model, counted = ResnetGenerator(NGF, BLOCKS, upsample=upsample, blocks=blocks), []

    def count(layer, inputs, output):
        kernel = layer.weight.shape[-2] * layer.weight.shape[-1]
        if isinstance(layer, nn.ConvTranspose2d):
            counted.append(inputs[0].numel() * layer.out_channels * kernel)
        else:
            counted.append(output.numel() * layer.in_channels // layer.groups * kernel)

    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            layer.register_forward_hook(count)
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 48))
    assert generator_macs(NGF, BLOCKS, 48, 64, upsample, blocks) == sum(counted)


def first_frames(path: Path, count: int) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for _, frame in zip(range(count), container.decode(video=0))]


def test_stable_carries_the_statistics_of_a_norm_with_learned_scale_and_shift(family_files, tmp_path):
    """--stable-strength replaces each InstanceNorm by one with carried statistics; a frame that starts a shot
    is normalised as the plain network does, learned scale and shift included (dropped, it differs)."""
    path, _ = family_files["affine, several networks"]
    common = ["run", str(real_clip("bikes.mp4")), "--checkpoint", str(path), "--direction", "BtoA"]
    common += ["--max-frames", "3", "--engine", "torch", "--codec", "libx264", "--crf", "0", *CPU]
    plain = CliRunner().invoke(cli, [*common, "--no-stable", "--out", str(tmp_path / "plain.mkv")])
    stable = CliRunner().invoke(
        cli, [*common, "--stable", "--stable-strength", "0.9", "--out", str(tmp_path / "stable.mkv")]
    )
    assert plain.exit_code == 0 and stable.exit_code == 0, plain.output + stable.output
    (first_plain, *_), (first_stable, *_) = (
        first_frames(tmp_path / "plain.mkv", 3),
        first_frames(tmp_path / "stable.mkv", 3),
    )
    assert np.array_equal(first_stable, first_plain)


def test_an_affine_norm_exports_to_fp16_with_its_norms_in_fp32(family_files, tmp_path):
    """The fp16 graph keeps every InstanceNormalization in fp32, its learned scale and shift included (the
    checker refuses a float16 scale), and runs close to PyTorch."""
    from cyclegan_cli.export.onnx_graph import instance_norm_dtypes

    path, _ = family_files["affine, several networks"]
    result = CliRunner().invoke(cli, ["export", str(path), "--format", "onnx", "--fp16", "--out", str(tmp_path), *CPU])
    assert result.exit_code == 0, result.output
    for key in ("G_AB", "G_BA"):
        norms = instance_norm_dtypes(tmp_path / f"{key}.fp16.onnx")
        assert len(norms) == 5 + 2 * BLOCKS  # after every conv but the last
        assert all(n.input == n.output == "float32" for n in norms)


def test_the_names_that_say_a_direction():
    from cyclegan_cli.models.layouts import known_way

    for name in ("G_A2B", "netG_A", "G_AB", "generator_ab", "G_AtoB", "module.G_A2B"):
        assert known_way(name) == "AtoB", name
    for name in ("G_B2A", "netG_B", "G_BA", "generator_ba", "G_BtoA"):
        assert known_way(name) == "BtoA", name
    for name in ("generator", "first", "D_A", "netD_B", "model"):
        assert known_way(name) is None, name


def test_prefixed_networks_in_one_flat_file_and_in_safetensors(tmp_path):
    """G_A2B.* and G_B2A.* keys in one flat state dict, as .pth and as a safetensors file written by someone else
    (keys sorted: read in natural order, model.10 after model.9)."""
    from safetensors.torch import save_file

    g_ab, g_ba = seeded(PyTorchGanGenerator(blocks=5), 5), seeded(PyTorchGanGenerator(blocks=5), 6)
    flat = {f"G_A2B.{k}": v for k, v in g_ab.state_dict().items()}
    flat |= {f"G_B2A.{k}": v for k, v in g_ba.state_dict().items()}
    torch.save(flat, tmp_path / "flat.pth")
    save_file({k: v.contiguous() for k, v in flat.items()}, str(tmp_path / "flat.safetensors"))
    for path in (tmp_path / "flat.pth", tmp_path / "flat.safetensors"):
        assert_translates_alike(path, "AtoB", g_ab)
        assert_translates_alike(path, "BtoA", g_ba)


def test_every_variant_round_trips_through_cyc_safetensors(family_files, tmp_path):
    for family in ("affine, several networks", "batchnorm, wrapped"):
        path, modules = family_files[family]
        model, info = load_generator(path, "AtoB")
        save_generator(model, info, tmp_path / "G.safetensors")
        assert_translates_alike(tmp_path / "G.safetensors", "AtoB", modules["AtoB"])


def test_convs_with_and_without_bias_in_one_file_are_refused(tmp_path):
    state = RenamedGenerator("instance", True).state_dict()
    del state["down.0.bias"]
    torch.save(state, tmp_path / "mixed.pth")
    with pytest.raises(WeightsError, match="some convs have a bias and some do not"):
        load_generator(tmp_path / "mixed.pth", "AtoB")


def test_carried_statistics_keep_a_learned_scale_and_shift(family_files):
    """The torch engine's carried InstanceNorm: on a frame seen twice, the carried statistics are the frame's own,
    so the second output is the plain one (within a grey level); it differs where scale and shift are dropped."""
    from cyc_engines.torch import TorchEngine
    from cyclegan_cli.plugin_api import ModelSource

    path, _ = family_files["affine, several networks"]
    model, info = load_generator(path, "AtoB")
    engine = TorchEngine(ModelSource(path=path, direction="AtoB", generator=model, info=info))
    assert engine.carries_statistics
    frame = np.ascontiguousarray(photo(64, 96))
    plain, state = engine(frame), engine.new_stream_state(0.5)
    engine.run_carried(frame, state, [True])
    again = engine.run_carried(frame, state, [False])
    # measured 0 grey levels on a 2-core AVX2-only EPYC; 1 allows the carried formula's float rounding to differ
    # from F.instance_norm's on another CPU kind; dropping the carried path's scale and shift fails it (seen)
    assert np.abs(again.astype(int) - plain.astype(int)).max() <= 1


def test_a_batchnorm_generator_has_no_statistics_to_carry(family_files):
    from cyc_engines.torch import TorchEngine
    from cyclegan_cli.plugin_api import ModelSource

    path, _ = family_files["batchnorm, wrapped"]
    model, info = load_generator(path, "AtoB")
    assert not TorchEngine(ModelSource(path=path, direction="AtoB", generator=model, info=info)).carries_statistics
