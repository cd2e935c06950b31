"""The command line itself: fast help, help on every option, environment variables, exit codes."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from cyclegan_cli import __version__
from cyclegan_cli.cli import cli

HEAVY_MODULES = ("torch", "numpy", "cv2", "av", "onnx", "onnxruntime", "openvino", "tensorrt", "PIL")


def test_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from cyclegan_cli.cli import cli\n"
        "try:\n    cli(['--help'], prog_name='cyc')\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_subcommand_documents_every_option(name):
    command = cli.commands[name]
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert command.help and len(command.help.split()) > 10, f"{name} needs a real help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"cyc {name} {param.opts[0]} has no help"


def test_options_read_environment_variables(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "a.png")], env={"CYC_RUN_ENGINE": "no-such-engine"})
    assert result.exit_code == 2
    assert "no-such-engine" in result.output


def test_usage_error_is_one_line_without_traceback(tmp_path):
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "missing.jpg")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("Error:") and "no such file" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "cyclegan_cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and __version__ in result.stdout


def test_plugins_lists_every_engine_and_prints_install_hints_verbatim():
    """Reasons hold text like 'cyclegan-cli[tensorrt]' that rich would read as markup if it were not escaped."""
    result = CliRunner().invoke(cli, ["plugins"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for engine in ("torch", "torch-compile", "onnxruntime", "openvino", "tensorrt"):
        assert f" {engine} " in result.output
    assert "cyclegan-cli[tensorrt]" in result.output


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cyclegan_cli", "run", str(tmp_path / "missing.jpg"), "--debug"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Traceback" in result.stderr
