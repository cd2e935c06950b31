"""Every ``cyc`` command line in the README parses (Click resolves each option, so none can drift from the code),
and those that finish in seconds run for real, in the README's order, in a folder holding the files they name,
against a pretrained model, a dataset and the FID Inception network (random weights) served from 127.0.0.1
(``CYC_PRETRAINED_URL``, ``CYC_DATASETS_URL``, ``CYC_INCEPTION_URL``).
Training and export commands are only parsed: they take minutes with the README's settings.
"""

from __future__ import annotations

import shlex
import shutil
import threading
from fractions import Fraction
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cyclegan_cli.cli import cli
from cyclegan_cli.hub import download
from tests.helpers import make_video, probe, write_run
from tests.test_downloads import FileServer, dataset_zip, official_file

README = Path(__file__).resolve().parent.parent / "README.md"
PARSED_ONLY = {"train", "export", "distill"}  # minutes each with the README's settings


def readme_commands() -> list[list[str]]:
    """The ``cyc ...`` lines of the README's code blocks, split as a shell would (comments dropped)."""
    return [shlex.split(line, comments=True) for line in readme_code_lines("cyc")]


def readme_code_lines(program: str) -> list[str]:
    """The lines of the README's code blocks that run ``program``, as written."""
    lines, in_block = [], False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and line.startswith(f"{program} "):
            lines.append(line)
    return lines


def parse(args: list[str]) -> click.Command:
    """Resolve ``cyc ARGS`` down to its subcommand with Click, checking every option and argument."""
    ctx = cli.make_context("cyc", args[1:])
    command, rest = cli, [*getattr(ctx, "_protected_args", []), *ctx.args]
    while isinstance(command, click.Group):
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
    assert not rest, f"{' '.join(args)}: left over: {rest}"
    return command


def test_the_readme_has_the_newcomers_commands_first():
    commands = [" ".join(c) for c in readme_commands()]
    assert commands[0] == "cyc run clip.mp4 --checkpoint horse2zebra"
    head = README.read_text().split("## ")[0]
    assert "make demo" in head and "make test" in head


def test_every_readme_command_parses_and_the_quick_ones_run(tmp_path, monkeypatch, inception_file):
    server = FileServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        server.files["/models/horse2zebra.pth"] = official_file(1)
        server.files["/models/zebra2horse.pth"] = official_file(2)
        server.files["/datasets/horse2zebra.zip"] = dataset_zip("horse2zebra")
        server.files["/inception.pth"] = inception_file.read_bytes()
        monkeypatch.setenv("CYC_PRETRAINED_URL", f"{server.url}/models")
        monkeypatch.setenv("CYC_DATASETS_URL", f"{server.url}/datasets")
        monkeypatch.setenv("CYC_INCEPTION_URL", f"{server.url}/inception.pth")
        monkeypatch.setenv("CYC_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setenv("CYC_RUN_DEVICE", "cpu")  # what these runs mean, on any machine
        monkeypatch.setenv("CYC_EVAL_DEVICE", "cpu")
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")  # --shard auto: a Slurm array of one task
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "1")
        monkeypatch.setattr(download, "RETRY_DELAYS", ())
        monkeypatch.chdir(tmp_path)
        _make_the_files_the_readme_names(tmp_path)

        ran = []
        for args in readme_commands():
            command = parse(args)
            if command.name in PARSED_ONLY:
                continue
            result = CliRunner().invoke(cli, args[1:])
            assert result.exit_code == 0, f"{' '.join(args)}\n{result.output}"
            ran.append(" ".join(args))
    finally:
        server.shutdown()
        server.server_close()
    assert "cyc run clip.mp4 --checkpoint horse2zebra" in ran and "cyc doctor" in ran
    assert "cyc eval horse2zebra --data data/horse2zebra --direction AtoB" in ran
    assert probe(tmp_path / "clip_AtoB.mp4")["frames"] == probe(tmp_path / "clip.mp4")["frames"]
    assert (tmp_path / "data" / "horse2zebra" / "trainA").is_dir()
    assert (tmp_path / "painted").is_dir() and (tmp_path / "photo_AtoB.jpg").is_file()
    assert probe(tmp_path / "film_AtoB.mp4")["pts"] == probe(tmp_path / "film.mp4")["pts"]


def _make_the_files_the_readme_names(root: Path) -> None:
    make_video(root / "clip.mp4", frames=12, rate=Fraction(24))
    shutil.copy(root / "clip.mp4", root / "video.mp4")
    shutil.copy(root / "clip.mp4", root / "film.mp4")
    write_run(root / "runs")  # "the latest run"
    image = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "photo.jpg")
    for folder in ("holidays/day1", "shots", "photos"):
        (root / folder).mkdir(parents=True)
        Image.fromarray(image).save(root / folder / "a.png")
    (root / "horse2zebra.pth").write_bytes(official_file(3))
    (root / "G_AB_200.pth").write_bytes(official_file(4))
    write_run(root / "runs", "h2z")


@pytest.mark.parametrize("args", [["cyc", "run", "x.mp4", "--no-such-option"], ["cyc", "run", "x", "--engine", "nope"]])
def test_the_parser_check_catches_drift(args):
    with pytest.raises(click.UsageError):
        parse(args)


def test_the_readme_install_works_from_a_checkout(tmp_path):
    """No release of cyc is on the package index: the README installs from the checkout, with extras that
    exist, and the wheel it builds (built here, offline, from a copy of the checkout) is the file it names and
    holds the three packages under their installed names and their entry points."""
    import subprocess
    import sys
    import zipfile
    from importlib.metadata import metadata

    root = README.parent
    text = README.read_text()
    assert "pip install 'cyclegan-cli" not in text and "pip install cyclegan-cli" not in text
    installs = [" ".join(shlex.split(line, comments=True)) for line in readme_code_lines("pip")]
    assert installs[0].startswith("pip install .[") and any(line.startswith("pip install dist/") for line in installs)
    extras = set(metadata("cyclegan-cli").get_all("Provides-Extra"))  # pyproject's, as installed
    for line in installs:
        named = line.split("[", 1)[1].split("]")[0].split(",")
        assert set(named) <= extras, f"{line}: no such extra in pyproject.toml ({sorted(extras)})"
    assert [shlex.split(line, comments=True) for line in readme_code_lines("python")] == [
        ["python", "-m", "build", "--wheel"]
    ]

    source = tmp_path / "checkout"
    ignored = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")
    shutil.copytree(root, source, ignore=ignored)
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next(line for line in installs if line.startswith("pip install dist/")).split()[2].split("[")[0]
    assert [p.name for p in (tmp_path / "dist").iterdir()] == [Path(wheel).name]
    with zipfile.ZipFile(tmp_path / "dist" / Path(wheel).name) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for module in ("cyclegan_cli/cli.py", "cyc_engines/torch.py", "cyc_plugins/video.py"):
        assert module in names
    assert not [n for n in names if n.startswith(("engines/", "plugins/", "tests/"))]
    assert "cyc = cyclegan_cli.cli:main" in entry_points and "[cyc.writers]" in entry_points
