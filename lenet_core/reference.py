"""Plainly written reference implementations, loops and all.

These follow the equations in the docstrings of :mod:`lenet_core.layers` one
index at a time. They are slow (a LeNet-5 epoch this way takes hours) and are
kept for two reasons: the tests compare the fast layers against them, and the
book shows them as the most direct reading of the math.

Shapes are NCHW as everywhere: x (N, C, H, W), W (F, C, K, K), b (F,).
"""
from __future__ import annotations

import numpy as np

__all__ = ["conv2d_forward_naive", "conv2d_backward_naive", "avgpool_forward_naive",
           "avgpool_backward_naive", "maxpool_forward_naive", "maxpool_backward_naive"]


def _pad(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x


def conv2d_forward_naive(x, W, b, stride=1, padding=0):
    """``out[n, f, i, j] = b[f] + sum_{c,u,v} W[f, c, u, v] * xp[n, c, i*S + u, j*S + v]``."""
    xp = _pad(x, padding)
    n_img, _, h, w = xp.shape
    f_out, c_in, k, _ = W.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.zeros((n_img, f_out, ho, wo), dtype=np.result_type(x, W))
    for n in range(n_img):
        for f in range(f_out):
            for i in range(ho):
                for j in range(wo):
                    window = xp[n, :, i * stride:i * stride + k, j * stride:j * stride + k]
                    out[n, f, i, j] = np.sum(window * W[f]) + b[f]
    return out


def conv2d_backward_naive(dout, x, W, stride=1, padding=0):
    """Return ``(dx, dW, db)``: every output gradient is sent back along the weights that made it."""
    xp = _pad(x, padding)
    f_out, _, k, _ = W.shape
    n_img, _, ho, wo = dout.shape
    dxp, dW = np.zeros_like(xp), np.zeros_like(W)
    db = dout.sum(axis=(0, 2, 3))
    for n in range(n_img):
        for f in range(f_out):
            for i in range(ho):
                for j in range(wo):
                    rows = slice(i * stride, i * stride + k)
                    cols = slice(j * stride, j * stride + k)
                    dW[f] += dout[n, f, i, j] * xp[n, :, rows, cols]
                    dxp[n, :, rows, cols] += dout[n, f, i, j] * W[f]
    dx = dxp[:, :, padding:padding + x.shape[2], padding:padding + x.shape[3]] if padding else dxp
    return dx, dW, db


def _pool_windows(x, k, s):
    n_img, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    for n in range(n_img):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    yield n, ch, i, j, (n, ch, slice(i * s, i * s + k), slice(j * s, j * s + k))


def _pool_out(x, k, s):
    n_img, c, h, w = x.shape
    return np.zeros((n_img, c, (h - k) // s + 1, (w - k) // s + 1), dtype=x.dtype)


def avgpool_forward_naive(x, k, stride=None):
    s = stride or k
    out = _pool_out(x, k, s)
    for n, c, i, j, win in _pool_windows(x, k, s):
        out[n, c, i, j] = x[win].mean()
    return out


def avgpool_backward_naive(dout, x, k, stride=None):
    s = stride or k
    dx = np.zeros_like(x)
    for n, c, i, j, win in _pool_windows(x, k, s):
        dx[win] += dout[n, c, i, j] / (k * k)
    return dx


def maxpool_forward_naive(x, k, stride=None):
    s = stride or k
    out = _pool_out(x, k, s)
    for n, c, i, j, win in _pool_windows(x, k, s):
        out[n, c, i, j] = x[win].max()
    return out


def maxpool_backward_naive(dout, x, k, stride=None):
    """The gradient goes to the first maximum of each window in row-major order (``argmax``)."""
    s = stride or k
    dx = np.zeros_like(x)
    for n, c, i, j, win in _pool_windows(x, k, s):
        u, v = np.unravel_index(np.argmax(x[win]), (k, k))
        dx[n, c, i * s + u, j * s + v] += dout[n, c, i, j]
    return dx
