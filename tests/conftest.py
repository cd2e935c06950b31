"""Shared fixtures: tiny generators and run folders made by the tests themselves (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def make_generator(seed: int = 0, ngf: int = 8, n_blocks: int = 2):
    import torch

    from cyclegan_cli.models import ResnetGenerator, init_weights

    torch.manual_seed(seed)
    generator = init_weights(ResnetGenerator(ngf=ngf, n_blocks=n_blocks), gain=0.2)
    return generator.eval()


def write_run(root: Path, name: str = "tiny", ngf: int = 8, n_blocks: int = 2) -> Path:
    """A run folder as ``cyc train`` leaves it mid-training: only ``checkpoints/last.pt``."""
    import torch

    from cyclegan_cli.weights import CHECKPOINT_FORMAT

    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "config": {"ngf": ngf, "n_blocks": n_blocks, "domain_a": "horse", "domain_b": "zebra"},
        "models": {
            "G_AB": make_generator(1, ngf, n_blocks).state_dict(),
            "G_BA": make_generator(2, ngf, n_blocks).state_dict(),
        },
    }
    torch.save(checkpoint, run / "checkpoints" / "last.pt")
    return run


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
