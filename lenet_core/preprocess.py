"""Turn MNIST arrays into LeNet-5's input: scale, pad to 32x32, add the channel axis, standardize.

``prepare_lenet_input`` turns uint8 ``(N, 28, 28)`` images into the classic
LeNet-5 input, float32 ``(N, 1, 32, 32)`` in [0, 1]; the smaller steps it is
built from (``scale``, ``pad_to_32``, ``to_nchw``) are public too, with
``standardize`` (the CLI's default normalization) and ``one_hot``. Everything
stays float32.
"""
from __future__ import annotations

import numpy as np

from .mnist import IMAGE_SHAPE, NUM_CLASSES

__all__ = ["scale", "to_nchw", "pad_to_32", "prepare_lenet_input", "MNIST_MEAN", "MNIST_STD", "standardize",
           "one_hot"]

def scale(images, mean: float | None = None, std: float | None = None) -> np.ndarray:
    """Pixel values 0-255 -> float32 in [0, 1], optionally standardized.

    Parameters
    ----------
    images : array_like
        Any shape, values 0-255 (normally uint8).
    mean, std : float, optional
        Give both to return ``(images / 255 - mean) / std`` instead; they are
        statistics of the *scaled* [0, 1] pixels.

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``images``; a new array.

    Raises
    ------
    ValueError
        If only one of ``mean``/``std`` is given, or ``std`` is not positive.
    """
    x = np.array(images, dtype=np.float32)  # always a copy, safe to modify in place
    x /= np.float32(255)
    if mean is None and std is None:
        return x
    if mean is None or std is None:
        raise ValueError("give both mean and std to standardize, or neither")
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    x -= np.float32(mean)
    x /= np.float32(std)
    return x


def to_nchw(images) -> np.ndarray:
    """Add the channel axis LeNet-5 expects: ``(N, H, W) -> (N, 1, H, W)``.

    A single image ``(H, W)`` becomes ``(1, 1, H, W)``; a 4-D array is taken
    to be ``(N, C, H, W)`` already and returned unchanged. The result is a
    view when possible; dtype is kept.

    Raises
    ------
    ValueError
        For arrays with fewer than 2 or more than 4 dimensions.
    """
    images = np.asarray(images)
    if images.ndim == 2:
        return images[np.newaxis, np.newaxis]
    if images.ndim == 3:
        return images[:, np.newaxis]
    if images.ndim == 4:
        return images
    raise ValueError(f"expected (H, W), (N, H, W) or (N, C, H, W) images, got shape {images.shape}")


def pad_to_32(images) -> np.ndarray:
    """Zero-pad 28x28 images by 2 pixels on every side to 32x32.

    LeNet-5 was designed for 32x32 inputs, so that strokes near the border of
    a 28x28 digit still reach the center of the first layer's 5x5 receptive
    fields.

    Parameters
    ----------
    images : array_like
        Shape ``(..., 28, 28)``, e.g. ``(N, 28, 28)`` or ``(N, 1, 28, 28)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., 32, 32)``, same dtype; the border is 0.

    Raises
    ------
    ValueError
        If the last two dimensions are not 28x28.
    """
    images = np.asarray(images)
    if images.shape[-2:] != IMAGE_SHAPE or images.ndim < 2:
        raise ValueError(f"expected images of shape (..., 28, 28), got {images.shape}")
    pad = [(0, 0)] * (images.ndim - 2) + [(2, 2), (2, 2)]
    return np.pad(images, pad, mode="constant", constant_values=0)


def prepare_lenet_input(images) -> np.ndarray:
    """The classic LeNet-5 input: ``scale`` + ``pad_to_32`` + ``to_nchw``.

    Parameters
    ----------
    images : array_like
        uint8 ``(N, 28, 28)``, ``(N, 1, 28, 28)`` or one image ``(28, 28)``.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, 1, 32, 32)`` with values in [0, 1] and a zero border.
        Every model variant in the book uses exactly this input.
    """
    return to_nchw(pad_to_32(scale(images)))


MNIST_MEAN = 0.1307
"""Mean of the MNIST training pixels scaled to [0, 1]."""


MNIST_STD = 0.3081
"""Standard deviation of the MNIST training pixels scaled to [0, 1]."""


def standardize(x, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> np.ndarray:
    """``(x - mean) / std`` in float32: zero mean and unit spread for inputs in [0, 1].

    Applied after :func:`prepare_lenet_input`, the zero border becomes ``-mean/std``
    (about -0.42), as when padding comes before normalizing. The CLI trains on
    standardized inputs by default (``--no-normalize`` turns it off).
    """
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    x = np.array(x, dtype=np.float32)
    x -= np.float32(mean)
    x /= np.float32(std)
    return x


def one_hot(labels, num_classes: int = NUM_CLASSES, dtype=np.float32) -> np.ndarray:
    """Class indices ``(N,)`` -> one-hot rows ``(N, num_classes)``.

    Raises
    ------
    ValueError
        If labels are not integers or fall outside ``0 .. num_classes - 1``.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    out = np.zeros(labels.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, labels[..., np.newaxis].astype(np.intp), 1, axis=-1)
    return out

