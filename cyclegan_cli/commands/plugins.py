"""``cyc plugins``: what engines, readers and writers are installed, and why an optional one is unavailable."""

from __future__ import annotations

import click

from cyclegan_cli.commands.options import debug_option


@click.command(context_settings={"max_content_width": 100})
@debug_option
def plugins() -> None:
    """List installed engines, readers and writers, first-party and third-party alike.

    Plugins register through the entry-point groups cyc.engines, cyc.readers and cyc.writers; a package
    that declares one appears here and in 'cyc run --engine' by itself. An unavailable plugin says why
    (a missing library and the extra that installs it, or missing hardware).
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cyclegan_cli import registry

    table = Table(show_header=True, header_style="bold")
    for column in ("kind", "name", "status", "provided by", "about"):
        table.add_column(column, overflow="fold")
    for kind in registry.GROUPS:
        for name in registry.names(kind):
            reason = registry.unavailable(kind, name)
            about = registry.load(kind, name).description if registry.load_error(kind, name) is None else ""
            status = "[green]available[/green]" if reason is None else f"[yellow]unavailable[/yellow]: {escape(reason)}"
            table.add_row(kind[:-1], escape(name), status, escape(registry.provider(kind, name)), escape(about))
    Console().print(table)
