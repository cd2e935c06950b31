"""Placeholder being replaced in this session."""

import click


@click.command()
def export() -> None:
    """Not written yet."""
