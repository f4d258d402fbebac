"""Seedable weight initializers.

Each function returns a fresh array of ``shape`` drawn with the NumPy Generator
``rng``. ``fan_in`` is the number of inputs feeding one output unit
(``in_features`` for a linear layer, ``in_channels * K * K`` for a convolution) and
``fan_out`` the number of outputs one input unit feeds (``out_features`` or
``out_channels * K * K``).

=====================  =====================================  ==========================
scheme                 distribution                           meant for
=====================  =====================================  ==========================
``uniform_fan_in``     U(-1/sqrt(fan_in), 1/sqrt(fan_in))     PyTorch's default (W and b)
``lecun_normal``       N(0, 1/fan_in)                         tanh, the 1998 paper's idea
``lecun_uniform``      U(-sqrt(3/fan_in), +sqrt(3/fan_in))    tanh
``xavier_normal``      N(0, 2/(fan_in + fan_out))             tanh, sigmoid
``xavier_uniform``     U(-sqrt(6/(fan_in+fan_out)), ...)      tanh, sigmoid
``he_normal``          N(0, 2/fan_in)                         ReLU
``he_uniform``         U(-sqrt(6/fan_in), +sqrt(6/fan_in))    ReLU
=====================  =====================================  ==========================
"""
from __future__ import annotations

import numpy as np

__all__ = ["uniform_fan_in", "lecun_normal", "lecun_uniform", "xavier_normal", "xavier_uniform",
           "he_normal", "he_uniform", "SCHEMES", "initialize", "fans"]


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def uniform_fan_in(shape, fan_in, rng=None, dtype=np.float32):
    bound = 1.0 / np.sqrt(fan_in)
    return _rng(rng).uniform(-bound, bound, size=shape).astype(dtype)


def lecun_normal(shape, fan_in, fan_out=None, rng=None, dtype=np.float32):
    return (_rng(rng).standard_normal(shape) * np.sqrt(1.0 / fan_in)).astype(dtype)


def lecun_uniform(shape, fan_in, fan_out=None, rng=None, dtype=np.float32):
    bound = np.sqrt(3.0 / fan_in)
    return _rng(rng).uniform(-bound, bound, size=shape).astype(dtype)


def xavier_normal(shape, fan_in, fan_out, rng=None, dtype=np.float32):
    return (_rng(rng).standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def xavier_uniform(shape, fan_in, fan_out, rng=None, dtype=np.float32):
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return _rng(rng).uniform(-bound, bound, size=shape).astype(dtype)


def he_normal(shape, fan_in, fan_out=None, rng=None, dtype=np.float32):
    return (_rng(rng).standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def he_uniform(shape, fan_in, fan_out=None, rng=None, dtype=np.float32):
    bound = np.sqrt(6.0 / fan_in)
    return _rng(rng).uniform(-bound, bound, size=shape).astype(dtype)


SCHEMES = {
    "default": None,  # PyTorch's default: uniform_fan_in for weights and biases
    "lecun_normal": lecun_normal, "lecun_uniform": lecun_uniform,
    "xavier_normal": xavier_normal, "xavier_uniform": xavier_uniform,
    "he_normal": he_normal, "he_uniform": he_uniform,
}


def fans(W: np.ndarray) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a Linear ``(out, in)`` or Conv2D ``(out, in, K, K)`` weight."""
    receptive = int(np.prod(W.shape[2:])) if W.ndim > 2 else 1
    return W.shape[1] * receptive, W.shape[0] * receptive


def initialize(model, scheme: str = "default", seed=None):
    """Re-initialize every layer with a weight ``W`` in ``model`` (a Sequential or list of layers).

    ``"default"`` reproduces PyTorch's default (weights and biases uniform in
    ``±1/sqrt(fan_in)``); every other scheme draws the weights from that scheme and
    sets the biases to zero. Layers are visited in order with one Generator, so the
    same seed gives the same weights. Returns the model.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    rng = np.random.default_rng(seed)
    layers = getattr(model, "layers", model)
    for layer in layers:
        if "W" not in layer.params:
            continue
        W, b = layer.params["W"], layer.params.get("b")
        fan_in, fan_out = fans(W)
        if scheme == "default":
            W[...] = uniform_fan_in(W.shape, fan_in, rng, W.dtype)
            if b is not None:
                b[...] = uniform_fan_in(b.shape, fan_in, rng, b.dtype)
        else:
            W[...] = SCHEMES[scheme](W.shape, fan_in, fan_out, rng=rng, dtype=W.dtype)
            if b is not None:
                b[...] = 0
    return model
