"""Mini-batches and a train/validation split, reproducible from a seed."""
from __future__ import annotations

from typing import Iterator

import numpy as np

__all__ = ["iterate_minibatches", "train_val_split"]

def _rng(seed) -> np.random.Generator:
    """A Generator from None, an int seed, or an existing Generator (used as is)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_same_length(x, y) -> None:
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")


def iterate_minibatches(
    x, y, batch_size: int, shuffle: bool = True, seed=None, drop_last: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x_batch, y_batch)`` pairs covering one epoch.

    Every index appears exactly once per epoch (once at most with
    ``drop_last``, which skips a final batch smaller than ``batch_size``).

    Parameters
    ----------
    x, y : numpy.ndarray
        Arrays with the same first dimension N, e.g. images ``(N, 1, 32, 32)``
        and labels ``(N,)``.
    batch_size : int
        Positive.
    shuffle : bool
        Visit the samples in random order (otherwise in order 0..N-1).
    seed : None, int or numpy.random.Generator
        An int gives the same order every time it is used; pass one Generator
        for all epochs to get a different, still reproducible, order each epoch.

    Yields
    ------
    x_batch, y_batch : numpy.ndarray
        ``x[idx]``, ``y[idx]`` for the batch's indices (copies, same dtypes).
    """
    _check_same_length(x, y)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(x)
    order = _rng(seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def train_val_split(
    x, y, val_fraction: float | None = None, val_size: int | None = None, seed=0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Randomly split ``(x, y)`` into disjoint training and validation parts.

    Parameters
    ----------
    x, y : numpy.ndarray
        Same first dimension N.
    val_fraction : float, optional
        Fraction in (0, 1) to hold out (rounded to a whole number of samples).
    val_size : int, optional
        Number of samples to hold out, in 1..N-1. Give at most one of
        ``val_fraction``/``val_size``; with neither, 10 % are held out.
    seed : None, int or numpy.random.Generator
        Seeds the shuffle; the default 0 makes the split reproducible.

    Returns
    -------
    (x_train, y_train), (x_val, y_val)
        Copies; together they hold every sample exactly once.

    Raises
    ------
    ValueError
        If both sizes are given, or the validation part would be empty or
        everything.
    """
    _check_same_length(x, y)
    n = len(x)
    if val_fraction is not None and val_size is not None:
        raise ValueError("give val_fraction or val_size, not both")
    if val_size is None:
        fraction = 0.1 if val_fraction is None else val_fraction
        if not 0 < fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
        val_size = int(round(fraction * n))
    if not 0 < val_size < n:
        raise ValueError(f"validation size must be between 1 and {n - 1} for {n} samples, got {val_size}")
    order = _rng(seed).permutation(n)
    val_idx, train_idx = order[:val_size], order[val_size:]
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])

