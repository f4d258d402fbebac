"""lenet_core.digits: the resize and center-of-mass steps are exact, specified arithmetic; a reader's
own images are read upright as the camera saw them, and hostile files are refused before decoding."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lenet_core.digits import (MAX_PIXELS, DigitImageError, _round_half_even, lanczos_resize, load_grayscale,
                               preprocess_digit_image, to_mnist_28)


def _pillow_axis_by_axis(img, height, width):
    """Pillow's LANCZOS resize of a mode-"L" image, one axis at a time (rows, then columns)."""
    out = img.astype(np.uint8)
    if width != out.shape[1]:
        out = np.asarray(Image.fromarray(out).resize((width, out.shape[0]), Image.LANCZOS))
    if height != out.shape[0]:
        out = np.asarray(Image.fromarray(out).resize((width, height), Image.LANCZOS))
    return out.astype(np.int64)


@pytest.mark.parametrize("seed", range(4))
def test_lanczos_resize_gives_pillows_gray_levels(seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(1, 200, 2))
        img = rng.integers(0, 256, (h, w))
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        np.testing.assert_array_equal(lanczos_resize(img, height, width), _pillow_axis_by_axis(img, height, width))


def test_lanczos_resize_keeps_flat_images_flat_and_checks_its_input():
    np.testing.assert_array_equal(lanczos_resize(np.full((90, 60), 200), 20, 13), np.full((20, 13), 200))
    img = np.arange(12).reshape(3, 4) * 20
    np.testing.assert_array_equal(lanczos_resize(img, 3, 4), img)  # same size: unchanged
    with pytest.raises(ValueError, match="gray levels"):
        lanczos_resize(np.full((4, 4), 300), 2, 2)
    with pytest.raises(ValueError, match="2-D"):
        lanczos_resize(np.zeros((2, 2, 2)), 2, 2)


def test_round_half_even_matches_python_round():
    for p in range(-60, 61):
        for q in range(1, 9):
            assert _round_half_even(p, q) == round(p / q)


def test_center_of_mass_on_a_half_pixel_rounds_to_even():
    # a 20x4 bar: center of mass at column 1.5 of the bar, 14 - 1.5 = 12.5 -> 12
    img = np.zeros((40, 40), np.uint8)
    img[5:25, 10:14] = 255
    d = to_mnist_28(img)
    cols = np.flatnonzero(d.any(axis=0))
    assert cols[0] == 12 and len(cols) == 4
    rows = np.flatnonzero(d.any(axis=1))
    assert rows[0] == 4 and len(rows) == 20   # 14 - 9.5 = 4.5 -> 4


# -- a reader's own files ------------------------------------------------------------

ORIENTATION = 0x0112   # the EXIF tag a phone sets instead of rotating the pixels


def _glyph():
    """A dark, clearly asymmetric 'L' on light paper, 120x80 pixels."""
    g = np.full((120, 80), 230, np.uint8)
    g[10:110, 15:30] = 20
    g[95:110, 15:70] = 20
    return g


@pytest.mark.parametrize("orientation, stored", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                                 (3, Image.Transpose.ROTATE_180)])
@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_exif_orientation_is_applied(tmp_path, orientation, stored, fmt):
    """Item 4: a phone stores the sensor's pixels and an Orientation tag; the digit must be read as
    the reader sees it in any viewer, not lying on its side."""
    upright = Image.fromarray(_glyph())
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path = tmp_path / f"photo.{fmt}"
    upright.transpose(stored).save(path, exif=exif.tobytes(), **({"quality": 95} if fmt == "jpeg" else {}))
    seen = load_grayscale(path)
    assert seen.shape == (120, 80)
    expected = to_mnist_28(upright)
    got = to_mnist_28(path)
    assert np.abs(got - expected).max() < (1e-6 if fmt == "png" else 0.15)
    assert np.abs(to_mnist_28(np.asarray(upright.transpose(stored))) - expected).max() > 0.5   # it matters
    with Image.open(path) as im:   # an opened image is turned upright too
        assert np.abs(to_mnist_28(im) - expected).max() < (1e-6 if fmt == "png" else 0.15)


def _png(width, height, rows=b""):
    """A PNG whose header declares width x height gray pixels, with ``rows`` as its (short) data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height", [(30_000, 30_000), (10_000, 9_000), (9_000, 7_500)])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, width, height):
    """A few hundred bytes that declare 900, 90 or 68 megapixels (PIL's own error, its warning, and
    our MAX_PIXELS) are refused with a DigitImageError, before any pixel is decoded."""
    assert width * height > MAX_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(width, height, bytes(width + 1)))
    assert path.stat().st_size < 1000
    with pytest.raises(DigitImageError, match="^refused"):
        preprocess_digit_image(path)


def test_damaged_and_foreign_files(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 80), dtype=np.uint8)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    with pytest.raises(DigitImageError, match="cannot read the image"):
        preprocess_digit_image(cut)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DigitImageError, match="not an image file"):
        preprocess_digit_image(text)
    with pytest.raises(FileNotFoundError):
        preprocess_digit_image(tmp_path / "absent.png")
    assert issubclass(DigitImageError, ValueError)
