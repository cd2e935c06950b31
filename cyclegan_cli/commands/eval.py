"""``cyc eval``: the Click layer. The work is in ``cyclegan_cli.evaluation.quality``; nothing heavy is imported here."""

from __future__ import annotations

import click

from cyclegan_cli.commands.options import (
    RUN_PRECISIONS,
    debug_option,
    device_option,
    engine_option,
    precision_option,
    runs_dir_option,
)


@click.command("eval", context_settings={"max_content_width": 100})
@click.argument("source", required=False, type=click.Path())
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="A dataset folder: its testA/ and testB/ are the defaults for --a and --b.",
)
@click.option("--a", "a", type=click.Path(file_okay=False), metavar="DIR", help="Test images of domain A.")
@click.option("--b", "b", type=click.Path(file_okay=False), metavar="DIR", help="Test images of domain B.")
@click.option(
    "--direction",
    type=click.Choice(["AtoB", "BtoA", "both"]),
    default="both",
    show_default=True,
    help="Which way to score: AtoB translates A and compares with B, BtoA the other way, both: each way SOURCE "
    "can translate.",
)
@runs_dir_option
@engine_option("The translator's inference backend, as in 'cyc run' (auto follows its rule).")
@device_option
@precision_option(
    default="fp32",
    choices=RUN_PRECISIONS,
    help_text="The translator's arithmetic: fp32 scores the model itself; auto, bf16, fp16 or int8 score what "
    "'cyc run' computes with them.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=16,
    show_default=True,
    help="Images per batch, for the translator (of one size) and for Inception.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the scores and the settings as JSON, for scripts.")
@debug_option
def eval_(source, data, a, b, direction, runs_dir, engine, device, precision, batch_size, as_json) -> None:
    """Score a translator: FID and KID of its output against the target domain's real images.

    \b
    Examples:
      cyc eval horse2zebra --data data/horse2zebra --direction AtoB   an official model, official test set
      cyc eval runs/h2z --data data/horse2zebra                       both ways
      cyc eval --a photos/test --b paintings/test --json              the latest run, two folders

    SOURCE is anything 'cyc run --checkpoint' takes: a run folder, a checkpoint .pt, a .safetensors
    generator, an official .pth, an exported model, or a pretrained model's name such as horse2zebra
    (default: the latest run under --runs-dir). For each direction the source domain's test images
    are translated as 'cyc run' translates them (same model, engines and conversions; fp32 by
    default) and compared with the target domain's real images: AtoB translates --a and compares
    with --b. With --data DIR, --a and --b default to DIR/testA and DIR/testB.

    \b
    What is printed, per direction:
      FID             Frechet Inception Distance between the two sets of features (lower is better)
      KID             Kernel Inception Distance: mean and standard deviation of the unbiased
                      polynomial-kernel MMD over 100 random subsets of both sets (lower is better;
                      slightly below 0 means indistinguishable)
      images          how many were translated and how many real ones they were compared with,
                      and the KID subset size: at most the smaller set's size (the libraries'
                      default of 1000 fails on test sets like horse2zebra's, 120 and 140 images)

    Features are those of the FID Inception network (the TensorFlow graph ported to PyTorch), computed
    by torch-fidelity (pip install 'cyclegan-cli[eval]'), which also computes FID and KID from them.
    Images of any size are read as 8-bit RGB and resized to 299 x 299 inside the network, as the
    library does. Scores are comparable only at the same settings and image counts: FID in particular
    falls as the sets grow, so compare checkpoints on one test set, and a published figure only on
    its own test set.

    The network's weights (95 MB) are fetched on first use into the cache ('cyc doctor' shows where;
    CYC_CACHE_DIR moves it) from torch-fidelity's release, or from CYC_INCEPTION_URL (the file's full
    URL: a mirror, an air-gapped copy); a transfer that is cut off resumes, and the file's sha256 is
    recorded, so a later copy that differs is refused. The file is loaded as tensors only before the
    library sees it: one that holds anything else is refused and deleted. The real images' features
    are cached per folder (keyed by the files' names, sizes and times and the network), so scoring
    many checkpoints against one test set extracts them once.

    Exit codes: 0 scored, 1 a failure (the weights could not be fetched, an image could not be
    translated), 2 a usage error (no such folder, fewer than 2 images in a set).
    """
    from cyclegan_cli.evaluation.quality import EvalRequest, evaluate
    from cyclegan_cli.translation.report import progress_for, stderr_console

    request = EvalRequest(
        source=source,
        a=a,
        b=b,
        data=data,
        direction=direction,
        runs_dir=runs_dir,
        engine=engine,
        device=device,
        precision=precision,
        batch_size=batch_size,
    )
    console = stderr_console()
    say = lambda text: console.print(text, highlight=False, markup=False)  # noqa: E731
    report = evaluate(request, say=say, progress=lambda: progress_for(console))
    if as_json:
        click.echo(report.as_json())
        return
    for score in report.scores:
        click.echo(
            f"{score.direction}: FID {score.fid:.3f}  KID {score.kid_mean:.5f} ± {score.kid_std:.5f}\n"
            f"  {score.translated} images of {score.source_folder} translated ({score.engine}), against "
            f"{score.real} real images of {score.target_folder}; KID over {score.kid_subsets} subsets of "
            f"{score.kid_subset_size} images"
        )
