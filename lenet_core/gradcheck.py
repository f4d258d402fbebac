"""Numerical gradient checks: compare a backward pass with central differences.

The recipe: pick a random direction ``R`` of the output's shape and the scalar
loss ``L = sum(forward(x) * R)``, so that ``dL/dout = R``. The backward pass gives
``dL/dx`` and ``dL/dW``; the central difference

    dL/dx_i  ~  (L(x + h e_i) - L(x - h e_i)) / (2h)

estimates the same numbers with an error of order ``h^2``. In float64 with
``h = 1e-6`` a correct backward pass agrees to a relative error around 1e-8 or
less; anything above 1e-5 means a bug. Always check in float64: float32 has only
~7 significant digits, so its differences drown in rounding.
"""
from __future__ import annotations

import numpy as np

from .losses import SoftmaxCrossEntropy

__all__ = ["numerical_gradient", "rel_error", "max_rel_error", "check_layer", "check_model"]


def rel_error(a, b, floor: float = 1e-12) -> float:
    """Relative error of two arrays as a whole: ``||a - b|| / (||a|| + ||b||)`` (Euclidean norms).

    0 for equal arrays, at most 1. A whole-array measure is robust where the
    elementwise one is not: an entry whose true gradient is tiny (say 1e-9) has an
    elementwise relative error dominated by rounding even when the backward pass is
    right. :func:`max_rel_error` gives the stricter elementwise maximum.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), floor))


def max_rel_error(a, b, floor: float = 1e-12) -> float:
    """Largest elementwise ``|a - b| / max(|a| + |b|, floor)``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), floor)))


def numerical_gradient(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar function ``f()`` with respect to the array ``x``.

    ``x`` is perturbed in place, one element at a time, and restored exactly, so
    ``f`` may read it through any reference (a layer's ``params["W"]``, say).
    """
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError("numerical_gradient needs a floating-point array")
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        i = it.multi_index
        old = x[i].copy()
        x[i] = old + h
        plus = f()
        x[i] = old - h
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def check_layer(layer, x, seed=0, h: float = 1e-6) -> dict:
    """Relative errors of ``layer``'s backward pass against central differences.

    ``x`` should be float64 and the layer's parameters float64. Returns
    ``{"x": err, "W": err, "b": err, ...}`` for the input and every parameter.
    Layers with randomness (dropout) must be in eval mode or reseeded per call.
    """
    x = np.array(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    R = rng.standard_normal(np.shape(layer.forward(x)))

    def loss():
        return float(np.sum(layer.forward(x) * R))

    layer.forward(x)
    analytic = {"x": layer.backward(R.copy())}
    analytic.update({k: g.copy() for k, g in layer.grads.items()})
    errors = {"x": rel_error(analytic["x"], numerical_gradient(loss, x, h))}
    for key, p in layer.params.items():
        errors[key] = rel_error(analytic[key], numerical_gradient(loss, p, h))
    return errors


def check_model(model, x, labels, loss_fn=None, h: float = 1e-5, max_per_param: int | None = 20, seed=0) -> dict:
    """Relative error of every parameter gradient of a whole model under the softmax cross-entropy loss.

    To keep the check quick on large weights, at most ``max_per_param`` randomly
    chosen entries of each parameter are perturbed (``None`` checks all).
    Returns ``{param name: rel_error}`` plus ``"x"`` for the input (sampled likewise).

    The default step ``h = 1e-5`` is larger than :func:`check_layer`'s: through a
    whole network some gradients (the input's, say) are around 1e-4, and rounding in
    the loss (about 1e-16 * L / h) would otherwise dominate their error. With ReLU and
    max pooling, a much larger ``h`` would step across kinks and ties.
    """
    loss_fn = loss_fn or SoftmaxCrossEntropy()
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=model.dtype)

    def loss():
        return loss_fn.forward(model.forward(x), labels)

    loss()
    dx = model.backward(loss_fn.backward())
    analytic = {"x": dx}
    analytic.update({name: g.copy() for name, _, g in model.params_and_grads()})
    arrays = {"x": x}
    arrays.update({name: p for name, p, _ in model.params_and_grads()})
    errors = {}
    for name, arr in arrays.items():
        flat_idx = np.arange(arr.size)
        if max_per_param is not None and arr.size > max_per_param:
            flat_idx = rng.choice(arr.size, size=max_per_param, replace=False)
        num, ana = [], []
        for fi in flat_idx:
            i = np.unravel_index(fi, arr.shape)
            old = arr[i].copy()
            arr[i] = old + h
            plus = loss()
            arr[i] = old - h
            minus = loss()
            arr[i] = old
            num.append((plus - minus) / (2 * h))
            ana.append(analytic[name][i])
        errors[name] = rel_error(np.array(ana), np.array(num))
    return errors
