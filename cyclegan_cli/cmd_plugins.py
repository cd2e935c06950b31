"""Placeholder being replaced in this session."""

import click


@click.command()
def plugins() -> None:
    """Not written yet."""
