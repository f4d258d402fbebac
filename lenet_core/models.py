"""The book's networks: LeNet-5 (classic 1998 and modern) and multilayer-perceptron baselines."""
from __future__ import annotations

import numpy as np

from .init import initialize
from .layers import AvgPool2D, Conv2D, Dropout, Flatten, Layer, Linear, MaxPool2D, ReLU, Sigmoid, Tanh
from .fast import ENGINES, to_fast
from .network import Sequential

__all__ = ["lenet5", "mlp", "LENET5_VARIANTS"]


LENET5_VARIANTS = ("classic", "modern")


def _on_engine(model: Sequential, engine: str) -> Sequential:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose 'fast' (the default) or 'plain'")
    return to_fast(model) if engine == "fast" else model


def lenet5(variant: str = "classic", seed=None, dtype=np.float32, init: str = "default",
           dropout: float = 0.0, engine: str = "fast") -> Sequential:
    """LeNet-5 for 1x32x32 inputs (MNIST digits padded by 2 pixels on each side).

    ``classic`` follows LeCun et al. (1998): C1 6@5x5 -> tanh -> S2 2x2 average pool ->
    C3 16@5x5 -> tanh -> S4 average pool -> C5 120@5x5 -> tanh -> F6 84 -> tanh -> 10
    outputs (61,706 parameters; C3 here connects to all 6 maps, as in modern
    re-implementations, and the output is a linear layer read by softmax rather than
    the paper's RBF units). ``modern`` keeps every shape and swaps in ReLU and 2x2 max
    pooling. ``dropout > 0`` adds dropout before the last two linear layers.
    ``seed`` makes the initial weights reproducible; ``init`` picks the scheme
    (see :mod:`lenet_core.init`). ``engine="fast"`` (the default) computes with the fast
    engine's twins of the layers, ``"plain"`` with the layers of :mod:`lenet_core.layers`
    themselves; both give the same numbers (see :mod:`lenet_core.fast`).
    """
    if variant not in LENET5_VARIANTS:
        raise ValueError(f"unknown LeNet-5 variant {variant!r}; choose 'classic' or 'modern'")
    act, pool = (Tanh, AvgPool2D) if variant == "classic" else (ReLU, MaxPool2D)
    rng = np.random.default_rng(seed)
    layers = [
        Conv2D(1, 6, 5, dtype=dtype, rng=rng), act(), pool(2),      # C1, S2: 6@28x28 -> 6@14x14
        Conv2D(6, 16, 5, dtype=dtype, rng=rng), act(), pool(2),     # C3, S4: 16@10x10 -> 16@5x5
        Conv2D(16, 120, 5, dtype=dtype, rng=rng), act(),            # C5: 120@1x1
        Flatten(),
    ]
    if dropout:
        layers.append(Dropout(dropout, seed=rng.integers(2**31)))
    layers += [Linear(120, 84, dtype=dtype, rng=rng), act()]        # F6
    if dropout:
        layers.append(Dropout(dropout, seed=rng.integers(2**31)))
    layers.append(Linear(84, 10, dtype=dtype, rng=rng))             # output
    model = Sequential(layers, name=f"lenet5-{variant}", input_shape=(1, 1, 32, 32))
    if init != "default":
        initialize(model, init, seed=rng)
    return _on_engine(model, engine)


def mlp(sizes=(784, 300, 100, 10), activation: str = "relu", seed=None, dtype=np.float32,
        engine: str = "fast") -> Sequential:
    """A multilayer perceptron baseline, e.g. 784-300-100-10 as in earlier from-scratch attempts.

    Starts with :class:`Flatten`, so it takes images (N, 1, 28, 28) or rows (N, 784).
    ``activation`` is ``"relu"``, ``"tanh"`` or ``"sigmoid"``; ``engine`` as in :func:`lenet5`.
    """
    acts = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid}
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(acts)}")
    if len(sizes) < 2:
        raise ValueError("mlp needs at least an input and an output size")
    rng = np.random.default_rng(seed)
    layers: list[Layer] = [Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(a, b, dtype=dtype, rng=rng))
        if i < len(sizes) - 2:
            layers.append(acts[activation]())
    return _on_engine(Sequential(layers, name="mlp-" + "-".join(map(str, sizes)), input_shape=(1, sizes[0])),
                      engine)
