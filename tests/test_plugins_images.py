"""The still-image reader and writer on real files: formats, alpha, grayscale, 16-bit, EXIF rotation, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyc_plugins.images import ImageReader, ImageWriter
from cyclegan_cli.errors import InputError
from cyclegan_cli.plugin_api import WriteOptions
from tests.helpers import make_image, make_images, pattern


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    return make_images(tmp_path_factory.mktemp("images"))


def read_one(path: Path):
    with ImageReader(path) as reader:
        info = reader.info
        frames = list(reader.frames())
    assert len(frames) == 1 and frames[0].index == 0
    return info, frames[0]


def write(frame, image, out: Path, source=None, **options) -> Path:
    with ImageWriter(out, source, WriteOptions(**options)) as writer:
        writer.write(frame, image)
    return out


def test_make_images_builds_a_nested_folder(images):
    assert {p.relative_to(images["exif_jpeg"].parent).parts[0] for p in images.values()} >= {"sub", "bad"}
    assert images["gray16_png"].parent.name == "deeper"
    assert images["empty_png"].stat().st_size == 0


@pytest.mark.parametrize(
    "suffix, fmt", [(".jpg", "JPEG"), (".png", "PNG"), (".webp", "WEBP"), (".bmp", "BMP"), (".tif", "TIFF")]
)
def test_format_is_preserved(tmp_path, suffix, fmt):
    src = make_image(tmp_path / f"in{suffix}")
    info, frame = read_one(src)
    assert info.kind == "image" and (info.width, info.height) == (64, 48)
    assert frame.meta["format"] == fmt and frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
    out = write(frame, frame.image, tmp_path / "out" / f"in{suffix}")
    with Image.open(out) as img:
        assert img.format == fmt and img.size == (64, 48) and img.mode == "RGB"
        back = np.asarray(img)
    lossy = fmt in ("JPEG", "WEBP")
    assert np.abs(back.astype(int) - frame.image.astype(int)).mean() < (4 if lossy else 1e-9)
    assert list((tmp_path / "out").iterdir()) == [out], "no temporary file left behind"


def test_quality_is_used_for_jpeg(tmp_path):
    _, frame = read_one(make_image(tmp_path / "in.jpg", size=(96, 64)))
    noisy = np.random.default_rng(0).integers(0, 255, frame.image.shape, dtype=np.uint8)
    high = write(frame, noisy, tmp_path / "high.jpg", quality=95)
    low = write(frame, noisy, tmp_path / "low.jpg", quality=30)
    assert low.stat().st_size < high.stat().st_size * 0.7


def test_rgba_alpha_is_kept_in_png(images, tmp_path):
    _, frame = read_one(images["rgba_png"])
    assert frame.image.shape == (48, 64, 3) and frame.alpha is not None and frame.alpha.shape == (48, 64)
    for suffix in (".png", ".webp", ".tif"):
        out = write(frame, frame.image, tmp_path / f"rgba{suffix}", quality=100)
        with Image.open(out) as img:
            assert img.mode == "RGBA", suffix
            alpha = np.asarray(img)[..., 3]
        assert np.abs(alpha.astype(int) - frame.alpha.astype(int)).max() <= (2 if suffix == ".webp" else 0)
    with Image.open(write(frame, frame.image, tmp_path / "rgba.jpg")) as img:
        assert img.mode == "RGB"  # JPEG has no alpha: dropped, not an error


def test_alpha_follows_a_side_by_side_output(images, tmp_path):
    _, frame = read_one(images["rgba_png"])
    wide = np.concatenate([frame.image, frame.image], axis=1)
    with Image.open(write(frame, wide, tmp_path / "compare.png")) as img:
        alpha = np.asarray(img)[..., 3]
    assert alpha.shape == (48, 128) and np.array_equal(alpha[:, 64:], frame.alpha)


def test_grayscale_and_16_bit_read_as_rgb(images):
    _, gray = read_one(images["gray_png"])
    assert gray.image.shape == (48, 64, 3) and gray.image.dtype == np.uint8
    assert np.array_equal(gray.image[..., 0], gray.image[..., 1]) and gray.alpha is None
    info, deep = read_one(images["gray16_png"])
    assert deep.image.shape == (48, 64, 3) and deep.image.dtype == np.uint8
    row = deep.image[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) >= 0)  # the 16-bit ramp scaled, not clipped
    assert info.extra["mode"].startswith("I")


def test_exif_orientation_is_applied(images):
    info, frame = read_one(images["exif_jpeg"])
    assert (info.width, info.height) == (48, 64)
    assert frame.image.shape == (64, 48, 3)
    # Stored top-left red block; orientation 6 turns the picture 90 degrees clockwise: it ends up top-right.
    corner = frame.image[:4, -4:].astype(int)
    assert corner[..., 0].mean() > 200 and corner[..., 1].mean() < 60


@pytest.mark.parametrize("role", ["corrupt_jpeg", "empty_png"])
def test_bad_images_raise_input_error_naming_the_file(images, role):
    path = images[role]
    with pytest.raises(InputError) as caught:
        with ImageReader(path) as reader:
            list(reader.frames())
    message = str(caught.value)
    assert str(path) in message and "\n" not in message


def test_not_an_image(tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_text("hello")
    with pytest.raises(InputError, match="photo.png"):
        with ImageReader(fake) as reader:
            list(reader.frames())


def test_writer_is_atomic(tmp_path):
    _, frame = read_one(make_image(tmp_path / "in.png"))
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    writer = ImageWriter(out, None, WriteOptions())
    writer.write(frame, frame.image)
    assert out.read_bytes() == b"old", "nothing replaced before commit"
    assert writer.abort() is None
    assert out.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.png"]
    write(frame, frame.image, out)
    with Image.open(out) as img:
        assert img.format == "PNG"


def test_icc_profile_is_carried(tmp_path):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = make_image(tmp_path / "in.jpg", icc_profile=profile)
    _, frame = read_one(src)
    with Image.open(write(frame, frame.image, tmp_path / "out.png")) as img:
        assert img.info.get("icc_profile") == profile


def test_registered_through_entry_points():
    from cyclegan_cli import registry

    for suffix in (".jpg", ".JPEG", ".png", ".webp", ".bmp", ".tif", ".tiff"):
        assert registry.reader_for(Path("x" + suffix)) is ImageReader
        assert registry.writer_for(Path("x" + suffix)) is ImageWriter


def test_pattern_helper_matches_what_is_read(tmp_path):
    _, frame = read_one(make_image(tmp_path / "p.png"))
    assert np.array_equal(frame.image, pattern(3, 64, 48))
