"""Plugins from other packages, found the way a real install is found: a ``*.dist-info`` folder with
``entry_points.txt`` on the path of a ``cyc`` subprocess. No monkeypatching of the registry.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import make_video, probe

PLUGIN_MODULE = '''
"""A third party's cyc plugins, for the tests."""
import os
import signal
from pathlib import Path

import numpy as np

from cyc_engines.torch import TorchEngine
from cyclegan_cli.plugin_api import Engine, Frame, MediaInfo, Reader, Writer


class InvertEngine(Engine):
    name = "invert"
    description = "255 - x, for the tests"

    def __call__(self, batch):
        return 255 - batch


class SolidReader(Reader):
    """A '.solid' file holds "WIDTH HEIGHT VALUE": one picture of that size, every channel VALUE."""

    name = "solid"
    kind = "image"
    description = "solid colour pictures, for the tests"

    @classmethod
    def can_read(cls, path):
        return 10 if Path(path).suffix == ".solid" else 0

    def _values(self):
        return [int(v) for v in self.path.read_text().split()]

    @property
    def info(self):
        width, height, _ = self._values()
        return MediaInfo("image", width, height, 1)

    def frames(self):
        width, height, value = self._values()
        yield Frame(0, np.full((height, width, 3), value, np.uint8))


class RawWriter(Writer):
    """A '.rawrgb' file holds "RAWRGB WIDTH HEIGHT", a newline, then the pixels, RGB row by row."""

    name = "rawrgb"
    kind = "image"
    description = "raw RGB pixels, for the tests"

    @classmethod
    def can_write(cls, path):
        return 10 if Path(path).suffix == ".rawrgb" else 0

    def write(self, frame, image):
        height, width, _ = image.shape
        self.data = b"RAWRGB %d %d\\n" % (width, height) + np.ascontiguousarray(image, np.uint8).tobytes()

    def commit(self):
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(self.data)
        os.replace(tmp, self.path)

    def abort(self):
        return None


class CtrlCEngine(TorchEngine):
    """The torch engine, which presses Ctrl-C on its own process at its 10th batch: a deterministic Ctrl-C."""

    name = "ctrl-c"
    calls = 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == 10:
            os.kill(os.getpid(), signal.SIGINT)
        return super().__call__(batch)
'''


def install_fake_distribution(site: Path, name: str, entry_points: str, module: str | None = None) -> None:
    """What pip leaves in site-packages for a package ``name`` that declares ``entry_points``."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    if module is not None:
        (site / f"{name}_plugins.py").write_text(module)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site-packages")
    install_fake_distribution(
        site,
        "fakecyc",
        """
        [cyc.engines]
        invert = fakecyc_plugins:InvertEngine
        ctrl-c = fakecyc_plugins:CtrlCEngine
        [cyc.readers]
        solid = fakecyc_plugins:SolidReader
        [cyc.writers]
        rawrgb = fakecyc_plugins:RawWriter
        """,
        PLUGIN_MODULE,
    )
    install_fake_distribution(site, "brokencyc", "[cyc.engines]\nbroken = brokencyc_missing_module:Engine\n")
    return site


def cyc(site: Path, *args) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "300"}  # wide enough that tables do not fold words
    command = [sys.executable, "-m", "cyclegan_cli", *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def translate_solid(site: Path, folder: Path, generator: Path, size: str, ext: str) -> None:
    """``cyc run grey.solid`` (the fake reader: a solid grey picture of ``size``) through the fake inverting engine
    into a file of suffix ``ext``."""
    (folder / "grey.solid").write_text(f"{size} 40")
    options = ["--engine", "invert", "--device", "cpu", "--checkpoint", generator, "--ext", ext]
    done = cyc(site, "run", folder / "grey.solid", *options)
    assert done.returncode == 0, done.stderr


def test_a_third_party_engine_and_reader_run_end_to_end(site, tmp_path, tiny_generator_file):
    translate_solid(site, tmp_path, tiny_generator_file, "24 16", "png")
    pixels = np.asarray(Image.open(tmp_path / "grey_AtoB.png"))
    assert pixels.shape == (16, 24, 3) and (pixels == 255 - 40).all()
    listed = cyc(site, "plugins").stdout
    assert "invert" in listed and "solid" in listed and "rawrgb" in listed and "fakecyc" in listed


def test_a_third_party_writer_writes_the_output(site, tmp_path, tiny_generator_file):
    """A writer registered under cyc.writers by another package takes the outputs of its suffix: the file holds
    exactly the bytes it writes for the translated picture."""
    translate_solid(site, tmp_path, tiny_generator_file, "12 8", "rawrgb")
    assert (tmp_path / "grey_AtoB.rawrgb").read_bytes() == b"RAWRGB 12 8\n" + bytes([255 - 40]) * (12 * 8 * 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey.solid", "grey_AtoB.rawrgb"]


def test_a_broken_plugin_is_skipped_with_one_warning(site, tmp_path, tiny_generator_file):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    done = cyc(site, "run", tmp_path / "a.png", "--device", "cpu", "--checkpoint", tiny_generator_file)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "brokencyc" in line]
    assert len(warnings) == 1 and "'broken'" in warnings[0] and "ModuleNotFoundError" in warnings[0], done.stderr
    asked = cyc(
        site,
        "run",
        tmp_path / "a.png",
        "--engine",
        "broken",
        "--checkpoint",
        tiny_generator_file,
        "--overwrite",
        "--device",
        "cpu",
    )
    assert asked.returncode == 1 and "Traceback" not in asked.stderr
    assert "fails to load" in asked.stderr and "uninstall brokencyc" in asked.stderr
    assert "fails to load" in cyc(site, "plugins").stdout


@pytest.mark.parametrize("stable", ["--no-stable", "--stable"])
def test_ctrl_c_keeps_a_playable_partial_video(site, tmp_path, tiny_generator_file, stable):
    clip = make_video(tmp_path / "long.mp4", frames=120, size=(64, 48))
    done = cyc(site, "run", clip, "--engine", "ctrl-c", "--device", "cpu", "--checkpoint", tiny_generator_file, stable)
    assert done.returncode == 130, done.stderr
    partial = tmp_path / "long_AtoB.partial.mp4"
    assert partial.is_file() and not (tmp_path / "long_AtoB.mp4").exists(), done.stderr
    assert 0 < probe(partial)["frames"] < 120
    assert "Traceback" not in done.stderr and str(partial) in done.stderr
