"""``cyc plugins``: what engines, readers and writers are installed, and why an optional one is unavailable."""

from __future__ import annotations

import click

from cyclegan_cli.options import debug_option


@click.command(context_settings={"max_content_width": 100})
@debug_option
def plugins() -> None:
    """List installed engines, readers and writers, first-party and third-party alike.

    Plugins register through the entry-point groups cyc.engines, cyc.readers and cyc.writers; a package
    that declares one appears here and in 'cyc run --engine' by itself. An unavailable plugin says why
    (a missing library and the extra that installs it, or missing hardware).
    """
    from importlib.metadata import entry_points

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cyclegan_cli.registry import GROUPS

    table = Table(show_header=True, header_style="bold")
    for column in ("kind", "name", "status", "provided by", "about"):
        table.add_column(column, overflow="fold")
    for kind, group in GROUPS.items():
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            try:
                cls = ep.load()
                reason = cls.unavailable_reason()
                about = cls.description
            except Exception as error:  # noqa: BLE001 - a broken third-party plugin is listed, not fatal
                cls, reason, about = None, f"fails to load: {error}", ""
            status = "[green]available[/green]" if reason is None else f"[yellow]unavailable[/yellow]: {escape(reason)}"
            dist = ep.dist.name if ep.dist is not None else "?"
            table.add_row(kind[:-1], escape(ep.name), status, escape(dist), escape(about))
    Console().print(table)
