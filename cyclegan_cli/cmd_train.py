"""Placeholder being replaced in this session."""

import click


@click.command()
def train() -> None:
    """Not written yet."""
