"""``cyc datasets``: the official unpaired CycleGAN datasets, listed and unpacked where ``cyc train`` reads them."""

from __future__ import annotations

import click

from cyclegan_cli.commands.options import debug_option, name_table


@click.group(context_settings={"max_content_width": 100})
def datasets() -> None:
    """The official unpaired CycleGAN datasets, by name.

    \b
    Examples:
      cyc datasets list
      cyc datasets download horse2zebra          -> data/horse2zebra/{trainA,trainB,testA,testB}
      cyc train data/horse2zebra --name h2z

    The zip is fetched into the cache folder (resumable; CYC_DATASETS_URL replaces the official site:
    the file for NAME is $CYC_DATASETS_URL/NAME.zip), checked (no member may leave the target folder or
    be a link, and its unpacked size is bounded), then unpacked whole or not at all. An existing folder
    is never written into. cityscapes may not be redistributed: 'cyc datasets download cityscapes' says
    where to get it.
    """


@datasets.command("list")
@debug_option
def list_datasets() -> None:
    """List the official datasets: the two domains, what each holds, and its licence note."""
    from rich.console import Console

    from cyclegan_cli.hub.datasets import CITYSCAPES, DATASETS

    table = name_table("A -> B", "holds (training images)", "licence")
    for d in DATASETS.values():
        table.add_row(d.name, f"{d.domain_a} -> {d.domain_b}", d.size, d.licence)
    console = Console()
    console.print(table)
    console.print(CITYSCAPES, highlight=False, soft_wrap=True)


@datasets.command("download")
@click.argument("name")
@click.option(
    "--out", default="data", show_default=True, type=click.Path(file_okay=False), help="Folder to unpack NAME/ into."
)
@debug_option
def download(name: str, out: str) -> None:
    """Fetch the dataset NAME and unpack it into OUT/NAME, ready for 'cyc train OUT/NAME'.

    Run again on a complete folder, it says so and exits 0. Exit codes: 0 done or complete already,
    1 the transfer or a check of the archive failed, 2 no such dataset or OUT/NAME holds other files.
    """
    from rich.console import Console

    from cyclegan_cli.hub.datasets import download as fetch_dataset

    console = Console(stderr=True)
    folder, done = fetch_dataset(name, out, console)
    console.print(
        f"{folder}: {'unpacked' if done else 'already complete'}; train with: cyc train {folder}",
        highlight=False,
        soft_wrap=True,
    )
    click.echo(str(folder))
