"""``cyc doctor``: the Click layer. The facts are gathered in ``cyclegan_cli.commands.doctor_facts``; nothing heavy is imported here."""

from __future__ import annotations

import click

from cyclegan_cli.commands.options import debug_option, device_option


@click.command(context_settings={"max_content_width": 100})
@device_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the same facts as one JSON object on stdout (for a bug report), instead of the screen.",
)
@debug_option
def doctor(device, as_json) -> None:
    """Why cyc is slow here, or does not run: this machine's facts.

    One screen of facts about this machine, for you or for a bug report:

    \b
      Versions       Python, cyc, torch with its CUDA and cuDNN, TensorRT, ONNX Runtime and its
                     execution providers, OpenVINO, PyAV with its FFmpeg and whether the encoders
                     libx264, libx265, aac and libopus exist
      Devices        each CUDA GPU (name, compute capability, memory) or why none is visible,
                     Apple MPS, the CPU's model and the features that decide its speed (AVX2,
                     AVX512F, AVX512-VNNI, AVX512-BF16, AMX-BF16), the CPU count, torch's threads
      Plugins        every engine, reader and writer: available, or why not (as 'cyc plugins')
      Cache          the cache folder (models, datasets, TensorRT timing caches, int8 models,
                     OpenVINO conversions) and its size; CYC_CACHE_DIR moves it
      --engine auto  what 'cyc run' would pick on --device, and why, for a folder of 100 photos
                     at 256x256 and for a 1-minute 1080p video at 30 fps (no exported model)

    A library that is not installed says so and names the pip command that installs it. A library
    that is installed but broken shows 'error: ...' on its own row and the rest of the report still
    appears; --debug adds each such error's traceback on stderr.

    \b
    --json prints one object with the keys versions (python, cyc, torch, tensorrt, onnxruntime,
    openvino, av), devices (cuda, mps, cpu), plugins (engines, readers, writers), cache and auto;
    every part has a status: ok, not installed (with install) or error (with error).

    \b
    Examples:
      cyc doctor
      cyc doctor --device cuda:1           the auto rule on the second GPU
      cyc doctor --json > doctor.json      attach it to a bug report

    Exit codes: 0 the report was printed (whatever it found), 2 a usage error (a bad option).
    """
    import contextlib
    import json
    import sys

    from rich.console import Console

    from cyclegan_cli.commands.doctor_facts import gather, render

    with contextlib.redirect_stdout(sys.stderr):  # stdout holds the report alone, whatever a library prints
        report = gather(device)
    if as_json:
        click.echo(json.dumps(report.facts, indent=2))
    else:
        render(report.facts, Console())
    if (click.get_current_context().find_root().obj or {}).get("debug"):
        for text in report.tracebacks:
            print(text, file=sys.stderr)
