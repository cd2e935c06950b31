"""Still images: JPEG, PNG, WebP, BMP and TIFF, read and written with Pillow.

The reader yields one frame: 8-bit RGB upright (EXIF orientation applied; grayscale, palette and 16-bit images
converted by ``cyclegan_cli.imageio.read_image``), the alpha channel of an RGBA image alongside, and in ``meta``
the source format, mode and colour profile. The writer encodes in the format of the output path's extension
(``--quality`` for JPEG and WebP), puts the alpha back for formats that carry it (PNG, WebP, TIFF), embeds the
source's ICC profile, and writes through a temporary file renamed into place at commit.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cyclegan_cli.atomic import temp_path_for
from cyclegan_cli.errors import InputError
from cyclegan_cli.imageio import IMAGE_EXTENSIONS, read_image, upright_size
from cyclegan_cli.plugin_api import Frame, MediaInfo, Reader, SourceInfo, WriteOptions, Writer

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np

# Output extension -> Pillow format name.
FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})


class ImageReader(Reader):
    """One image file -> one frame."""

    name = "image"
    kind = "image"
    description = "still images (JPEG, PNG, WebP, BMP, TIFF; grayscale, RGBA, 16-bit; EXIF orientation applied)"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import PIL  # noqa: F401
        except ImportError:
            return "Pillow is not installed: pip install pillow"
        return None

    @classmethod
    def can_read(cls, path: Path) -> int:
        return 10 if Path(path).suffix.lower() in IMAGE_EXTENSIONS else 0

    def __init__(self, path: Path, *, max_frames: int | None = None):
        super().__init__(path, max_frames=max_frames)
        self._header = _header(self.path)  # raises InputError for a missing, empty or unreadable file
        self._used = False

    @property
    def info(self) -> MediaInfo:
        header = self._header
        return MediaInfo(
            kind="image",
            width=header["width"],
            height=header["height"],
            frame_count=1 if self.max_frames is None or self.max_frames > 0 else 0,
            extra={"format": header["format"], "mode": header["mode"]},
        )

    def frames(self) -> Iterator[Frame]:
        if self._used:
            raise RuntimeError("ImageReader.frames() may be called only once")
        self._used = True
        if self.max_frames is not None and self.max_frames <= 0:
            return
        rgb, alpha = read_image(self.path)
        meta = {
            "format": self._header["format"],
            "mode": self._header["mode"],
            "suffix": self.path.suffix.lower(),
        }
        if self._header.get("icc_profile"):
            meta["icc_profile"] = self._header["icc_profile"]
        if self._header.get("dpi"):
            meta["dpi"] = self._header["dpi"]
        yield Frame(index=0, image=rgb, alpha=alpha, meta=meta)


def _header(path: Path) -> dict:
    """Format, mode, upright size and colour profile from the header; InputError naming the file if unreadable."""
    from PIL import Image

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: cannot decode: an empty file")
    try:
        with Image.open(path) as img:
            width, height = upright_size(img)
            header = {
                "format": img.format,
                "mode": img.mode,
                "width": width,
                "height": height,
                "icc_profile": img.info.get("icc_profile"),
                "dpi": img.info.get("dpi"),
            }
    except (OSError, SyntaxError, ValueError):
        read_image(path)  # raises InputError with the precise reason
        raise InputError(f"{path}: cannot decode: not an image, or a corrupt one") from None
    return header


class ImageWriter(Writer):
    """Write one translated image in the output path's format, atomically."""

    name = "image"
    kind = "image"
    description = "still images in the output's format (JPEG/WebP --quality; alpha kept in PNG, WebP, TIFF)"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return ImageReader.unavailable_reason()

    @classmethod
    def can_write(cls, path: Path) -> int:
        return 10 if Path(path).suffix.lower() in FORMATS else 0

    def __init__(self, path: Path, source: SourceInfo, options: WriteOptions):
        super().__init__(path, source, options)
        self._tmp = temp_path_for(self.path)
        self._written = False
        self._done = False

    def write(self, frame: Frame, image: np.ndarray) -> None:
        import numpy as np
        from PIL import Image

        if self._done:
            raise RuntimeError("write() after commit() or abort()")
        fmt = FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise InputError(f"{self.path}: cannot write '{self.path.suffix}' images")
        image = np.ascontiguousarray(image, dtype=np.uint8)
        img = Image.fromarray(image)
        if frame.alpha is not None and fmt in ALPHA_FORMATS:
            img.putalpha(Image.fromarray(_fit_alpha(frame.alpha, image.shape[1], image.shape[0])))
        params: dict = {}
        if fmt in ("JPEG", "WEBP"):
            params["quality"] = int(self.options.quality)
        if fmt == "JPEG" and self.options.quality >= 90:
            params["subsampling"] = 0  # 4:4:4 at high quality: no chroma smear on the translated colours
        if fmt == "PNG":
            # zlib's fastest level, as OpenCV writes PNG: on 256x256 photographs 6.4 ms a frame and files 12 %
            # larger, against 20.5 ms at Pillow's default level 6 (2-core AVX2-only EPYC; the writer thread was the
            # pipeline's slowest stage for a distilled student)
            params["compress_level"] = 1
        if fmt == "TIFF":
            params["compression"] = "tiff_deflate"
        if fmt in ("JPEG", "PNG", "WEBP", "TIFF") and frame.meta.get("icc_profile"):
            params["icc_profile"] = frame.meta["icc_profile"]
        if frame.meta.get("dpi") and fmt in ("JPEG", "PNG", "TIFF"):
            params["dpi"] = frame.meta["dpi"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            img.save(self._tmp, format=fmt, **params)
        except (OSError, ValueError) as exc:
            self._remove_tmp()
            raise InputError(f"{self.path}: cannot write {fmt}: {exc}") from None
        self._written = True

    def commit(self) -> None:
        if self._done:
            return
        self._done = True
        if not self._written:
            self._remove_tmp()
            raise InputError(f"{self.path}: no image to write")
        try:
            os.replace(self._tmp, self.path)
        except OSError:
            self._remove_tmp()
            raise

    def abort(self) -> Path | None:
        """An image is whole or absent: remove the temporary file, keep nothing."""
        self._done = True
        self._remove_tmp()
        return None

    def _remove_tmp(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


def _fit_alpha(alpha: np.ndarray, width: int, height: int) -> np.ndarray:
    """The source alpha for an output of ``width`` x ``height``: as is, repeated side by side (``--compare``
    writes input | output), or resized (``--size``)."""
    import numpy as np
    from PIL import Image

    h, w = alpha.shape[:2]
    if (w, h) == (width, height):
        return np.ascontiguousarray(alpha)
    if h == height and width % w == 0:
        return np.ascontiguousarray(np.tile(alpha, (1, width // w)))
    return np.asarray(Image.fromarray(alpha).resize((width, height), Image.BILINEAR))
