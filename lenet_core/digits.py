"""Turn a photo or drawing of one handwritten digit into a LeNet-5 input, the way MNIST was made.

MNIST digits are white strokes on a black background; each was scaled so that its
longer side is 20 pixels (keeping the aspect ratio, with anti-aliasing) and then
placed in a 28x28 field so that its centre of mass sits in the middle. A reader's
own digit, drawn dark on light paper at any size, has to go through the same steps
before the network can read it; :func:`preprocess_digit_image` does them:

1. grayscale (transparent pixels count as white paper);
2. invert if the background is light, judged from the median of the border pixels;
3. stretch the contrast so the background becomes 0 and the darkest stroke 255
   (removes the grey of paper and uneven lighting);
4. crop to the bounding box of the ink;
5. resize so the longer side is 20 pixels, keeping the aspect ratio;
6. paste into 28x28 with the centre of mass at pixel (14, 14), as MNIST's is on average;
7. scale to [0, 1] and pad to 32x32 like every training image.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

__all__ = ["preprocess_digit_image", "to_mnist_28", "load_grayscale"]

INK_THRESHOLD = 0.25  # fraction of full contrast above which a pixel counts as ink for the bounding box


def load_grayscale(image) -> np.ndarray:
    """A path, ``PIL.Image`` or array -> float64 grayscale array in 0..255, shape (H, W).

    Arrays may be (H, W), (H, W, 3) or (H, W, 4); floats with a maximum of at most 1 are
    taken to be in [0, 1]. Alpha is composited onto white.
    """
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            im.load()
            return load_grayscale(im)
    if isinstance(image, Image.Image):
        im = image
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
        raise ValueError(f"expected a 2-D grayscale or (H, W, 3|4) colour image, got shape {a.shape}")
    if a.size and a.max() <= 1.0:
        a = a * 255.0
    return a


def to_mnist_28(image) -> np.ndarray:
    """Steps 1-6: any digit image -> float32 (28, 28) in [0, 1], white digit on black, MNIST-style.

    Raises ``ValueError`` if the image is empty or has no visible digit (a single flat colour).
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
        raise ValueError("no digit found in the image: it is (nearly) one flat colour. Use a picture of one "
                         "digit, dark on light paper or light on a dark background, filling much of the frame.")
    ink = np.clip((g - background) / (peak - background), 0.0, 1.0)

    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]

    h, w = ink.shape
    scale = 20.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    im = Image.fromarray(np.round(ink * 255).astype(np.uint8))
    small = np.asarray(im.resize((nw, nh), Image.LANCZOS), dtype=np.float64) / 255.0

    total = small.sum()
    if total <= 0:  # pragma: no cover - a non-empty crop always keeps some ink
        raise ValueError("no digit found in the image")
    ii, jj = np.mgrid[:nh, :nw]
    ci, cj = (small * ii).sum() / total, (small * jj).sum() / total
    top, left = int(round(14 - ci)), int(round(14 - cj))
    top, left = min(max(top, 0), 28 - nh), min(max(left, 0), 28 - nw)  # keep the whole digit in the field
    out = np.zeros((28, 28), dtype=np.float32)
    out[top:top + nh, left:left + nw] = small
    return out


def preprocess_digit_image(image) -> np.ndarray:
    """A path, ``PIL.Image`` or array of one handwritten digit -> float32 ``(1, 1, 32, 32)`` in [0, 1].

    The result is what :func:`lenet_core.preprocess.prepare_lenet_input` makes of an MNIST
    digit, so it can go straight into ``predict(model, x)``. See the module docstring
    for the steps.
    """
    d28 = to_mnist_28(image)
    return np.pad(d28, 2)[None, None].astype(np.float32)
