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
    from cyclegan_cli.models.weights import GeneratorInfo, save_generator

    path = tmp_path_factory.mktemp("weights") / "G_AB.safetensors"
    save_generator(make_generator(1), GeneratorInfo(ngf=8, n_blocks=2, direction="AtoB"), path)
    return path


@pytest.fixture(scope="session")
def inception_file(tmp_path_factory) -> Path:
    """torch-fidelity's FID Inception network with random weights (``make_inception_weights``), made once per
    session: a 96 MB file that ``cyc eval`` fetches from a test's server."""
    pytest.importorskip("torch_fidelity", reason="cyc eval needs torch-fidelity (pip install '.[eval]')")
    from tests.helpers import make_inception_weights

    return make_inception_weights(tmp_path_factory.mktemp("inception") / "weights-inception.pth")


@pytest.fixture
def inception_server(monkeypatch, tmp_path, inception_file):
    """A real HTTP server on 127.0.0.1 that serves ``inception_file`` as ``CYC_INCEPTION_URL``, with a fresh cache
    (``CYC_CACHE_DIR``) and no waits between retries."""
    import threading

    from cyclegan_cli.hub import download
    from tests.test_downloads import FileServer

    server = FileServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.files["/inception.pth"] = inception_file.read_bytes()
    monkeypatch.setenv("CYC_INCEPTION_URL", f"{server.url}/inception.pth")
    monkeypatch.setenv("CYC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "RETRY_DELAYS", (0.0, 0.0))
    yield server
    server.shutdown()
    server.server_close()
