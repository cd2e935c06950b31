"""One cache folder for everything cyc keeps between commands: pretrained models, dataset zips, TensorRT timing
caches, int8 models quantized at run time, OpenVINO conversions of weights. It is platformdirs' user cache folder
for ``cyclegan-cli`` (``~/.cache/cyclegan-cli`` on Linux), or ``CYC_CACHE_DIR`` where that is set (a shared disk on
a cluster, a test's temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "CYC_CACHE_DIR"


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("cyclegan-cli", appauthor=False))


def cache_dir(kind: str) -> Path:
    """``models``, ``datasets``, ``tensorrt``, ``int8``, ``openvino`` or ``eval`` under the cache root (not created
    here)."""
    return cache_root() / kind


def folder_size(folder: Path) -> int:
    """Bytes held by the files under ``folder`` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).is_dir() else 0
