"""Placeholder being replaced in this session."""

import click


@click.command()
def run() -> None:
    """Not written yet."""
