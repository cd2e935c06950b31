"""The sample grids a training run writes (``samples/step_NNNNNN.png``): what each picture is, written on it.

Two blocks, A -> B above B -> A; each row is one fixed image: the real image, its translation, and the
translation translated back (the reconstruction, which the cycle loss pulls towards the real one). Over each block
a header says which way it goes and what each column is; the step is on top. The text is drawn with Pillow's
ImageDraw and its built-in font, so the grid needs no font file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

COLUMNS = ("real", "translated", "reconstructed")
GAP = 2  # white pixels around each picture
LINE = 14  # pixels a line of text takes
BACKGROUND, INK = (255, 255, 255), (0, 0, 0)


def block_title(source: str, target: str, source_name: str, target_name: str) -> str:
    """A block's title: "A -> B (horse -> zebra)", or "A -> B" alone where the domains have no names of their own."""
    plain = f"{source} -> {target}"
    return plain if (source_name, target_name) == (source, target) else f"{plain} ({source_name} -> {target_name})"


def labelled_grid(
    blocks: list[tuple[str, list[list[np.ndarray]]]], step: int, columns: tuple[str, ...] = COLUMNS
) -> np.ndarray:
    """``blocks``: (title, rows), each row the pictures of ``columns`` (H x W x 3 uint8, one size; cyc distill's
    are input | teacher | student); returns the grid, uint8 H x W x 3, with the step on top and a header over each
    block; white space on the right where the text is wider than the pictures."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    height, width = blocks[0][1][0][0].shape[:2]
    cell_w, cell_h = width + 2 * GAP, height + 2 * GAP
    texts = [f"step {step:,}", " | ".join(columns), *(title for title, _ in blocks)]
    total_w = max(len(columns) * cell_w, *(round(font.getlength(text)) + 2 * GAP for text in texts))
    total_h = LINE + sum(2 * LINE + len(rows) * cell_h for _, rows in blocks)
    canvas = Image.new("RGB", (total_w, total_h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((GAP, 1), texts[0], fill=INK, font=font)
    top = LINE
    for title, rows in blocks:
        draw.text((GAP, top + 1), title, fill=INK, font=font)
        _column_labels(draw, font, top + LINE, cell_w, columns)
        top += 2 * LINE
        for row in rows:
            for column, picture in enumerate(row):
                canvas.paste(Image.fromarray(picture), (column * cell_w + GAP, top + GAP))
            top += cell_h
    return np.asarray(canvas)


def _column_labels(draw, font, top: int, cell_w: int, columns: tuple[str, ...]) -> None:
    """Each column's name centred over it; on pictures too narrow for the names, one line over the block (the
    grid is widened to hold it)."""
    widths = [font.getlength(label) for label in columns]
    if max(widths) > cell_w - 2 * GAP:
        draw.text((GAP, top + 1), " | ".join(columns), fill=INK, font=font)
        return
    for column, (label, width) in enumerate(zip(columns, widths)):
        draw.text((column * cell_w + (cell_w - width) / 2, top + 1), label, fill=INK, font=font)
