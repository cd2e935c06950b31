"""Options shared by the subcommands, each with one name, one meaning and one help text everywhere:
``--device``, ``--precision``, ``--runs-dir``, ``--checkpoint``, ``--direction``, ``--compile``, ``--dist-timeout``
and ``--debug``."""

from __future__ import annotations

import contextlib

import click

from cyclegan_cli import registry
from cyclegan_cli.export.quantize import MIN_PSNR
from cyclegan_cli.models.run_folder import RUNS_DIR
from cyclegan_cli.training.config import DEFAULT_TIMEOUT_S

DEVICES_HELP = "Where to compute: auto (CUDA if present, else CPU), cpu, cuda, cuda:N or mps."


def _check_device(ctx, param, value: str) -> str:
    value = value.strip().lower()
    if value in ("auto", "cpu", "mps", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise click.BadParameter(f"{value!r} is not one of auto, cpu, cuda, cuda:N, mps")


def _set_debug(ctx, param, value: bool) -> None:
    if value:
        ctx.ensure_object(dict)["debug"] = True
        ctx.find_root().ensure_object(dict)["debug"] = True


device_option = click.option(
    "--device", default="auto", show_default=True, callback=_check_device, metavar="DEVICE", help=DEVICES_HELP
)
runs_dir_option = click.option(
    "--runs-dir",
    default=RUNS_DIR,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder of training runs; 'the latest run' is the newest */checkpoints/last.pt in it.",
)
checkpoint_option = click.option(
    "--checkpoint",
    type=click.Path(),
    help="Weights to use: a run folder, a checkpoint .pt, a .safetensors generator, an official .pth, or a "
    "pretrained model's name such as horse2zebra (default: the latest run).",
)
debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="Show the full traceback when something fails.",
)


# The precision lists: training computes in these (autocast); inference adds int8 (a quantized OpenVINO model, on
# CPUs); cyc export writes graphs, engines or int8 models in these.
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
RUN_PRECISIONS = (*TRAIN_PRECISIONS, "int8")
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")
RUN_PRECISION_HELP = (
    "Arithmetic precision: auto picks bf16 on CPUs with AMX/AVX512-BF16, fp16 on CUDA, else fp32, and int8 where "
    "the rule below says; int8 runs a quantized OpenVINO model, measured against fp32 first (--min-psnr)."
)


dist_timeout_option = click.option(
    "--dist-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Under torchrun: how long a rank waits for the others at any exchange before it gives up (exit 1), "
    "so a rank that died or hung stops the rest. It must cover the longest checkpoint write. "
    f"Default: {DEFAULT_TIMEOUT_S:g} ({DEFAULT_TIMEOUT_S / 60:g} min, gloo's default; for NCCL too).",
)


def compile_option(help_text: str):
    return click.option("--compile", "compile_", is_flag=True, help=help_text)


def precision_option(default: str = "auto", choices=TRAIN_PRECISIONS, help_text: str | None = None):
    return click.option(
        "--precision",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help=help_text
        or "Arithmetic precision: auto picks bf16 on CPUs with AMX/AVX512-BF16, fp16 on CUDA, else fp32.",
    )


def min_psnr_option(help_text: str):
    """int8's fidelity gate, in dB against fp32 (``cyc export --int8`` and ``cyc run``)."""
    return click.option(
        "--min-psnr", type=click.FloatRange(min=0), default=MIN_PSNR, show_default=True, metavar="DB", help=help_text
    )


def setting_option(defaults: dict, flag: str, kind, help_text: str):
    """An option whose default is the settings dataclass's field of the same name (``--crop-size``: crop_size)."""
    return click.option(
        flag, type=kind, default=defaults[flag.lstrip("-").replace("-", "_")], show_default=True, help=help_text
    )


def direction_option(choices=("AtoB", "BtoA"), default: str = "AtoB"):
    return click.option(
        "--direction",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Which generator to use: AtoB translates domain A into B, BtoA the other way.",
    )


def engine_choices() -> list[str]:
    return ["auto", *registry.names("engines")]


def engine_option(help_text: str):
    """``--engine``: auto or an installed engine (the choices come from the registry)."""
    return click.option(
        "--engine", type=click.Choice(engine_choices()), default="auto", show_default=True, help=help_text
    )


def help_figures(**figures):
    """A command decorator: its help (the docstring) with ``{name}`` filled in from ``figures``, so that a number
    the help states is the constant the code uses, written once."""

    def fill(command):
        if command.__doc__ is not None:  # python -OO strips docstrings: no help text to fill in
            command.__doc__ = command.__doc__.format(**figures)
        return command

    return fill


def name_table(*columns: str):
    """The table a ``list`` subcommand prints: a name column, then ``columns`` (folded where long)."""
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    table.add_column("name", no_wrap=True)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


@contextlib.contextmanager
def rank_exits(ctx):
    """Around a command that may run as one rank of several (torchrun): an error rank 0 reports for every rank,
    and a Ctrl-C, end the other ranks silently with rank 0's exit code."""
    from cyclegan_cli.training import distributed

    try:
        yield
    except distributed.ReportedElsewhere as error:  # rank 0 reports it for every rank
        ctx.exit(error.exit_code)
    except KeyboardInterrupt:
        if distributed.env_rank() != 0:  # rank 0 says it
            ctx.exit(130)
        raise
