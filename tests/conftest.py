"""Shared fixtures: tiny generators and run folders made by the tests themselves (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_generator, write_run


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> Path:
    """A runs folder holding one tiny run (ngf 8, 2 blocks, both directions)."""
    runs = tmp_path_factory.mktemp("runs")
    write_run(runs)
    return runs


@pytest.fixture(scope="session")
def tiny_generator_file(tmp_path_factory) -> Path:
    """A lone AtoB generator saved as safetensors, with its architecture in the metadata."""
    from cyclegan_cli.weights import GeneratorInfo, save_generator

    path = tmp_path_factory.mktemp("weights") / "G_AB.safetensors"
    save_generator(make_generator(1), GeneratorInfo(ngf=8, n_blocks=2, direction="AtoB"), path)
    return path


@pytest.fixture(scope="session")
def trained_generator(tmp_path_factory) -> Path:
    """G_AB of a tiny CycleGAN trained for 400 steps on a tiny dataset (about 15 s): unlike a fresh generator,
    it passes a picture's structure through, as trained ones do."""
    from click.testing import CliRunner

    from cyclegan_cli.cli import cli
    from tests.helpers import TINY, make_domains

    root = tmp_path_factory.mktemp("trained")
    make_domains(root / "data", count=8)
    args = ["train", str(root / "data"), "--name", "t", "--out", str(root / "runs"), *TINY]
    result = CliRunner().invoke(cli, [*args, "--max-steps", "400", "--lr", "5e-4", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return root / "runs" / "t" / "G_AB.safetensors"
