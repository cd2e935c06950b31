"""``cyc run``: translate images, folders, globs and videos through a trained generator."""

from __future__ import annotations

import click

from cyclegan_cli.commands.options import (
    RUN_PRECISION_HELP,
    RUN_PRECISIONS,
    checkpoint_option,
    debug_option,
    device_option,
    direction_option,
    engine_option,
    help_figures,
    min_psnr_option,
    precision_option,
    runs_dir_option,
)
from cyclegan_cli.translation.break_even import COMPILE_MIN_MEGAPIXEL_FRAMES, INT8_AT_START_FACTOR, INT8_BREAK_EVEN
from cyclegan_cli.translation.temporal import CUT_THRESHOLD, MAX_DEVIATION, STABLE_BY_DEFAULT, StableSettings


def _int8_line(kind: str) -> str:
    """One kind of CPU's int8 figures, as the help lists them (:mod:`cyclegan_cli.translation.break_even`)."""
    figure = INT8_BREAK_EVEN[kind]
    measured = "measured" if figure.measured else "borrowed"
    return (
        f"{kind + ':':<13}int8 {figure.speedup:g}x {figure.against}; at start from {figure.threshold:g} "
        f"(break-even {figure.megapixel_frames:g}, {measured})"
    )


@click.command(context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@direction_option()
@checkpoint_option
@runs_dir_option
@click.option(
    "-o",
    "--out",
    type=click.Path(),
    help="Output file (one input file, a name with an extension) or folder (created). "
    "Default: beside each input as <stem>_<direction>.<ext>; a folder goes to <folder>_<direction>/.",
)
@engine_option("Inference backend; auto follows the rule below and says what it chose and why.")
@device_option
@precision_option(choices=RUN_PRECISIONS, help_text=RUN_PRECISION_HELP)
@min_psnr_option(
    "int8: the gate: a model quantized here must come this close to fp32 (PSNR on held-out frames), and a "
    "prebuilt one must have measured so."
)
@click.option(
    "--batch-size", type=click.IntRange(1), default=1, show_default=True, help="Frames of one size per batch."
)
@click.option("--size", metavar="N|WxH", help="Resize frames first: N scales the shorter side to N, WxH is exact.")
@click.option(
    "--max-frames", type=click.IntRange(1), help="Translate only the first N frames of each video (a preview)."
)
@click.option(
    "--tile",
    type=click.IntRange(0),
    metavar="N",
    help="Translate each frame in strips of N rows with the whole frame's norm statistics (the same output, "
    "in bounded memory); 0: never (a frame too large for the free memory is an error before any work). "
    "Default: strips only for frames the free memory cannot hold whole.",
)
@click.option("--compare", is_flag=True, help="Write input and output side by side.")
@click.option("--ext", help="Image output format, e.g. png or .jpg (default: the input's).")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG / WebP quality.")
@click.option("--codec", help="Video codec, e.g. libx264, libx265, libvpx-vp9 (default: one that fits the container).")
@click.option(
    "--crf", type=click.IntRange(0, 63), default=18, show_default=True, help="Video quality (lower is better)."
)
@click.option("--no-audio", is_flag=True, help="Drop the audio track instead of copying it.")
@click.option("--skip-existing", is_flag=True, help="Skip inputs whose output exists (resume a big job).")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist (inputs are never overwritten).")
@click.option(
    "--stable/--no-stable",
    default=None,
    help="Temporally stable video (off by default): still regions hold the previous output; optionally "
    "motion-compensated blending and carried norm statistics (see below).",
)
@click.option(
    "--stable-hold",
    type=click.FloatRange(0, 64),
    default=StableSettings.hold,
    show_default=True,
    metavar="LEVELS",
    help="--stable: where the input did not change, the previous output is kept until the plain one moves "
    "more than this many grey levels from it (0: off).",
)
@click.option(
    "--stable-blend",
    type=click.FloatRange(0, 0.95),
    default=StableSettings.blend,
    show_default=True,
    help="--stable: in moving regions, weight of the previous output warped along the motion, where the motion "
    "is reliable (0: off).",
)
@click.option(
    "--stable-strength",
    type=click.FloatRange(0, 0.99),
    default=StableSettings.norm_momentum,
    show_default=True,
    help="--stable: weight of the carried norm statistics against each frame's own (torch engines; 0: off).",
)
@click.option(
    "--shard",
    metavar="I/N|auto",
    help="Translate only share I (0-based) of N: N processes together translate every input once (see below).",
)
@click.option(
    "--segments",
    type=click.IntRange(1, 1000),
    metavar="K",
    help="Cut each video into K pieces of about equal length (<output>.seg<k>of<K>.<ext>); 'cyc join' joins them "
    "(with --no-stable the join equals a single run's frames exactly).",
)
@debug_option
@help_figures(
    kinds="\n".join(" " * 27 + _int8_line(kind) for kind in INT8_BREAK_EVEN).lstrip(),
    compile=COMPILE_MIN_MEGAPIXEL_FRAMES,
    factor=INT8_AT_START_FACTOR,
    deviation=MAX_DEVIATION,
    cut=CUT_THRESHOLD,
)
def run(
    inputs,
    direction,
    checkpoint,
    runs_dir,
    out,
    engine,
    device,
    precision,
    min_psnr,
    batch_size,
    size,
    max_frames,
    tile,
    compare,
    ext,
    quality,
    codec,
    crf,
    no_audio,
    skip_existing,
    overwrite,
    shard,
    segments,
    stable,
    stable_hold,
    stable_blend,
    stable_strength,
) -> None:
    """Translate images, folders, globs and videos.

    \b
    Examples:
      cyc run photo.jpg                                 latest run in ./runs, AtoB
      cyc run holidays/ --direction BtoA --out painted/ a folder tree, mirrored
      cyc run "shots/*.png" --checkpoint horse2zebra.pth
      cyc run video.mp4 --direction BtoA                same frames, fps, timestamps and audio
      cyc run video.mp4 --engine onnxruntime --compare  side by side: input | output

    INPUT is an image (JPEG, PNG, WebP, BMP, TIFF), a video (anything FFmpeg reads: mp4, mkv, mov, avi,
    webm...), a folder (searched recursively) or a quoted glob; give several at once if you like.
    Frames are translated at their own size (padded to a multiple of 4, cropped back) unless --size says
    otherwise. Every output is written under a temporary name and renamed when whole. Ctrl-C keeps a
    video's frames so far as <name>.partial.<ext> and exits with 130.

    \b
    Model: --checkpoint takes a run folder, a checkpoint .pt, a .safetensors generator, an official
    CycleGAN .pth (AtoB only), an exported .onnx, an int8 .xml or a TensorRT .engine, or the name of
    an official pretrained model (horse2zebra, style_monet, ...: 'cyc pretrained list'), fetched into
    the cache on first use and then used offline; --direction BtoA takes its published partner
    (zebra2horse).
    Without it, the newest */checkpoints/last.pt under --runs-dir is used.

    \b
    --engine auto picks, in this order:
      exported file      the first of tensorrt, openvino, onnxruntime (then third-party
                         engines) that takes the file's suffix, runs on the device and computes
                         the file's precision: .engine/.plan -> tensorrt; .onnx -> openvino
                         for an fp32 graph on a CPU, else onnxruntime; .xml -> openvino
      CUDA               a matching engine from 'cyc export' (same GPU, TensorRT and weights),
                         else torch-compile fp16 for long jobs, torch fp16 for short ones
      CPU with AVX2      openvino int8 where it measured faster on the kind of CPU (AVX2's
                         multiply-add, VNNI or AMX): the run's export/G_AB.int8.xml ('cyc export
                         --int8') or one quantized here before (the cache), when its weights
                         digest matches and its measured PSNR passes --min-psnr; else, for a job
                         long enough to repay quantizing at start (256x256 is 0.066
                         megapixel-frames, 720p 0.92), quantized from the job's frames (13-19 s
                         more before the first frame on the CPUs measured, full generator, 2 cores)
                         and cached; long enough is {factor:g} times the break-even measured on the
                         kind of CPU, in megapixel-frames ('cyc doctor' says which applies here):
                           {kinds}
                         below the gate, or for shorter jobs, the rules below, and the reason
                         says why
      CPU with AMX       torch-compile bf16 when one frame size has >= {compile:g} megapixel-frames
                         (about 600 frames at 256x256, 45 at 720p) and g++ exists
      other CPU jobs     openvino (bf16 where the CPU has AMX or AVX512-BF16, else fp32),
                         else onnxruntime, else torch

    \b
    Stable video (off by default; each frame is translated alone): CycleGAN translates each frame
    alone, so sensor noise and moving objects make a video shimmer where nothing changed. --stable
    keeps the previous output wherever the input did not change beyond the video's own noise, until
    the plain output moves more than --stable-hold grey levels from it; then it follows. Nothing is
    resampled, and no pixel strays more than {deviation:g} grey levels from the plain output. With a trained
    translator on three real clips it cut the change in still regions to 0.09-0.47x the plain
    output's, at 35 dB or more against it, for 2-45 ms a frame (docs/internals.md); it does not
    steady a camera pan, so it stays off by default. In moving regions --stable-blend mixes in the
    previous output warped along the optical flow (found at most 480 px wide, about 0.14 s a 1080p
    frame on 2 CPU cores), and --stable-strength carries each InstanceNorm's statistics from frame
    to frame (torch engines); both are off by default: on the measured clips they cost fidelity or
    did not help. All restart at every scene cut (PySceneDetect's content score >= {cut:g}), at every new
    video and at every --segments piece; still images are untouched.

    \b
    Many processes, many machines: --shard I/N gives process I of N its share of the inputs, balanced
    by work (frames x pixels) and decided from the inputs alone, so a share run again with
    --skip-existing is the same share; outputs keep the names a single run gives them. --shard auto
    reads the scheduler: torchrun (RANK, WORLD_SIZE), a Slurm array (SLURM_ARRAY_TASK_ID,
    SLURM_ARRAY_TASK_COUNT), a Kubernetes indexed job (JOB_COMPLETION_INDEX, with CYC_SHARD_COUNT set
    to the job's completions). One machine with several GPUs: one process per GPU,
    --shard i/N --device cuda:i. With --segments K each video's pieces are shared out too; when all
    are done, 'cyc join OUTPUT' puts them together, to the frame, with the source's audio.

    \b
    Large frames: before translating, cyc estimates the peak memory of each frame size on the chosen
    engine (measured figures) against the memory free (RAM, or the GPU's). A frame that would not fit
    whole is translated in strips of rows, in PyTorch on the same device, and cyc says so once per
    size. Every InstanceNorm layer then normalises with the statistics of the whole frame, computed
    exactly layer by layer, so the output is the whole frame's (to a grey level), without seams; it
    costs about 2-3x the time. --tile N asks for strips of N rows; --tile 0 forbids them. A frame in
    strips keeps its own statistics under --stable-strength (the rest of --stable applies).

    Exit codes: 0 all done (also a shard with nothing to do), 1 some inputs failed (each named on its
    own line) or a frame cannot fit in memory, 2 usage error, 130 interrupted.
    """
    from cyclegan_cli.plugin_api import WriteOptions
    from cyclegan_cli.translation.pipeline import Interrupted
    from cyclegan_cli.translation.report import print_failures, print_summary, progress_for, stderr_console
    from cyclegan_cli.translation.translate import RunOptions, failed, translate

    options = RunOptions(
        inputs=list(inputs),
        direction=direction,
        out=out,
        ext=ext,
        overwrite=overwrite,
        skip_existing=skip_existing,
        checkpoint=checkpoint,
        runs_dir=runs_dir,
        engine=engine,
        device=device,
        precision=precision,
        min_psnr=min_psnr,
        batch_size=batch_size,
        max_frames=max_frames,
        tile=tile,
        compare=compare,
        size=size,
        segments=segments,
        shard=shard,
        stable=StableSettings(norm_momentum=stable_strength, blend=stable_blend, hold=stable_hold)
        if (STABLE_BY_DEFAULT if stable is None else stable)
        else None,
        write=WriteOptions(ext=ext, quality=quality, codec=codec, crf=crf, audio=not no_audio),
    )
    console = stderr_console()
    try:
        with progress_for(console) as progress:
            report = translate(options, progress=progress, say=lambda text: console.print(text, highlight=False))
    except Interrupted as interrupted:  # what was finished is still named, and what failed before Ctrl-C
        _echo_done(interrupted.stats.results)
        print_failures(console, interrupted.stats.results)
        raise
    _echo_done(report.stats.results)
    print_summary(console, report)
    ctx = click.get_current_context()
    if (ctx.find_root().obj or {}).get("debug"):  # each failed input's own traceback
        import traceback

        for result in failed(report.stats.results):
            if result.error is not None:
                traceback.print_exception(result.error)
    if failed(report.stats.results):
        ctx.exit(1)


def _echo_done(results) -> None:
    """The outputs written, one per line on stdout (for scripts)."""
    for result in results:
        if result.status == "done":
            click.echo(str(result.job.output))
