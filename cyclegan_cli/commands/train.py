"""``cyc train``: train a CycleGAN translator on two unpaired image folders (the loop is in ``train.py``).

The options' defaults are :class:`~cyclegan_cli.training.config.TrainConfig`'s (torch-free, so ``--help`` stays fast).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import click

from cyclegan_cli.commands.options import (
    compile_option,
    debug_option,
    device_option,
    dist_timeout_option,
    precision_option,
    rank_exits,
)
from cyclegan_cli.errors import UsageError
from cyclegan_cli.training.config import GAN_MODES, TrainConfig
from cyclegan_cli.training.held_out import FID_MIN_IMAGES

_EXPLICIT_SOURCES = ("COMMANDLINE", "ENVIRONMENT")
_DEFAULT = {f.name: f.default for f in fields(TrainConfig)}


def _folder(**kwargs):
    return click.Path(file_okay=False, **kwargs)


@click.command(context_settings={"max_content_width": 100})
@click.argument("dataroot", required=False, type=_folder())
@click.option("--a", "a", type=_folder(), help="Folder of domain A images (instead of DATAROOT/trainA).")
@click.option("--b", "b", type=_folder(), help="Folder of domain B images (instead of DATAROOT/trainB).")
@click.option("--name", help="Run name: the run folder is OUT/NAME. Default: DATAROOT's folder name (or A2B).")
@click.option(
    "--out", type=_folder(), default=_DEFAULT["out"], show_default=True, help="Folder that holds run folders."
)
@click.option(
    "--epochs",
    type=click.IntRange(0),
    default=_DEFAULT["epochs"],
    show_default=True,
    help="Epochs at the initial learning rate.",
)
@click.option(
    "--epochs-decay",
    type=click.IntRange(0),
    default=_DEFAULT["epochs_decay"],
    show_default=True,
    help="Epochs of linear decay of the learning rate to zero after those.",
)
@click.option(
    "--max-steps",
    type=click.IntRange(1),
    help="Stop after this many steps in all, counted over the whole run (a short run; resume later with a "
    "higher value). With --resume at or below the run's step, nothing is trained: a note says so and the exit "
    "code is 0.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=_DEFAULT["batch_size"],
    show_default=True,
    help="Images of each domain per step.",
)
@click.option(
    "--load-size",
    type=click.IntRange(4),
    default=_DEFAULT["load_size"],
    show_default=True,
    help="Resize images to this square size (bicubic) first.",
)
@click.option(
    "--crop-size",
    type=click.IntRange(4),
    default=_DEFAULT["crop_size"],
    show_default=True,
    help="Then crop this square at random (a multiple of 4).",
)
@click.option("--no-flip", is_flag=True, help="Do not flip images left-right at random.")
@click.option(
    "--ngf",
    type=click.IntRange(1),
    default=_DEFAULT["ngf"],
    show_default=True,
    help="Generator width: filters of its first layer.",
)
@click.option(
    "--n-blocks",
    type=click.IntRange(1),
    default=_DEFAULT["n_blocks"],
    show_default=True,
    help="Residual blocks in the generator (9 for 256 px, 6 for 128 px).",
)
@click.option(
    "--ndf",
    type=click.IntRange(1),
    default=_DEFAULT["ndf"],
    show_default=True,
    help="Discriminator width: filters of its first layer.",
)
@click.option(
    "--n-layers-d",
    type=click.IntRange(1),
    default=_DEFAULT["n_layers_d"],
    show_default=True,
    help="Discriminator depth (3: the 70x70 PatchGAN).",
)
@click.option(
    "--lr",
    type=float,
    default=_DEFAULT["lr"],
    show_default=True,
    help="Adam learning rate of generators and discriminators.",
)
@click.option(
    "--lambda-cyc",
    type=float,
    default=_DEFAULT["lambda_cyc"],
    show_default=True,
    help="Weight of the cycle-consistency L1 loss.",
)
@click.option(
    "--lambda-id",
    type=float,
    default=_DEFAULT["lambda_id"],
    show_default=True,
    help="Weight of the identity loss, as a fraction of --lambda-cyc (0 turns it off).",
)
@click.option(
    "--gan-mode",
    type=click.Choice(GAN_MODES),
    default=_DEFAULT["gan_mode"],
    show_default=True,
    help="Adversarial loss: lsgan (least squares, the paper's) or vanilla (binary cross-entropy on the "
    "discriminator's logits, the original GAN's). Fixed for a run: --resume keeps it.",
)
@click.option(
    "--pool-size",
    type=click.IntRange(0),
    default=_DEFAULT["pool_size"],
    show_default=True,
    help="Generated images kept to train the discriminators on (0: none).",
)
@click.option(
    "--eval-every",
    type=click.IntRange(0),
    default=_DEFAULT["eval_every"],
    metavar="N",
    help="Score both directions on the held-out images (DATAROOT's testA/ and testB/, or test/A and test/B) every "
    f"N steps: KID, and FID with {FID_MIN_IMAGES} images or more, into metrics.csv and TensorBoard, as 'cyc eval' scores them. Default: once an "
    "epoch, off for runs shorter than an epoch; 0: off. Without held-out folders it is off (training images are "
    "never used). Under torchrun rank 0 scores while the others wait: its time counts against --dist-timeout.",
)
@click.option(
    "--eval-images",
    type=click.IntRange(2),
    default=_DEFAULT["eval_images"],
    show_default=True,
    help="Held-out images a domain that --eval-every scores, at most (spread over the folder).",
)
@click.option(
    "--save-every",
    type=click.IntRange(1),
    default=_DEFAULT["save_every"],
    show_default=True,
    help="Write a checkpoint every N steps (and at each epoch's end).",
)
@click.option(
    "--sample-every",
    type=click.IntRange(1),
    default=_DEFAULT["sample_every"],
    show_default=True,
    help="Write a sample grid to samples/ every N steps (and at each epoch's end).",
)
@click.option(
    "--log-every",
    type=click.IntRange(1),
    default=_DEFAULT["log_every"],
    show_default=True,
    help="Append the mean losses to metrics.csv every N steps.",
)
@click.option(
    "--keep",
    type=click.IntRange(1),
    default=_DEFAULT["keep"],
    show_default=True,
    help="Periodic checkpoints to keep (older ones are deleted).",
)
@click.option("--resume", is_flag=True, help="Continue the run OUT/NAME exactly where its last checkpoint left it.")
@click.option(
    "--seed",
    type=int,
    default=_DEFAULT["seed"],
    show_default=True,
    help="Seed of the initial weights, the data order, crops and flips.",
)
@click.option(
    "--workers", type=click.IntRange(0), help="Processes that decode images (default: 0 on a CPU, up to 4 with a GPU)."
)
@device_option
@precision_option(
    default=_DEFAULT["precision"],
    help_text="Arithmetic: fp32 (the canonical numbers), bf16 or fp16 autocast (fp16 with a grad scaler), "
    "or auto (bf16 on CPUs with fast bf16, fp16 on CUDA).",
)
@compile_option("torch.compile the networks (a minute to start, then faster).")
@dist_timeout_option
@debug_option
@click.pass_context
def train(ctx: click.Context, dataroot, a, b, name, out, compile_, no_flip, **options) -> None:
    """Train a CycleGAN translator between two unpaired image folders.

    \b
    Examples:
      cyc train data/horse2zebra                        trainA/ + trainB/ -> runs/horse2zebra/
      cyc train data/horse2zebra --name h2z --resume    continue exactly where it stopped
      cyc train --a photos/ --b paintings/ --name p2p   any two folders
      cyc train data/h2z --precision bf16 --compile     about 2x faster on CPUs with bf16

    DATAROOT holds trainA/ and trainB/ (the official layout) or train/A and train/B; --a and --b name
    the two folders directly. Folders are searched recursively for JPEG, PNG, WebP, BMP and TIFF
    images; grayscale, RGBA and 16-bit images become 8-bit RGB. Every image is decoded once before
    training: an unreadable one is skipped with a warning and counted in the summary, and a domain with
    no readable image is an error before any work.

    The loop is the canonical one: A in a shuffled order, B drawn at random, each resized to
    --load-size, cropped to --crop-size and flipped at random; LSGAN losses (--gan-mode vanilla: BCE),
    cycle L1 x --lambda-cyc, identity L1 x --lambda-id x --lambda-cyc, discriminators trained on
    (real + fake) / 2 with fakes from a replay pool; Adam (betas 0.5, 0.999) at --lr for --epochs,
    then decaying linearly to zero over --epochs-decay; weights initialised N(0, 0.02) from --seed.

    \b
    The run folder OUT/NAME/ receives:
      config.json                      every setting of the run
      metrics.csv                      mean losses every --log-every steps, held-out KID/FID
                                       (--eval-every) in rows of their own (and TensorBoard
                                       events where tensorboard is installed)
      samples/step_NNNNNN.png          real | translated | reconstructed, A -> B above B -> A,
                                       labelled
      checkpoints/step_NNNNNN.pt       every --save-every steps and at each epoch's end;
      checkpoints/last.pt              the newest, which --resume and 'cyc run' read
      G_AB.safetensors, G_BA.safetensors   the two generators, when training ends

    --resume restores the models, optimizers, learning-rate schedules, replay pools, random states
    and the position in the data, so on a CPU N steps + --resume + N steps give exactly the weights of
    2N steps in one go. A resumed run keeps its architecture and optimisation settings; --max-steps,
    --epochs, --epochs-decay, --device, --precision, --workers and the logging options may change.
    A run already at its --max-steps or done with all its epochs trains nothing: a one-line note
    says so (exit 0). When checkpoints/last.pt cannot be read (truncated, damaged), --resume uses
    the newest checkpoints/step_NNNNNN.pt that can, and says so. Training into a folder that holds
    a run without --resume is refused.

    Ctrl-C finishes the current step, saves a checkpoint and exits with 130 (press it twice to stop at
    once). A loss that becomes NaN or infinite stops the run with exit 1, keeping the last good
    checkpoint. Exit codes: 0 done, 1 a failure, 2 a usage or data error, 130 interrupted.

    \b
    Several GPUs or machines: start it with torchrun, one process per GPU (gloo on CPUs):
      torchrun --nproc-per-node 8 -m cyclegan_cli train data/h2z --name h2z
    Each rank trains on its share of every epoch (--batch-size per rank; the global batch is that
    times the ranks; --lr is not scaled) and the gradients are averaged over the ranks; rank 0 alone
    prints and writes. --resume with the same number of ranks continues bit for bit on CPUs; with
    another number it continues and says what changed. A rank that dies or hangs makes the others
    exit 1 within --dist-timeout; Ctrl-C stops every rank after the same step, saved.
    """
    from cyclegan_cli.training.loop import train as run_training

    params = {p.name for p in ctx.command.params}
    explicit = {n for n in params if (src := ctx.get_parameter_source(n)) is not None and src.name in _EXPLICIT_SOURCES}
    resume = options["resume"]
    if name is None:
        if dataroot is not None:
            name = Path(dataroot).resolve().name
        elif a is not None and b is not None:
            name = f"{Path(a).resolve().name}2{Path(b).resolve().name}"
        elif resume:
            from cyclegan_cli.models.run_folder import latest_run

            name = latest_run(out).name
        else:
            raise UsageError(
                "no training data: give DATAROOT (holding trainA/ and trainB/) or both --a DIR and --b DIR"
            )
    elif dataroot is None and (a is None or b is None) and not resume:
        raise UsageError("no training data: give DATAROOT (holding trainA/ and trainB/) or both --a DIR and --b DIR")

    config = TrainConfig(dataroot=dataroot, a=a, b=b, name=name, out=out, flip=not no_flip, compile=compile_, **options)
    renamed = {"compile_": "compile", "no_flip": "flip"}
    explicit = {renamed.get(n, n) for n in explicit} | {"name"}
    with rank_exits(ctx):
        result = run_training(config, explicit=explicit)
    if result.rank != 0:
        return
    if result.note is not None:  # a resumed run with no step left: nothing was trained or written
        click.echo(result.note)
        return
    _summary(result)


def _summary(result) -> None:
    from cyclegan_cli.translation.report import duration_text

    c = result.config
    rate = result.steps_run / result.seconds if result.seconds > 0 else 0.0
    finished = result.epoch >= c.total_epochs
    where = (
        f"all {c.total_epochs} epochs done"
        if finished
        else f"stopped at --max-steps {c.max_steps} in epoch {result.epoch + 1} of {c.total_epochs}; "
        f"continue with: cyc train --out {c.out} --name {c.name} --resume --max-steps N"
    )
    skipped = len(result.skipped)
    skipped_text = (
        "no unreadable images"
        if not skipped
        else f"{skipped} unreadable image{'s' if skipped != 1 else ''} skipped (named in the warnings above)"
    )
    weights = " and ".join(str(p) for p in result.weights)
    ranks = (
        ""
        if result.world_size == 1
        else f" as {result.world_size} ranks (global batch {c.batch_size * result.world_size})"
    )
    click.echo(
        f"Trained {result.steps_run} steps{ranks} (step {result.step} of the run; {where}) in "
        f"{duration_text(result.seconds)} ({rate:.2f} steps/s); {skipped_text}. Weights: {weights}; "
        f"checkpoint: {result.checkpoint}; samples and metrics in {result.run_dir}/."
    )
    if result.best_kid is not None:
        step, a_to_b, b_to_a = result.best_kid
        click.echo(f"Best held-out KID at step {step}: A -> B {a_to_b:.4f}, B -> A {b_to_a:.4f} (metrics.csv).")
