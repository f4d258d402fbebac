"""Turn a photo or drawing of one handwritten digit into a LeNet-5 input, the way MNIST was made.

MNIST digits are white strokes on a black background; each was scaled so that its
longer side is 20 pixels (keeping the aspect ratio, with anti-aliasing) and then
placed in a 28x28 field so that its center of mass sits in the middle. A reader's
own digit, drawn dark on light paper at any size, has to go through the same steps
before the network can read it; :func:`preprocess_digit_image` does them:

1. upright as the camera saw it (the EXIF orientation a phone records is applied), then
   grayscale (transparent pixels count as white paper);
2. invert if the background is light, judged from the median of the border pixels;
3. stretch the contrast so the background becomes 0 and the darkest stroke 255
   (removes the gray of paper and uneven lighting);
4. crop to the bounding box of the ink;
5. resize so the longer side is 20 pixels, keeping the aspect ratio;
6. paste into 28x28 with the center of mass at pixel (14, 14), as MNIST's is on average;
7. scale to [0, 1] and pad to 32x32 like every training image.

Every step is exact, fully specified arithmetic, so that another implementation can
reproduce the result bit for bit (the book's in-page network, ``lenet_core/web/digit.js``,
does, and ``tests/browser/test_live_page.py`` checks it): the resize of step 5 is
:func:`lanczos_resize`, a Lanczos filter in fixed-point integers that gives the same
gray levels as Pillow's ``Image.resize(..., LANCZOS)`` done one axis at a time
(horizontal, then vertical), and the center of mass of step 6 is computed from whole
gray levels with integer sums and rounded half to even, as Python's ``round`` does.

A file that cannot be read as an image, or that declares more than ``MAX_PIXELS``
pixels (a "decompression bomb": a few kilobytes that would decode to gigabytes), is
refused with a :class:`DigitImageError` before its pixels are decoded.
"""
from __future__ import annotations

import math
import os
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["preprocess_digit_image", "to_mnist_28", "load_grayscale", "lanczos_resize", "open_image",
           "DigitImageError", "MAX_PIXELS"]

INK_THRESHOLD = 0.25  # fraction of full contrast above which a pixel counts as ink for the bounding box
BOX = 20              # the longer side of the digit after step 5, in pixels
FIELD = 28            # the size of the field it is pasted into (step 6)
PRECISION_BITS = 22   # fixed-point resampling weights: integers in units of 2**-22
#: The largest image read (width x height); a 48-megapixel phone photo is below it.
MAX_PIXELS = 64_000_000


class DigitImageError(ValueError):
    """The file cannot be used as a digit image: unreadable, not an image, or refused as too large."""


def open_image(path) -> Image.Image:
    """Open and decode an image file, upright (EXIF orientation applied); DigitImageError if it is not
    an image or declares more than ``MAX_PIXELS`` pixels, checked before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise DigitImageError(f"refused: the image declares {width}x{height} pixels "
                                          f"({width * height / 1e6:,.0f} megapixels), more than the "
                                          f"{MAX_PIXELS / 1e6:.0f} this reads; scale it down first")
                im.load()
                return ImageOps.exif_transpose(im)
    except (DigitImageError, FileNotFoundError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DigitImageError(f"refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise DigitImageError("not an image file that Pillow can read (PNG, JPEG, GIF, BMP, TIFF, WebP ...)") \
            from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:   # truncated or damaged data
        raise DigitImageError(f"cannot read the image ({type(exc).__name__}: {exc})") from None


def load_grayscale(image) -> np.ndarray:
    """A path, ``PIL.Image`` or array -> float64 grayscale array in 0..255, shape (H, W), upright.

    Arrays may be (H, W), (H, W, 3) or (H, W, 4); floats with a maximum of at most 1 are
    taken to be in [0, 1]. Alpha is composited onto white.
    """
    if isinstance(image, (str, os.PathLike)):
        return load_grayscale(open_image(image))
    if isinstance(image, Image.Image):
        im = ImageOps.exif_transpose(image)   # upright, as a viewer shows it
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im)
        return np.asarray(im.convert("L"), dtype=np.float64)
    a = np.asarray(image)
    if a.dtype == bool:
        a = a.astype(np.float64)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"expected an image array of numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    while a.ndim == 4 and a.shape[0] == 1 or a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[2] in (3, 4):
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        rgb = a[..., :3] @ np.array([0.299, 0.587, 0.114])
        if a.shape[2] == 4:
            alpha = a[..., 3] / 255.0
            rgb = rgb * alpha + 255.0 * (1 - alpha)
        return rgb
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale or (H, W, 3|4) color image, got shape {a.shape}")
    if a.size and a.max() <= 1.0:
        a = a * 255.0
    return a


def _lanczos3(x: float) -> float:
    """The Lanczos-3 kernel: sinc(x) sinc(x/3) on [-3, 3), 0 outside."""
    if not -3.0 <= x < 3.0:
        return 0.0
    return _sinc(x) * _sinc(x / 3)


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _resampling_weights(n_in: int, n_out: int) -> np.ndarray:
    """Fixed-point Lanczos weights for resizing one axis from ``n_in`` to ``n_out`` pixels.

    Returns an int64 matrix ``(n_out, n_in)``: row ``o`` holds the weights of the input
    pixels that output pixel ``o`` averages, in units of ``2**-PRECISION_BITS``. Output
    pixel ``o`` is centered on input coordinate ``c = (o + 1/2) * n_in / n_out``; when
    shrinking, the kernel is stretched by the scale factor ``s = n_in / n_out`` (that is
    the anti-aliasing: each output pixel averages about ``6 s`` input pixels), and the
    weights of each row are divided by their sum so that a flat image stays flat.
    The order of every operation follows Pillow's ``Resample.c``, to give its numbers.
    """
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    support = 3.0 * stretch
    inverse = 1.0 / stretch
    weights = np.zeros((n_out, n_in), dtype=np.int64)
    for o in range(n_out):
        center = (o + 0.5) * scale
        first = max(int(center - support + 0.5), 0)          # int() truncates, as C does
        stop = min(int(center + support + 0.5), n_in)
        row = [_lanczos3((i - center + 0.5) * inverse) for i in range(first, stop)]
        total = 0.0
        for w in row:                                         # summed in order, not pairwise
            total += w
        for k, w in enumerate(row):
            w = w / total if total != 0.0 else w
            weights[o, first + k] = int(w * (1 << PRECISION_BITS) + (0.5 if w >= 0 else -0.5))
    return weights


def _to_gray_levels(acc: np.ndarray) -> np.ndarray:
    """Fixed-point sums -> whole gray levels 0..255: add one half, drop the fraction, clip."""
    return np.clip((acc + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS, 0, 255)


def lanczos_resize(pixels, height: int, width: int) -> np.ndarray:
    """Resize an image of whole gray levels 0..255 to ``(height, width)`` with a Lanczos-3 filter.

    Two passes, as Pillow's ``Image.resize(..., Image.LANCZOS)`` of a mode-"L" image makes
    them: the rows first (each row is resampled to ``width`` pixels with
    :func:`_resampling_weights`, rounded back to whole gray levels), then the columns. An
    axis whose size does not change is left alone. All sums are integer, so the result
    is exact. Returns int64 ``(height, width)`` in 0..255.
    """
    img = np.asarray(pixels, dtype=np.int64)
    if img.ndim != 2 or (img.size and (img.min() < 0 or img.max() > 255)):
        raise ValueError(f"expected a 2-D image of gray levels 0..255, got shape {img.shape}")
    if width != img.shape[1]:
        img = _to_gray_levels(img @ _resampling_weights(img.shape[1], width).T)
    if height != img.shape[0]:
        img = _to_gray_levels(_resampling_weights(img.shape[0], height) @ img)
    return img


def _round_half_even(p: int, q: int) -> int:
    """``round(p / q)`` for integers, ``q > 0``, ties to the even integer (as Python's ``round``)."""
    down, rest = divmod(p, q)
    if 2 * rest > q or (2 * rest == q and down % 2):
        return down + 1
    return down


def to_mnist_28(image) -> np.ndarray:
    """Steps 1-6: any digit image -> float32 (28, 28) in [0, 1], white digit on black, MNIST-style.

    Raises ``ValueError`` if the image is empty or has no visible digit (a single flat color).
    """
    g = load_grayscale(image)
    if g.size == 0 or min(g.shape) < 2:
        raise ValueError(f"the image is too small ({g.shape[1] if g.ndim == 2 else 0}x{g.shape[0]} pixels) "
                         "to hold a digit")
    border = np.concatenate([g[0], g[-1], g[1:-1, 0], g[1:-1, -1]])
    if np.median(border) > 127.5:  # light background: dark ink on paper
        g = 255.0 - g
        border = 255.0 - border
    background = float(np.median(border))
    peak = float(g.max())
    if peak - background < 16:  # less than ~6 % contrast: nothing drawn
        raise ValueError("no digit found in the image: it is (nearly) one flat color. Use a picture of one "
                         "digit, dark on light paper or light on a dark background, filling much of the frame.")
    ink = np.clip((g - background) / (peak - background), 0.0, 1.0)

    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]

    h, w = ink.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = lanczos_resize(np.round(ink * 255), nh, nw)   # whole gray levels 0..255

    # Center of mass (row ci, column cj) from integer sums: ci = sum(v * i) / sum(v).
    total = int(small.sum())
    if total <= 0:  # pragma: no cover - a non-empty crop always keeps some ink
        raise ValueError("no digit found in the image")
    ii, jj = np.mgrid[:nh, :nw]
    half = FIELD // 2
    top = _round_half_even(half * total - int((small * ii).sum()), total)    # round(14 - ci)
    left = _round_half_even(half * total - int((small * jj).sum()), total)   # round(14 - cj)
    top, left = min(max(top, 0), FIELD - nh), min(max(left, 0), FIELD - nw)  # keep the whole digit in the field
    out = np.zeros((FIELD, FIELD), dtype=np.float32)
    out[top:top + nh, left:left + nw] = small / 255.0
    return out


def preprocess_digit_image(image) -> np.ndarray:
    """A path, ``PIL.Image`` or array of one handwritten digit -> float32 ``(1, 1, 32, 32)`` in [0, 1].

    The result is what :func:`lenet_core.preprocess.prepare_lenet_input` makes of an MNIST
    digit, so it can go straight into ``predict(model, x)``. See the module docstring
    for the steps.
    """
    d28 = to_mnist_28(image)
    return np.pad(d28, 2)[None, None].astype(np.float32)
