"""The labelled sample grids of a training run (cyclegan_cli/training/samples.py)."""

from __future__ import annotations

import numpy as np

from cyclegan_cli.training.samples import GAP, LINE, block_title, labelled_grid


def _pictures(rng, rows: int, side: int) -> list[list[np.ndarray]]:
    return [[rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(3)] for _ in range(rows)]


def _has_text(strip: np.ndarray) -> bool:
    return bool((strip < 128).any())  # dark ink on the white background


def test_each_picture_sits_in_its_cell_under_the_headers():
    rng = np.random.default_rng(0)
    a_to_b, b_to_a = _pictures(rng, 2, 96), _pictures(rng, 2, 96)
    grid = labelled_grid([("A -> B (horse -> zebra)", a_to_b), ("B -> A (zebra -> horse)", b_to_a)], step=1200)
    cell = 96 + 2 * GAP
    assert grid.shape == (LINE + 2 * (2 * LINE + 2 * cell), 3 * cell, 3) and grid.dtype == np.uint8
    top = LINE
    for _, rows in (("A -> B", a_to_b), ("B -> A", b_to_a)):
        assert _has_text(grid[top : top + LINE]) and _has_text(grid[top + LINE : top + 2 * LINE])  # title, columns
        top += 2 * LINE
        for row in rows:
            for column, picture in enumerate(row):
                x, y = column * cell + GAP, top + GAP
                assert np.array_equal(grid[y : y + 96, x : x + 96], picture)
            top += cell
    assert _has_text(grid[:LINE])  # the step


def test_the_labels_say_different_things():
    """Drawn text, not a fixed pattern: another step and other titles draw other pixels."""
    rng = np.random.default_rng(1)
    pictures = _pictures(rng, 1, 64)
    first = labelled_grid([("A -> B", pictures), ("B -> A", pictures)], step=5)
    other_step = labelled_grid([("A -> B", pictures), ("B -> A", pictures)], step=900)
    swapped = labelled_grid([("B -> A", pictures), ("A -> B", pictures)], step=5)
    assert not np.array_equal(first[:LINE], other_step[:LINE])
    assert np.array_equal(first[LINE:], other_step[LINE:])
    assert not np.array_equal(first[LINE : 2 * LINE], swapped[LINE : 2 * LINE])


def test_narrow_pictures_widen_the_grid_to_hold_the_text():
    rng = np.random.default_rng(2)
    pictures = _pictures(rng, 1, 32)
    grid = labelled_grid([("A -> B (horse -> zebra)", pictures), ("B -> A (zebra -> horse)", pictures)], step=7)
    assert grid.shape[1] > 3 * (32 + 2 * GAP)  # " | ".join of the column names is wider than three 32-px pictures
    assert _has_text(grid[LINE:, 3 * (32 + 2 * GAP) :])  # the headers run on past the pictures, whole


def test_a_block_title_names_the_domains_once():
    assert block_title("A", "B", "horse", "zebra") == "A -> B (horse -> zebra)"
    assert block_title("B", "A", "zebra", "horse") == "B -> A (zebra -> horse)"
    assert block_title("A", "B", "A", "B") == "A -> B"  # domains without names of their own: said once
