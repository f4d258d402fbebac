"""lenet_core.digits: the resize and centre-of-mass steps are exact, specified arithmetic."""
import numpy as np
import pytest
from PIL import Image

from lenet_core.digits import _round_half_even, lanczos_resize, to_mnist_28


def _pillow_axis_by_axis(img, height, width):
    """Pillow's LANCZOS resize of a mode-"L" image, one axis at a time (rows, then columns)."""
    out = img.astype(np.uint8)
    if width != out.shape[1]:
        out = np.asarray(Image.fromarray(out).resize((width, out.shape[0]), Image.LANCZOS))
    if height != out.shape[0]:
        out = np.asarray(Image.fromarray(out).resize((width, height), Image.LANCZOS))
    return out.astype(np.int64)


@pytest.mark.parametrize("seed", range(4))
def test_lanczos_resize_gives_pillows_grey_levels(seed):
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
    with pytest.raises(ValueError, match="grey levels"):
        lanczos_resize(np.full((4, 4), 300), 2, 2)
    with pytest.raises(ValueError, match="2-D"):
        lanczos_resize(np.zeros((2, 2, 2)), 2, 2)


def test_round_half_even_matches_python_round():
    for p in range(-60, 61):
        for q in range(1, 9):
            assert _round_half_even(p, q) == round(p / q)


def test_centre_of_mass_on_a_half_pixel_rounds_to_even():
    # a 20x4 bar: centre of mass at column 1.5 of the bar, 14 - 1.5 = 12.5 -> 12
    img = np.zeros((40, 40), np.uint8)
    img[5:25, 10:14] = 255
    d = to_mnist_28(img)
    cols = np.flatnonzero(d.any(axis=0))
    assert cols[0] == 12 and len(cols) == 4
    rows = np.flatnonzero(d.any(axis=1))
    assert rows[0] == 4 and len(rows) == 20   # 14 - 9.5 = 4.5 -> 4
