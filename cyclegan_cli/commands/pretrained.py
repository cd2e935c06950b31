"""``cyc pretrained``: the official CycleGAN generators by name, listed and fetched into the cache."""

from __future__ import annotations

import click

from cyclegan_cli.commands.options import debug_option, name_table


@click.group(context_settings={"max_content_width": 100})
def pretrained() -> None:
    """The official pretrained CycleGAN generators, by name.

    \b
    Examples:
      cyc pretrained list                        the 18 models, which way each goes, which are cached
      cyc pretrained download horse2zebra        fetch one into the cache
      cyc run clip.mp4 --checkpoint horse2zebra  fetched on first use, then used offline

    Each is a lone generator that translates one way (horse2zebra: horse -> zebra); --direction BtoA
    takes its published partner (zebra2horse) where there is one. Files are kept in the cache folder
    ('cyc doctor' shows where; CYC_CACHE_DIR moves it). CYC_PRETRAINED_URL replaces the official site
    (a mirror, an air-gapped copy): the file for NAME is $CYC_PRETRAINED_URL/NAME.pth.

    The official site serves plain http without published checksums: each file's sha256 is recorded
    when it is first fetched (NAME.pth.sha256 in the cache), and a later copy that differs is refused.
    """


@pretrained.command("list")
@debug_option
def list_models() -> None:
    """List the official pretrained generators: what each translates and whether it is cached."""
    from rich.console import Console

    from cyclegan_cli.hub.pretrained import MODELS, cached_path

    table = name_table("translates", "other way", "cached")
    for model in MODELS.values():
        path = cached_path(model.name)
        cached = f"yes, {path.stat().st_size / 1e6:.0f} MB" if path.is_file() else "no"
        table.add_row(model.name, model.translation, model.partner or "-", cached)
    Console().print(table)


@pretrained.command("download")
@click.argument("name")
@debug_option
def download(name: str) -> None:
    """Fetch the pretrained generator NAME into the cache (resumes a cut-off transfer) and print its path.

    The file is checked to load as a generator before it is kept. Exit codes: 0 fetched or cached
    already, 1 the transfer or a check failed (nothing half-written is kept, but a cut-off transfer's
    NAME.pth.part, which the next attempt resumes), 2 no such model.
    """
    from rich.console import Console

    from cyclegan_cli.hub.pretrained import cached_path, ensure, lookup

    console = Console(stderr=True)
    model = lookup(name)
    was_cached = cached_path(name).is_file()
    path = ensure(name, console)
    console.print(
        f"{model.name} ({model.translation}): {'already cached' if was_cached else 'fetched'}", highlight=False
    )
    click.echo(str(path))
