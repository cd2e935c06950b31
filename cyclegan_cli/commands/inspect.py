"""``cyc inspect``: the Click layer. The facts are gathered in :mod:`cyclegan_cli.models.inspection`."""

from __future__ import annotations

from pathlib import Path

import click

from cyclegan_cli.commands.options import debug_option


@click.command(context_settings={"max_content_width": 100})
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the facts as one JSON object, for scripts.")
@debug_option
def inspect(path: Path, as_json: bool) -> None:
    """Say what a weights file, a run folder or an exported file is, without running it.

    \b
    Weights (a run folder, a cyc checkpoint or .safetensors generator, a .pth of the reference
    implementation or of a re-implementation, wrappers and files of several networks included):
      format and family   who wrote it, in which layout
      generators          per direction: width (ngf), residual blocks, norm (instance, instance-
                          affine, batch), upsampling (transposed conv, or upsample + conv), conv
                          biases, parameters, and GMACs for one 256x256 frame
      step, settings      for a cyc checkpoint: the training step and the settings it recorded
    Exported files (.onnx, a TensorRT .engine, an OpenVINO int8 .xml): what their sidecar records
    (precision, direction, width, blocks, the GPU of an engine, the weights' sha256 and step) and
    whether the weights they were made from are still those of their source.

    Nothing is run and nothing is written. A file that can be read is always described: what could
    not be made of it is said under 'problem'.

    \b
    Examples:
      cyc inspect runs/h2z
      cyc inspect latest_net_G_A.pth
      cyc inspect runs/h2z/export/G_AB.int8.xml --json

    Exit codes: 0 described, 2 no such file or folder.
    """
    import json

    from cyclegan_cli.models.inspection import inspect_path, render

    facts = inspect_path(path)
    if as_json:
        click.echo(json.dumps(facts, indent=2))
    else:
        for line in render(facts):
            click.echo(line)
