"""``cyc export``: the Click layer. The work is in ``cyclegan_cli.export.exporter``; nothing heavy is imported here."""

from __future__ import annotations

import click

from cyclegan_cli.commands.options import (
    EXPORT_PRECISIONS,
    debug_option,
    device_option,
    help_figures,
    min_psnr_option,
    runs_dir_option,
)
from cyclegan_cli.export.onnx_graph import FP32_MAX_ABS_ERROR
from cyclegan_cli.models.artifacts import DEFAULT_MAX_SHAPE, DEFAULT_MIN_SHAPE, DEFAULT_OPT_SHAPE


def _shape(ctx, param, value: str) -> str:
    from cyclegan_cli.errors import UsageError
    from cyclegan_cli.export.exporter import parse_shape

    try:
        parse_shape(value, f"--{param.name.replace('_', '-')}")
    except UsageError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1]) from None
    return value


@click.command(context_settings={"max_content_width": 100})
@click.argument("source", required=False, type=click.Path())
@runs_dir_option
@click.option(
    "--direction",
    type=click.Choice(["AtoB", "BtoA", "both"]),
    default="both",
    show_default=True,
    help="Which generator(s) to export: AtoB, BtoA, or both (those the source has).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx", "tensorrt", "openvino", "auto"]),
    default="auto",
    show_default=True,
    help="onnx, tensorrt (ONNX plus an engine; fails without GPU/TensorRT), openvino (int8 only), or auto (the "
    "engine where possible; with --int8 the OpenVINO int8 model).",
)
@click.option(
    "--precision",
    type=click.Choice(EXPORT_PRECISIONS),
    default="fp32",
    show_default=True,
    help="Precision of the graph and engine (fp16 keeps InstanceNorm and the I/O in fp32), or int8: an OpenVINO "
    "model quantized with NNCF, for CPUs.",
)
@click.option("--fp16", "fp16", is_flag=True, help="Shorthand for --precision fp16.")
@click.option("--int8", "int8", is_flag=True, help="Shorthand for --precision int8.")
@click.option(
    "--calibration",
    metavar="PATH",
    help="int8: images to calibrate on and measure with: a folder, a quoted glob or a video of the source domain "
    "(default: the run's own training images of that domain, from its config.json).",
)
@min_psnr_option("int8: the gate: the int8 model must come this close to fp32 (PSNR in dB) on held-out frames.")
@click.option("--opset", type=click.IntRange(17, 23), default=18, show_default=True, help="ONNX opset version.")
@click.option(
    "--min-shape",
    default=DEFAULT_MIN_SHAPE,
    show_default=True,
    callback=_shape,
    metavar="NxCxHxW",
    help="Smallest input the TensorRT engine accepts.",
)
@click.option(
    "--opt-shape",
    default=DEFAULT_OPT_SHAPE,
    show_default=True,
    callback=_shape,
    metavar="NxCxHxW",
    help="Input shape the TensorRT engine is tuned for.",
)
@click.option(
    "--max-shape",
    default=DEFAULT_MAX_SHAPE,
    show_default=True,
    callback=_shape,
    metavar="NxCxHxW",
    help="Largest input the TensorRT engine accepts.",
)
@click.option(
    "--workspace",
    type=click.FloatRange(min=0.25),
    default=4.0,
    show_default=True,
    metavar="GIB",
    help="GPU scratch memory TensorRT may use while building, in GiB.",
)
@click.option("--out", type=click.Path(file_okay=False), help="Folder for the files (default: the run's export/).")
@device_option
@debug_option
@help_figures(max_abs=FP32_MAX_ABS_ERROR)
def export(
    source,
    runs_dir,
    direction,
    fmt,
    precision,
    fp16,
    int8,
    calibration,
    min_psnr,
    opset,
    min_shape,
    opt_shape,
    max_shape,
    workspace,
    out,
    device,
) -> None:
    """Export a trained generator to ONNX, and build a TensorRT engine where a GPU and TensorRT exist; or,
    with --int8, an int8 OpenVINO model for CPUs.

    SOURCE is a run folder, a checkpoint .pt, a .safetensors generator, an official CycleGAN .pth, or
    the name of an official pretrained model such as horse2zebra ('cyc pretrained list'; fetched into
    the cache on first use) (default: the latest run under --runs-dir). Files go to the run's export/
    folder (for a lone weights file, an export/ folder beside it), or --out:

    \b
      G_AB.onnx, G_BA.onnx                      fp32 graphs
      G_AB.fp16.onnx                            fp16 graph (--fp16)
      G_AB.fp16.<gpu>-trt<version>.engine       TensorRT engine for this GPU and TensorRT version
      G_AB.int8.xml + G_AB.int8.bin             int8 OpenVINO model (--int8)
      <file>.json                               sidecar: direction, domains, interface, shapes, versions,
                                                the weights' sha256 and training step

    Every graph has one interface: input 'input' and output 'output', float32 NCHW RGB in [-1, 1], dynamic
    batch, height and width (height and width multiples of 4). An fp16 graph holds fp16 weights and
    activations, keeps its float32 I/O through Cast nodes and computes every InstanceNormalization in fp32:
    fp16 InstanceNorm overflows on GPUs, and TensorRT 10.12+ takes its precision from the graph (strongly typed
    networks; TensorRT 11 has no FP16 builder flag).

    After each export the graph runs in ONNX Runtime on a random input and on a test picture and is compared
    with PyTorch; the error is printed. An fp32 graph whose max abs error exceeds {max_abs:g} is not kept (exit 1).

    A TensorRT engine runs only on the GPU model and TensorRT version it was built with; its input shapes must
    lie within --min-shape .. --max-shape (N x 3 x H x W; frames are padded up to multiples of 4, so a 1080p
    frame is 1080 x 1920). Building takes minutes; tactic timings are cached in tensorrt/timing.cache under the cache
    folder ('cyc doctor' shows where; CYC_CACHE_DIR moves it) so later builds are faster. 'cyc run' on a GPU picks a matching engine from the run's export/ folder.

    With --format auto and no NVIDIA GPU or no TensorRT, the ONNX files are still written and one line says
    what the engine needs; --format tensorrt then fails with exit code 1.

    --int8 quantizes with NNCF (pip install 'cyclegan-cli[openvino]'): each direction calibrates on crops of
    its source domain's images (--calibration, else the run's training images; unreadable files are skipped
    and counted), then runs held-out crops through the int8 and the fp32 model. The sidecar records that
    fidelity (PSNR, max abs error, frames, the gate); below --min-psnr the export fails (exit 1) with the
    figure and keeps nothing. The input of every InstanceNorm stays fp32 (measured: quantizing it costs 3-6 dB
    and saves no time). int8 runs several times faster than fp32 on CPUs with VNNI or AMX; 'cyc run' there
    picks it from the run's export/ folder while its weights digest matches.

    \b
    Examples:
      cyc export --fp16
      cyc export runs/h2z --direction BtoA --format onnx
      cyc export horse2zebra.pth --fp16 --opt-shape 4x3x720x1280 --max-shape 8x3x1088x1920
      cyc export --int8
      cyc export horse2zebra --int8 --calibration "photos/horses/*.jpg"
    """
    from cyclegan_cli.errors import UsageError
    from cyclegan_cli.export.exporter import ExportRequest, export_source, make_profile

    if int8 and fp16:
        raise UsageError("--fp16 and --int8 contradict each other: pick one precision")

    request = ExportRequest(
        source=source,
        runs_dir=runs_dir,
        direction=direction,
        format=fmt,
        precision="int8" if int8 else "fp16" if fp16 else precision,
        opset=opset,
        profile=make_profile(min_shape, opt_shape, max_shape),
        workspace_gib=workspace,
        out=out,
        device=device,
        calibration=calibration,
        min_psnr=min_psnr,
    )
    result = export_source(request)
    for path in result.files:
        click.echo(str(path))
