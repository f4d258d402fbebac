r"""Which pixels did the network look at? Gradient saliency and integrated gradients.

Both methods explain one class score (logit) ``z_t(x)`` of a trained model: the
raw output for the target class ``t``, *before* the softmax. They need nothing
but the model's own backward pass: calling ``model.backward(dout)`` with
``dout`` equal to a one-hot row at ``t`` returns the gradient of ``z_t`` with
respect to the input, because a backward pass computes

.. math::  \frac{\partial}{\partial x} \sum_{n,k} \mathrm{dout}_{n,k}\, z_k(x_n)

and with ``dout[n, t_n] = 1`` (all else 0) that sum is ``sum_n z_{t_n}(x_n)``,
whose gradient with respect to ``x_n`` is the gradient of ``z_{t_n}(x_n)`` alone.

Saliency (:func:`input_gradient`, :func:`saliency_map`)
    ``g(x) = dz_t / dx``: how much the score would change per unit change of each
    pixel. A local, first-order answer.

Integrated gradients (:func:`integrated_gradients`; Sundararajan, Taly & Yan, 2017)
    Walk in a straight line from a *baseline* ``x'`` (default: a black image,
    all zeros) to ``x`` and add up the gradients along the way:

    .. math::

        \mathrm{IG}_i(x) = (x_i - x'_i) \int_0^1
            \frac{\partial z_t}{\partial x_i}\bigl(x' + \alpha (x - x')\bigr)\, d\alpha .

    By the fundamental theorem of calculus for line integrals the attributions
    add up to the change of the score (*completeness*):

    .. math::  \sum_i \mathrm{IG}_i(x) = z_t(x) - z_t(x') ,

    which :func:`completeness` checks. The integral is computed with an
    ``m``-point Riemann sum (midpoint or trapezoid rule), whose error shrinks
    like ``1/m^2`` for a smooth network (tanh, average pooling) and more slowly
    where ReLU or max pooling put kinks on the path.

All functions put the model in eval mode (so dropout is off) and restore the
previous mode of every layer afterwards. They run the model's ``backward``,
which overwrites the parameter gradients stored in its layers (``layer.grads``);
call them between training steps, never between a ``backward`` and its
optimizer ``step``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network import eval_mode

__all__ = ["target_logits", "input_gradient", "saliency_map", "integrated_gradients",
           "riemann_alphas", "completeness", "Completeness"]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _batch(model, x):
    """``x`` as a float batch in the model's dtype, and whether a single image was given.

    A single image is one dimension shorter than the model's input
    (``(C, H, W)`` for a CNN, ``(D,)`` for an MLP taking rows).
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be prepared floating-point input (e.g. prepare_lenet_input), got dtype {x.dtype}")
    ndim = len(model.input_shape) if getattr(model, "input_shape", None) else 4
    if x.ndim == ndim - 1:
        return x[np.newaxis].astype(model.dtype, copy=False), True
    if x.ndim < 2:
        raise ValueError(f"expected a batch (N, ...) or one image of {ndim - 1} dimensions, got shape {x.shape}")
    return x.astype(model.dtype, copy=False), False


def _targets(target, n):
    t = np.asarray(target)
    if t.ndim == 0:
        t = np.full(n, int(t))
    if t.shape != (n,):
        raise ValueError(f"target must be one class index or one per image ({n}), got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        if np.all(t == np.round(t)):
            t = t.astype(np.int64)
        else:
            raise ValueError(f"target must hold integer class indices, got {t!r}")
    return t.astype(np.int64)


def _unbatch(a, single):
    return a[0] if single else a


def _gradients(model, xb, t):
    """Target logits ``(N,)`` and their input gradients (like ``xb``) for a prepared batch."""
    logits = model.forward(xb)
    k = logits.shape[1]
    if t.size and (t.min() < 0 or t.max() >= k):
        raise ValueError(f"target classes must lie in [0, {k}), got {t.min()}..{t.max()}")
    rows = np.arange(len(xb))
    dout = np.zeros_like(logits)
    dout[rows, t] = 1
    dx = model.backward(dout)
    return logits[rows, t], np.asarray(dx).reshape(xb.shape)


# ---------------------------------------------------------------------------
# saliency
# ---------------------------------------------------------------------------


def target_logits(model, x, target, batch_size: int = 1000) -> np.ndarray:
    """The raw score ``z_t(x)`` of the target class for each image: shape ``(N,)`` (a float for one image)."""
    xb, single = _batch(model, x)
    t = _targets(target, len(xb))
    parts = []
    with eval_mode(model):
        for start in range(0, len(xb), int(batch_size)):
            logits = model.forward(xb[start:start + int(batch_size)])
            parts.append(logits[np.arange(len(logits)), t[start:start + len(logits)]])
    out = np.concatenate(parts)
    return float(out[0]) if single else out


def input_gradient(model, x, target) -> np.ndarray:
    r"""Gradient of the target class's logit with respect to the input: :math:`\partial z_t / \partial x`.

    Computed by one forward pass and one backward pass of the model itself, with
    ``dout`` a one-hot row at the target logit (see the module docstring for why
    that gives exactly this gradient), in eval mode.

    Parameters
    ----------
    model : Sequential
        A trained model, e.g. ``lenet5(...)``.
    x : ndarray
        A batch ``(N, C, H, W)`` (or ``(N, D)`` for an MLP) or one image ``(C, H, W)``,
        prepared as for training (float).
    target : int or array of int
        The class whose score is explained: one for all images or one per image
        (typically the label or the prediction).

    Returns
    -------
    ndarray
        Same shape as ``x``, in the model's dtype: element ``[n, c, i, j]`` is
        :math:`\partial z_{t_n}(x_n) / \partial x_{n,c,i,j}`.
    """
    xb, single = _batch(model, x)
    t = _targets(target, len(xb))
    with eval_mode(model):
        _, g = _gradients(model, xb, t)
    return _unbatch(g, single)


def saliency_map(model, x, target) -> np.ndarray:
    r"""Saliency (Simonyan, Vedaldi & Zisserman, 2014): :math:`\max_c |\partial z_t / \partial x_{c,i,j}|`.

    The absolute input gradient, reduced over the channel axis by its maximum:
    ``(N, C, H, W) -> (N, H, W)`` (one image ``(C, H, W) -> (H, W)``). Large values
    mark pixels where a small change moves the class score most, in either direction.
    """
    xb, single = _batch(model, x)
    g = np.abs(input_gradient(model, xb, target))
    return _unbatch(g.max(axis=1) if g.ndim == 4 else g, single)


# ---------------------------------------------------------------------------
# integrated gradients
# ---------------------------------------------------------------------------


def riemann_alphas(steps: int, method: str = "midpoint") -> tuple[np.ndarray, np.ndarray]:
    r"""Points :math:`\alpha_k` in [0, 1] and weights :math:`w_k` with :math:`\int_0^1 f \approx \sum_k w_k f(\alpha_k)`.

    ``"midpoint"``: :math:`\alpha_k = (k + 1/2)/m`, :math:`w_k = 1/m`, ``k = 0..m-1`` (``m`` points).
    ``"trapezoid"``: :math:`\alpha_k = k/m`, ``k = 0..m``, weights :math:`1/m` with
    :math:`1/(2m)` at both ends (``m + 1`` points). Both are exact for linear ``f``, and
    their error is :math:`O(1/m^2)` for smooth ``f``.
    ``"left"``: :math:`\alpha_k = k/m`, ``k = 0..m-1``, :math:`w_k = 1/m`: the plain
    left Riemann sum, error :math:`O(1/m)`, for comparison.
    """
    m = int(steps)
    if m < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if method == "midpoint":
        return (np.arange(m) + 0.5) / m, np.full(m, 1.0 / m)
    if method == "trapezoid":
        w = np.full(m + 1, 1.0 / m)
        w[[0, -1]] = 0.5 / m
        return np.arange(m + 1) / m, w
    if method == "left":
        return np.arange(m) / m, np.full(m, 1.0 / m)
    raise ValueError(f"unknown method {method!r}; choose 'midpoint', 'trapezoid' or 'left'")


def integrated_gradients(model, x, target, baseline=None, steps: int = 50, batch_size: int = 256,
                         method: str = "midpoint") -> np.ndarray:
    r"""Integrated-gradients attributions of the target logit, one per input element.

    .. math::

        \mathrm{IG}_i(x) \approx (x_i - x'_i) \sum_k w_k\,
            \frac{\partial z_t}{\partial x_i}\bigl(x' + \alpha_k (x - x')\bigr)

    with the points and weights of :func:`riemann_alphas`. All ``N * m`` path points
    go through the model in batches of ``batch_size`` (one forward and one backward
    per batch), so the cost is about ``N * m / batch_size`` training steps.

    Parameters
    ----------
    model : Sequential
    x : ndarray
        ``(N, C, H, W)`` or one image ``(C, H, W)`` (float, prepared as for training).
    target : int or array of int
        Class explained, one for all or one per image.
    baseline : ndarray, optional
        The reference input :math:`x'`: same shape as ``x`` or as one image (used for
        all). Default zeros: for MNIST scaled to [0, 1], a blank (black) image.
    steps : int
        ``m``, the number of intervals of the Riemann sum (50 is a common default; use
        :func:`completeness` to see whether it is enough).
    batch_size : int
        Path points per forward/backward pass.
    method : {"midpoint", "trapezoid", "left"}
        The quadrature rule.

    Returns
    -------
    ndarray
        Attributions with the shape of ``x``, in float64. Their sum over an image
        approximates :math:`z_t(x) - z_t(x')`.
    """
    xb, single = _batch(model, x)
    n = len(xb)
    t = _targets(target, n)
    if baseline is None:
        base = np.zeros_like(xb)
    else:
        base = np.asarray(baseline, dtype=xb.dtype)
        if base.shape == xb.shape[1:]:
            base = np.broadcast_to(base, xb.shape)
        elif base.shape != xb.shape:
            raise ValueError(f"baseline must have the shape of x {xb.shape} or of one image {xb.shape[1:]}, "
                             f"got {base.shape}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    alphas, weights = riemann_alphas(steps, method)
    m = len(alphas)
    diff = xb - base
    # Every (image, alpha) pair, image-major: point j belongs to image j // m, alpha j % m.
    total = n * m
    avg_grad = np.zeros(xb.shape, dtype=np.float64)
    with eval_mode(model):
        for start in range(0, total, int(batch_size)):
            j = np.arange(start, min(start + int(batch_size), total))
            img, k = j // m, j % m
            a = alphas[k].astype(xb.dtype).reshape((-1,) + (1,) * (xb.ndim - 1))
            points = base[img] + a * diff[img]
            _, g = _gradients(model, points, t[img])
            np.add.at(avg_grad, img, weights[k].reshape(a.shape) * g.astype(np.float64))
    return _unbatch(diff.astype(np.float64) * avg_grad, single)


@dataclass
class Completeness:
    r"""Result of :func:`completeness`, one entry per image (arrays of shape ``(N,)``).

    ``attribution_sum``: :math:`\sum_i \mathrm{IG}_i`; ``logit_x``: :math:`z_t(x)`;
    ``logit_baseline``: :math:`z_t(x')`; ``difference``: :math:`z_t(x) - z_t(x')`;
    ``abs_error``: :math:`|\sum_i \mathrm{IG}_i - (z_t(x) - z_t(x'))|`;
    ``rel_error``: ``abs_error / max(|difference|, 1e-12)``.
    """

    attribution_sum: np.ndarray
    logit_x: np.ndarray
    logit_baseline: np.ndarray
    difference: np.ndarray
    abs_error: np.ndarray
    rel_error: np.ndarray

    def __str__(self):
        rows = ["  sum of attributions   z_t(x) - z_t(baseline)   relative error"]
        for s, d, r in zip(self.attribution_sum, self.difference, self.rel_error):
            rows.append(f"  {s:20.6f}   {d:22.6f}   {r:14.2e}")
        return "\n".join(rows)


def completeness(model, x, attributions, target, baseline=None) -> Completeness:
    r"""Check the completeness axiom :math:`\sum_i \mathrm{IG}_i(x) = z_t(x) - z_t(x')`.

    ``x``, ``target`` and ``baseline`` must be those given to :func:`integrated_gradients`,
    and ``attributions`` its result. A relative error of 1e-2 or more says the Riemann sum
    needs more ``steps``.
    """
    xb, single = _batch(model, x)
    n = len(xb)
    t = _targets(target, n)
    attr = np.asarray(attributions, dtype=np.float64)
    if attr.shape != np.shape(x):
        raise ValueError(f"attributions have shape {attr.shape}, x has {np.shape(x)}")
    attr = attr.reshape(xb.shape)
    base = np.zeros_like(xb) if baseline is None else np.broadcast_to(np.asarray(baseline, dtype=xb.dtype),
                                                                        xb.shape)
    fx = np.asarray(target_logits(model, xb, t), dtype=np.float64)
    fb = np.asarray(target_logits(model, np.ascontiguousarray(base), t), dtype=np.float64)
    s = attr.reshape(n, -1).sum(axis=1)
    d = fx - fb
    err = np.abs(s - d)
    return Completeness(s, fx, fb, d, err, err / np.maximum(np.abs(d), 1e-12))
