"""``cyc distill``: the Click layer. The work is in :mod:`cyclegan_cli.training.distill_run`.

The defaults are :class:`~cyclegan_cli.training.distill_config.DistillConfig`'s (torch-free, so ``--help`` stays
fast); the presets' MACs in the help are computed from the architecture, not typed.
"""

from __future__ import annotations

from dataclasses import fields

import click

from cyclegan_cli.commands.options import (
    compile_option,
    debug_option,
    device_option,
    direction_option,
    dist_timeout_option,
    precision_option,
    rank_exits,
    runs_dir_option,
    setting_option,
)
from cyclegan_cli.training.distill_config import DEFAULT_PRESET, PRESETS, TEACHER_MACS_REFERENCE, DistillConfig

_DEFAULT = {f.name: f.default for f in fields(DistillConfig)}


def preset_lines() -> list[str]:
    """One line per preset: its shape and its MACs at 256x256 and 1080p against the full generator's."""
    from cyclegan_cli.models.macs import generator_macs

    full = generator_macs(*TEACHER_MACS_REFERENCE, 256, 256)
    lines = []
    for name, p in PRESETS.items():
        small = generator_macs(p.ngf, p.n_blocks, 256, 256, blocks=p.blocks)
        hd = generator_macs(p.ngf, p.n_blocks, 1920, 1080, blocks=p.blocks)
        default = " (default)" if name == DEFAULT_PRESET else ""
        lines.append(
            f"  {name:<7} width {p.ngf}, {p.n_blocks} separable blocks: {small / 1e9:.2f} GMACs at 256x256 "
            f"({full / small:.0f}x fewer), {hd / 1e9:.0f} at 1080p{default}"
        )
    return lines


def _help() -> str:
    from cyclegan_cli.models.macs import generator_macs

    full = generator_macs(*TEACHER_MACS_REFERENCE, 256, 256) / 1e9
    return f"""Teach a small, fast student generator to translate like SOURCE.

    \b
    Examples:
      cyc distill runs/h2z --data data/horse2zebra/trainA
      cyc distill horse2zebra --data film.mp4 --name film-small --minutes 30
      cyc distill runs/h2z --data photos/ --resume --steps 8000
      cyc run film.mp4 --checkpoint runs/film-small     the student, like any generator

    SOURCE is anything 'cyc run --checkpoint' takes: a run folder, a checkpoint, a .safetensors
    generator, another implementation's .pth, a pretrained name. --data gives images of the domain
    SOURCE translates from (images, folders, globs, videos: frames are sampled from videos, so the
    film to translate can be the material). The frames are resized (shorter side --load-size), the
    teacher translates each whole frame once (its fastest precision on the device), and one frame in
    8 is held out (or --held-out) to measure fidelity.

    \b
    The student is a ResNet generator with depthwise-separable residual blocks
    (the full generator: {full:.1f} GMACs at 256x256):
{chr(10).join("    " + line for line in preset_lines())}

    Each step: --batch-size random crops of --crop-size from the frames and the teacher's outputs;
    the loss is L1 to the teacher's output, + --feature-weight x the distance of the student's block
    activations (through learned 1x1 maps) to the teacher's (the teacher then runs on each step's
    crops), + --gan-weight x an LSGAN term from a fresh PatchGAN that takes the teacher's outputs as
    real. Adam at --lr, decaying to zero along a cosine over --steps.

    \b
    The run folder RUNS_DIR/NAME/ (NAME: --name, else SOURCE's name and the preset) receives:
      config.json, checkpoints/last.pt   the settings; every --save-every steps and at the end
      samples/step_NNNNNN.png            held-out frames: input | teacher | student
      metrics.csv                        mean losses every --log-every steps; held-out PSNR
      pairs.npz                          the frames and the teacher's outputs (not recomputed
                                         on --resume)
      G_AB.safetensors (or G_BA)         the student, with its teacher's sha256 and its
                                         measured fidelity in its metadata

    At the end the student's PSNR against the teacher on the held-out frames is printed beside two
    baselines: the identity (the input itself) and the best colour matrix fitted per image; and KID
    between their outputs where the eval extra is installed. 'cyc run' and 'cyc inspect' show it.

    --resume continues from checkpoints/last.pt bit for bit on a CPU (with the same --steps; --steps,
    --minutes, --device, --precision, --compile and the logging options may change). Ctrl-C finishes
    the step, saves and exits with 130. Exit codes: 0 done, 1 a failure, 2 a usage or data error, 130
    interrupted.

    \b
    Several processes (data-parallel, one per GPU, or several on CPUs):
      torchrun --nproc-per-node 2 -m cyclegan_cli distill runs/h2z --data photos/
    Each rank takes its share of each step's crops (N ranks step as one process with N times
    --batch-size); rank 0 translates the frames, writes and measures while the others wait.
    """


@click.command(context_settings={"max_content_width": 100}, help=_help())
@click.argument("source")
@click.option(
    "--data",
    multiple=True,
    help="Images, folders, globs or videos of the domain SOURCE translates from (repeat the option).",
)
@direction_option()
@click.option(
    "--size",
    "preset",
    type=click.Choice(list(PRESETS)),
    default=DEFAULT_PRESET,
    show_default=True,
    help="The student's preset (above).",
)
@setting_option(
    _DEFAULT,
    "--steps",
    click.IntRange(1),
    "Steps in all, counted over the whole run; the learning rate reaches zero there.",
)
@click.option(
    "--minutes",
    type=click.FloatRange(0, min_open=True),
    help="Stop this session after so many minutes (saved; continue with --resume).",
)
@click.option("--name", help="The run's name: its folder is RUNS_DIR/NAME.")
@runs_dir_option
@click.option("--held-out", help="Images or a video to measure fidelity on (default: one frame of --data in 8).")
@setting_option(_DEFAULT, "--frames", click.IntRange(2), "Frames taken from --data (spread over its files and videos).")
@setting_option(_DEFAULT, "--load-size", click.IntRange(16), "Frames are resized to this shorter side.")
@setting_option(_DEFAULT, "--crop-size", click.IntRange(16), "Training crops' side (a multiple of 4).")
@setting_option(_DEFAULT, "--batch-size", click.IntRange(1), "Crops per step.")
@setting_option(
    _DEFAULT,
    "--lr",
    click.FloatRange(0, min_open=True),
    "Adam's learning rate at step 0 (a cosine takes it to zero at --steps).",
)
@setting_option(
    _DEFAULT,
    "--feature-weight",
    click.FloatRange(0),
    "Weight of the feature distillation term (0: off; on, the teacher runs at every step).",
)
@setting_option(_DEFAULT, "--gan-weight", click.FloatRange(0), "Weight of the adversarial term (0: off).")
@setting_option(_DEFAULT, "--seed", int, "Seed of the student's initial weights and of every step's crops.")
@setting_option(
    _DEFAULT,
    "--save-every",
    click.IntRange(1),
    "Write checkpoints/last.pt every N steps (and at the end, and on Ctrl-C).",
)
@setting_option(_DEFAULT, "--sample-every", click.IntRange(1), "Write a sample grid every N steps (and at the end).")
@setting_option(_DEFAULT, "--eval-every", click.IntRange(0), "Held-out PSNR every N steps (0: at the end only).")
@setting_option(
    _DEFAULT,
    "--log-every",
    click.IntRange(1),
    "A row of mean losses in metrics.csv (and a plain line in a log) every N steps.",
)
@click.option("--resume", is_flag=True, help="Continue the run RUNS_DIR/NAME from its last checkpoint.")
@device_option
@precision_option(
    "fp32", ("fp32", "bf16"), "The student's training arithmetic (bf16: autocast, where the CPU or GPU has it)."
)
@compile_option(
    "torch.compile the student's steps (about 40 s to start; measured on an AVX2-only CPU: 1.27x faster steps "
    "for small, none for tiny)."
)
@dist_timeout_option
@click.option("--no-progress", is_flag=True, help="Plain lines instead of the progress bar.")
@debug_option
@click.pass_context
def distill(ctx, source: str, data: tuple[str, ...], no_progress: bool, compile_: bool, **options) -> None:
    from rich.console import Console

    from cyclegan_cli.training import distributed
    from cyclegan_cli.training.distill_run import distill as run_distill

    if options["crop_size"] % 4:
        raise click.BadParameter("must be a multiple of 4", param_hint="--crop-size")
    config = DistillConfig(source=source, data=list(data), progress=not no_progress, compile=compile_, **options)
    with rank_exits(ctx):
        result = run_distill(config, Console(stderr=True, soft_wrap=True))
    if distributed.env_rank() != 0:
        return
    f = result.fidelity
    kid = f" KID {f['kid']}." if "kid" in f else ""
    left = (
        ""
        if result.step >= config.steps
        else f" To continue: cyc distill {source} --runs-dir {config.runs_dir} --name {result.run.name} --resume."
    )
    click.echo(
        f"Distilled {result.steps_run} steps (step {result.step} of {config.steps}) in {result.seconds:.0f} s. "
        f"Student: {result.weights}. Held-out PSNR against the teacher: {f['psnr_db']:.2f} dB on "
        f"{f['held_out_frames']} frames (identity {f['identity_psnr_db']:.2f}, best colour matrix "
        f"{f['colour_matrix_psnr_db']:.2f}).{kid}{left}"
    )
