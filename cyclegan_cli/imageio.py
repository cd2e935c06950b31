"""Decode any still image the tools accept into 8-bit RGB (plus alpha), the one form the rest of cyc uses.

JPEG, PNG, WebP, BMP and TIFF; grayscale, palette, RGBA and 16-bit images; EXIF orientation applied.
Used by the training data loader and by the image reader plugin alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cyclegan_cli.errors import InputError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

EXIF_ORIENTATION = 0x0112  # the EXIF tag of the orientation


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def read_image(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(rgb, alpha)``: H x W x 3 uint8 and H x W uint8 (or None). Raises InputError naming the file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
            return _to_rgb8(img)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else 0
        what = "an empty file" if size == 0 else "not an image, or a corrupt one"
        raise InputError(f"{path}: cannot decode: {what}") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: refused: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot decode: corrupt or truncated image ({exc})") from None


def _to_rgb8(img) -> tuple[np.ndarray, np.ndarray | None]:
    alpha = None
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit (or 32-bit) grayscale: scale to 8 bits instead of letting convert() clip at 255.
        gray = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if gray.max() > 255 else 255.0
        gray8 = np.clip(np.rint(gray * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray8[..., None], 3, axis=2)), None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"))
        alpha = np.ascontiguousarray(rgba[..., 3])
        return np.ascontiguousarray(rgba[..., :3]), alpha
    return np.ascontiguousarray(np.asarray(img.convert("RGB"))), alpha


def upright_size(img) -> tuple[int, int]:
    """(width, height) of an opened PIL image as it is shown: EXIF orientations 5 to 8 turn it a quarter."""
    width, height = img.size
    return (height, width) if img.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8) else (width, height)


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the header alone, upright (EXIF orientation applied); None when unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return upright_size(img)
    except Exception:  # noqa: BLE001 - any unreadable header: the pipeline reports that file when it reaches it
        return None
