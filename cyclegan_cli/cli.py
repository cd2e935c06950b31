"""The ``cyc`` command line: a thin Click layer over the domain modules.

Nothing heavy is imported here or in the ``cmd_*`` modules at top level (torch alone takes seconds to import),
so ``cyc --help`` and ``cyc --version`` answer at once. Domain errors (``cyclegan_cli.errors``) become a one-line
``Error: ...`` with their exit code only here, at the edge; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
import traceback

import click

from cyclegan_cli import __version__
from cyclegan_cli.commands.options import debug_option
from cyclegan_cli.errors import CycError


class CycClickError(click.ClickException):
    def __init__(self, error: CycError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


class CycGroup(click.Group):
    """Turns domain errors and Ctrl-C into exit codes, unless ``--debug`` asks for the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CycError as error:
            if (ctx.obj or {}).get("debug"):
                traceback.print_exc()
                raise click.exceptions.Exit(error.exit_code) from None
            raise CycClickError(error) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            raise click.exceptions.Exit(130) from None


@click.group(
    cls=CycGroup,
    context_settings={"auto_envvar_prefix": "CYC", "help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "-V", "--version", prog_name="cyc")
@debug_option
def cli() -> None:
    """Train CycleGAN image translators and run them on images, folders and videos.

    \b
    A result in the first minute, no data or GPU needed:
      cyc run clip.mp4 --checkpoint horse2zebra  an official pretrained model, fetched once

    \b
    A typical session:
      cyc datasets download horse2zebra          an official dataset -> data/horse2zebra
      cyc train data/horse2zebra --name h2z      train on trainA/ and trainB/ (resumable)
      cyc distill runs/h2z --data photos/        a student 52x lighter that translates the same
      cyc export --fp16                          latest run -> ONNX (+ TensorRT engine on a GPU)
      cyc run video.mp4 --direction BtoA         translate a video, keeping its fps and audio
      cyc run photos/ --out painted/             translate a folder tree
      cyc eval --data data/horse2zebra           FID and KID of the latest run on the test images
      cyc inspect G_AB_200.pth                   what a weights or exported file is (any implementation's)

    Every option can also be set by an environment variable named CYC_<COMMAND>_<OPTION>,
    e.g. CYC_RUN_ENGINE=onnxruntime or CYC_TRAIN_BATCH_SIZE=4.

    'cyc doctor' shows versions, devices, engines and the cache when something is slow or does not run.

    Exit codes: 0 done, 1 a failure or some inputs failed, 2 a usage error, 130 interrupted (work kept).
    """


def _register_commands() -> None:
    from cyclegan_cli.commands.datasets import datasets
    from cyclegan_cli.commands.distill import distill
    from cyclegan_cli.commands.doctor import doctor
    from cyclegan_cli.commands.eval import eval_
    from cyclegan_cli.commands.export import export
    from cyclegan_cli.commands.inspect import inspect
    from cyclegan_cli.commands.join import join
    from cyclegan_cli.commands.plugins import plugins
    from cyclegan_cli.commands.pretrained import pretrained
    from cyclegan_cli.commands.run import run
    from cyclegan_cli.commands.train import train

    for command in (train, distill, export, run, eval_, join, inspect, pretrained, datasets, plugins, doctor):
        cli.add_command(command)


_register_commands()


def main() -> None:
    sys.exit(cli.main(prog_name="cyc"))
