"""The layers of a convolutional network, each with an explicit forward and backward pass.

This module is the book's code: every layer written as plainly as vectorized NumPy
allows, so that each method reads as its equations (the chapters print it). Speed
tricks live elsewhere, in :mod:`lenet_core.fast`, whose layers compute the same
numbers and are tested against these.

Every layer has the same small interface:

* ``forward(x)`` computes the output and keeps in ``self.cache`` what the backward
  pass needs;
* ``backward(dout)`` takes ``dout = dL/d(output)`` and returns ``dx = dL/d(input)``.
  It *overwrites* ``self.grads`` (never accumulates), never updates weights and never
  modifies ``dout``. The layers with parameters also accept
  ``backward(dout, input_grad=False)``, which only sets ``grads`` and returns None:
  nobody needs the gradient of the images that enter the first layer;
* ``params`` and ``grads`` are dicts keyed alike (``"W"``, ``"b"``) whose arrays have
  exactly PyTorch's shapes; optimizers update ``params`` from ``grads``;
* ``train()`` / ``eval()`` switch the mode (only :class:`Dropout` cares).

Arrays are NCHW, as in PyTorch: batch, channels, height, width. Layers with
parameters compute in their parameters' dtype (float32 by default, float64 for
gradient checks); the others in their input's floating dtype. In the code, sizes
are lower case (``n, c, h, w``, ``f, k, s, p``) so that ``W`` always means weights.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .init import uniform_fan_in

__all__ = [
    "Layer", "Conv2D", "AvgPool2D", "MaxPool2D", "Linear", "Flatten", "Tanh", "ReLU", "Sigmoid", "Dropout",
    "LAYER_TYPES", "build_layer", "layer_type", "conv_output_size", "windows",
]


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Output length along one axis: ``floor((size + 2*padding - kernel_size) / stride) + 1``."""
    return (size + 2 * padding - kernel_size) // stride + 1


def _as_float(x, dtype=None) -> np.ndarray:
    """``x`` as a floating array: in ``dtype`` if given, else its own float dtype (ints become float32)."""
    x = np.asarray(x)
    if dtype is not None:
        return x.astype(dtype, copy=False)
    if not np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32)
    return x


def windows(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """Every ``k x k`` window of ``x`` (N, C, H, W) at stride ``s``, as a read-only view.

    Shape (N, C, H_out, W_out, K, K): element ``[n, c, i, j, u, v]`` is
    ``x[n, c, i*s + u, j*s + v]``. Nothing is copied.
    """
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]


def _check_input(layer, x: np.ndarray, ndim: int, what: str, channels=None) -> None:
    if x.ndim != ndim:
        raise ValueError(
            f"{type(layer).__name__} expects a {ndim}-D input {what}, got shape {x.shape}. "
            + ("Add a channel axis with x[:, None] for grayscale images." if ndim == 4 and x.ndim == 3 else ""))
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{type(layer).__name__} expects {channels} input channel(s) on axis 1, got shape {x.shape} "
            f"({x.shape[1]} channels). Check the previous layer's out_channels or the input layout (NCHW).")


def _check_size(layer, x_shape, k: int, padding: int = 0) -> None:
    if x_shape[2] + 2 * padding < k or x_shape[3] + 2 * padding < k:
        extra = f" (padding {padding})" if padding else ""
        raise ValueError(f"{type(layer).__name__}: input {tuple(x_shape)}{extra} is smaller than the "
                         f"{k}x{k} window.")


def _positive_int(layer_name: str, name: str, value, low: int = 1) -> int:
    if int(value) != value or value < low:
        raise ValueError(f"{layer_name}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


class Layer:
    """Base class: holds ``params``, ``grads``, the train/eval flag and the cache."""

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True
        self.cache = None

    # -- interface ---------------------------------------------------------
    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dout):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def train(self):
        """Switch to training mode (dropout active). Returns self."""
        self.training = True
        return self

    def eval(self):
        """Switch to evaluation mode (dropout off). Returns self."""
        self.training = False
        return self

    # -- description -------------------------------------------------------
    def get_config(self) -> dict:
        """Constructor arguments, enough to rebuild an identical (untrained) layer."""
        return {}

    def output_shape(self, input_shape: tuple) -> tuple:
        """Shape of the output for an input of ``input_shape`` (batch axis included)."""
        return tuple(input_shape)

    def macs(self, input_shape: tuple) -> int:
        """Multiply-accumulate operations of one forward pass over ``input_shape``."""
        return 0

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def describe(self) -> str:
        """A short label for tables, e.g. ``Conv2D 1->6 5x5``."""
        return layer_type(self)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{layer_type(self)}({args})"

    # -- helpers for subclasses -------------------------------------------
    def _cached(self):
        if self.cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward was called before forward: "
                "run forward(x) on a batch first, then backward(dout) with the gradient of its output.")
        return self.cache

    def _check_dout(self, dout, expected_shape, dtype=None) -> np.ndarray:
        dout = np.asarray(dout)
        if dout.shape != tuple(expected_shape):
            raise ValueError(
                f"{type(self).__name__}.backward: dout has shape {dout.shape} but the last forward "
                f"output had shape {tuple(expected_shape)}; pass the gradient of that output.")
        return dout if dtype is None else dout.astype(dtype, copy=False)


class Conv2D(Layer):
    r"""2-D convolution (really cross-correlation, as in every deep-learning library).

    Math, for output channel ``f`` at position ``(i, j)``::

        out[n, f, i, j] = b[f] + sum_{c, u, v} W[f, c, u, v] * xp[n, c, i*S + u, j*S + v]

    where ``xp`` is ``x`` zero-padded by ``P`` on each spatial side.

    Shapes:
        x:    (N, C, H, W)
        W:    (F, C, K, K)  -- PyTorch's ``Conv2d.weight``
        b:    (F,)
        out:  (N, F, H_out, W_out),  H_out = floor((H + 2P - K) / S) + 1 (same for W_out)

    Forward (im2col): pad, take every K x K window of every channel as one row of a
    matrix ``cols`` of shape (N*H_out*W_out, C*K*K) -- row ``(n, i, j)``, column ``(c, u, v)``
    -- and the whole batch is one matrix product::

        out2d = cols @ W2d.T + b        W2d = W.reshape(F, C*K*K),  out2d: (N*H_out*W_out, F)

    Backward, with ``dout2d`` = ``dout`` rearranged to (N*H_out*W_out, F) like ``out2d``::

        db    = dout2d.sum(axis=0)       db[f] = sum_{n,i,j} dout[n, f, i, j]
        dW2d  = dout2d.T @ cols          dW[f, c, u, v] = sum_{n,i,j} dout[n, f, i, j] * xp[n, c, i*S + u, j*S + v]
        dcols = dout2d @ W2d             (N*H_out*W_out, C*K*K)

    and col2im sends every entry of ``dcols`` back to the input position it was read from,
    ``dxp[n, c, i*S + u, j*S + v] += dcols[(n, i, j), (c, u, v)]`` (overlapping windows add
    up); ``dx`` is ``dxp`` without its padding.

    Cache: the input shape and ``cols``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dtype=np.float32, rng=None):
        super().__init__()
        self.in_channels = _positive_int("Conv2D", "in_channels", in_channels)
        self.out_channels = _positive_int("Conv2D", "out_channels", out_channels)
        self.kernel_size = _positive_int("Conv2D", "kernel_size", kernel_size)
        self.stride = _positive_int("Conv2D", "stride", stride)
        self.padding = _positive_int("Conv2D", "padding", padding, low=0)
        rng = np.random.default_rng(rng)
        shape = (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)
        fan_in = self.in_channels * self.kernel_size ** 2
        self.params["W"] = uniform_fan_in(shape, fan_in, rng, dtype)
        self.params["b"] = uniform_fan_in((self.out_channels,), fan_in, rng, dtype)
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}

    def get_config(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels,
                    kernel_size=self.kernel_size, stride=self.stride, padding=self.padding)

    def describe(self):
        extra = (f" s{self.stride}" if self.stride != 1 else "") + (f" p{self.padding}" if self.padding else "")
        return f"Conv2D {self.in_channels}->{self.out_channels} {self.kernel_size}x{self.kernel_size}{extra}"

    def output_shape(self, input_shape):
        n, _, h, w = input_shape
        k, s, p = self.kernel_size, self.stride, self.padding
        return (n, self.out_channels, conv_output_size(h, k, s, p), conv_output_size(w, k, s, p))

    def macs(self, input_shape):
        n, f, h_out, w_out = self.output_shape(input_shape)
        return n * f * h_out * w_out * self.in_channels * self.kernel_size ** 2

    def _check_forward_input(self, x):
        """``x`` in the weights' dtype, after checking its shape (shared with the fast engine)."""
        x = _as_float(x, self.params["W"].dtype)
        _check_input(self, x, 4, "(N, C, H, W)", self.in_channels)
        _check_size(self, x.shape, self.kernel_size, self.padding)
        return x

    def forward(self, x):
        W, b = self.params["W"], self.params["b"]
        x = self._check_forward_input(x)
        n, f, h_out, w_out = self.output_shape(x.shape)
        c, k, s, p = self.in_channels, self.kernel_size, self.stride, self.padding

        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))             # zero padding
        win = windows(xp, k, s)                                       # (N, C, H_out, W_out, K, K), a view
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * h_out * w_out, c * k * k)   # im2col: a copy
        out2d = cols @ W.reshape(f, c * k * k).T + b                  # (N*H_out*W_out, F): one product
        self.cache = (x.shape, cols)
        return out2d.reshape(n, h_out, w_out, f).transpose(0, 3, 1, 2)

    def backward(self, dout, input_grad: bool = True):
        """Set ``grads`` and return ``dx``; with ``input_grad=False`` only set ``grads``
        and return None (the first layer of a network: nobody needs the image's gradient)."""
        x_shape, cols = self._cached()
        W = self.params["W"]
        n, c, h, w = x_shape
        _, f, h_out, w_out = self.output_shape(x_shape)
        k, s, p = self.kernel_size, self.stride, self.padding
        dout = self._check_dout(dout, (n, f, h_out, w_out), W.dtype)

        dout2d = dout.transpose(0, 2, 3, 1).reshape(n * h_out * w_out, f)   # rows (n, i, j), like cols
        self.grads["b"] = dout2d.sum(axis=0)
        self.grads["W"] = (dout2d.T @ cols).reshape(W.shape)
        if not input_grad:
            return None
        dcols = dout2d @ W.reshape(f, c * k * k)                            # (N*H_out*W_out, C*K*K)
        dwin = dcols.reshape(n, h_out, w_out, c, k, k).transpose(0, 3, 1, 2, 4, 5)   # like the windows

        dxp = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=W.dtype)
        for u in range(k):                    # col2im: each window offset (u, v) goes back to the
            for v in range(k):                # positions it was read from; overlaps add up
                dxp[:, :, u:u + s * h_out:s, v:v + s * w_out:s] += dwin[:, :, :, :, u, v]
        return dxp[:, :, p:p + h, p:p + w]


class _Pool2D(Layer):
    """What both pooling layers share: the window size and stride, floor mode, no padding."""

    def __init__(self, kernel_size: int, stride: int | None = None):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _positive_int(name, "kernel_size", kernel_size)
        self.stride = _positive_int(name, "stride", kernel_size if stride is None else stride)

    def get_config(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride)

    def describe(self):
        return f"{layer_type(self)} {self.kernel_size}x{self.kernel_size} s{self.stride}"

    def output_shape(self, input_shape):
        n, c, h, w = input_shape
        k, s = self.kernel_size, self.stride
        return (n, c, conv_output_size(h, k, s), conv_output_size(w, k, s))

    def _check_forward_input(self, x):
        x = _as_float(x)
        _check_input(self, x, 4, "(N, C, H, W)")
        _check_size(self, x.shape, self.kernel_size)
        return x


class AvgPool2D(_Pool2D):
    r"""Average pooling over ``K x K`` windows with stride ``S`` (default ``S = K``).

    Math: ``out[n, c, i, j] = (1/K^2) * sum_{u,v} x[n, c, i*S + u, j*S + v]``.

    Shapes: x (N, C, H, W) -> out (N, C, H_out, W_out), H_out = floor((H - K) / S) + 1.
    Rows and columns left over by the floor get no output and zero gradient.

    Backward *spreads* each output gradient evenly over its window:
    ``dx[n, c, i*S + u, j*S + v] += dout[n, c, i, j] / K^2`` (overlapping windows add up).

    Cache: the input's shape and dtype.
    """

    def macs(self, input_shape):
        n, c, h_out, w_out = self.output_shape(input_shape)
        return n * c * h_out * w_out * self.kernel_size ** 2

    def forward(self, x):
        x = self._check_forward_input(x)
        self.cache = (x.shape, x.dtype)
        return windows(x, self.kernel_size, self.stride).mean(axis=(4, 5))

    def backward(self, dout):
        x_shape, dtype = self._cached()
        k, s = self.kernel_size, self.stride
        _, _, h_out, w_out = self.output_shape(x_shape)
        dout = self._check_dout(dout, self.output_shape(x_shape), dtype)
        share = dout / (k * k)                # every input of a window gets 1/K^2 of its gradient
        dx = np.zeros(x_shape, dtype=dtype)
        for u in range(k):
            for v in range(k):
                dx[:, :, u:u + s * h_out:s, v:v + s * w_out:s] += share
        return dx


class MaxPool2D(_Pool2D):
    r"""Max pooling over ``K x K`` windows with stride ``S`` (default ``S = K``).

    Math: ``out[n, c, i, j] = max_{u,v} x[n, c, i*S + u, j*S + v]``.

    Shapes: x (N, C, H, W) -> out (N, C, H_out, W_out), H_out = floor((H - K) / S) + 1.

    Backward *routes* each output gradient to the one input that won the max:
    ``dx[n, c, i*S + u*, j*S + v*] += dout[n, c, i, j]``, where ``(u*, v*)`` is the
    position of the window's maximum. On tied maxima the first one in row-major order wins,
    as in PyTorch: the function is not differentiable there, and any choice is a valid
    subgradient.

    Cache: the input's shape and dtype and, for every window, the offset ``u* K + v*`` of its
    maximum.
    """

    def forward(self, x):
        x = self._check_forward_input(x)
        k = self.kernel_size
        win = windows(x, k, self.stride)                            # (N, C, H_out, W_out, K, K)
        flat = win.reshape(win.shape[:4] + (k * k,))                # each window as one row
        argmax = flat.argmax(axis=-1)                               # the first maximum of each window
        self.cache = (x.shape, x.dtype, argmax)
        return np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]

    def backward(self, dout):
        x_shape, dtype, argmax = self._cached()
        k, s = self.kernel_size, self.stride
        _, _, h_out, w_out = self.output_shape(x_shape)
        dout = self._check_dout(dout, argmax.shape, dtype)
        dx = np.zeros(x_shape, dtype=dtype)
        for u in range(k):
            for v in range(k):
                won = argmax == u * k + v                           # windows whose maximum sits at (u, v)
                dx[:, :, u:u + s * h_out:s, v:v + s * w_out:s] += dout * won
        return dx


class Linear(Layer):
    r"""Fully connected layer: ``out = x W^T + b``.

    Shapes:
        x:   (N, D_in)
        W:   (D_out, D_in)  -- PyTorch's ``Linear.weight``
        b:   (D_out,)
        out: (N, D_out)

    Backward, with ``dout`` of shape (N, D_out)::

        dW = dout^T x     (D_out, D_in)
        db = sum_n dout   (D_out,)
        dx = dout W       (N, D_in)

    Cache: the input ``x``.
    """

    def __init__(self, in_features: int, out_features: int, dtype=np.float32, rng=None):
        super().__init__()
        self.in_features = _positive_int("Linear", "in_features", in_features)
        self.out_features = _positive_int("Linear", "out_features", out_features)
        rng = np.random.default_rng(rng)
        self.params["W"] = uniform_fan_in((self.out_features, self.in_features), self.in_features, rng, dtype)
        self.params["b"] = uniform_fan_in((self.out_features,), self.in_features, rng, dtype)
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}

    def get_config(self):
        return dict(in_features=self.in_features, out_features=self.out_features)

    def describe(self):
        return f"Linear {self.in_features}->{self.out_features}"

    def output_shape(self, input_shape):
        return (input_shape[0], self.out_features)

    def macs(self, input_shape):
        return input_shape[0] * self.in_features * self.out_features

    def forward(self, x):
        W, b = self.params["W"], self.params["b"]
        x = _as_float(x, W.dtype)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"Linear expects input of shape (N, {self.in_features}), got {x.shape}. "
                "Put a Flatten() before it if the input is an image batch.")
        self.cache = x
        return x @ W.T + b

    def backward(self, dout, input_grad: bool = True):
        """Set ``grads`` and return ``dx`` (None with ``input_grad=False``, as in :class:`Conv2D`)."""
        x = self._cached()
        W = self.params["W"]
        dout = self._check_dout(dout, (x.shape[0], self.out_features), W.dtype)
        self.grads["W"] = dout.T @ x
        self.grads["b"] = dout.sum(axis=0)
        return dout @ W if input_grad else None


class Flatten(Layer):
    """Flatten everything but the batch axis: (N, d1, d2, ...) -> (N, d1*d2*...).

    Backward reshapes ``dout`` back to the input shape. Cache: the input shape.
    """

    def output_shape(self, input_shape):
        return (input_shape[0], int(np.prod(input_shape[1:])))

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"Flatten expects a batch (N, ...) with at least 2 dimensions, got shape {x.shape}")
        self.cache = x.shape
        return x.reshape(self.output_shape(x.shape))   # (not -1: N may be 0)

    def backward(self, dout):
        shape = self._cached()
        return self._check_dout(dout, self.output_shape(shape)).reshape(shape)


class Tanh(Layer):
    r"""Hyperbolic tangent, elementwise: ``out = tanh(x)``; ``dx = dout * (1 - out^2)``.

    Any shape in, same shape out. Cache: the output ``out`` (the derivative is a
    function of it).
    """

    def forward(self, x):
        out = np.tanh(_as_float(x))
        self.cache = out
        return out

    def backward(self, dout):
        out = self._cached()
        return self._check_dout(dout, out.shape) * (1 - out ** 2)


class ReLU(Layer):
    r"""Rectified linear unit, elementwise: ``out = max(x, 0)``; ``dx = dout * [x > 0]``.

    The derivative at exactly 0 is taken as 0, as in PyTorch. Any shape in, same shape
    out. Cache: the output ``out``, which is positive exactly where ``x`` is, so the
    backward pass reads its mask from it.
    """

    def forward(self, x):
        x = _as_float(x)
        out = np.maximum(x, x.dtype.type(0))
        self.cache = out
        return out

    def backward(self, dout):
        out = self._cached()
        return self._check_dout(dout, out.shape) * (out > 0)


class Sigmoid(Layer):
    r"""Logistic sigmoid, elementwise: ``out = 1 / (1 + exp(-x))``; ``dx = dout * out * (1 - out)``.

    Computed as ``(1 + tanh(x / 2)) / 2``, the same function, which never overflows. Any
    shape in, same shape out. Cache: the output ``out``.
    """

    def forward(self, x):
        x = _as_float(x)
        half = x.dtype.type(0.5)
        out = half * (1 + np.tanh(half * x))
        self.cache = out
        return out

    def backward(self, dout):
        out = self._cached()
        return self._check_dout(dout, out.shape) * out * (1 - out)


class Dropout(Layer):
    r"""Inverted dropout: in training, zero each element with probability ``p`` and scale
    the survivors by ``1 / (1 - p)``, so that evaluation needs no rescaling.

    ``out = x * m / (1 - p)`` with ``m ~ Bernoulli(1 - p)``; ``dx = dout * m / (1 - p)``.
    In eval mode (``layer.eval()``) it is the identity. ``seed`` makes the masks reproducible.

    Any shape in, same shape out. Cache: the scaled mask (``None`` in eval mode).
    """

    def __init__(self, p: float = 0.5, seed=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def get_config(self):
        return dict(p=self.p)

    def describe(self):
        return f"Dropout p={self.p:g}"

    def forward(self, x):
        x = _as_float(x)
        if not self.training or self.p == 0:
            self.cache = ("identity", x.shape)
            return x
        keep = self.rng.random(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64) >= self.p
        mask = keep.astype(x.dtype) / x.dtype.type(1 - self.p)
        self.cache = ("mask", mask)
        return x * mask

    def backward(self, dout):
        kind, value = self._cached()
        if kind == "identity":
            return self._check_dout(dout, value).copy()
        return self._check_dout(dout, value.shape) * value


#: The layer types a saved architecture may name (checkpoints, ``Sequential.from_config``).
LAYER_TYPES = {cls.__name__: cls for cls in
               (Conv2D, AvgPool2D, MaxPool2D, Linear, Flatten, Tanh, ReLU, Sigmoid, Dropout)}


def layer_type(layer) -> str:
    """The name a saved architecture uses for ``layer``: its class, or for a subclass (the fast
    engine's layers, a reader's experiments) the first ancestor in :data:`LAYER_TYPES`."""
    for cls in type(layer).__mro__:
        if LAYER_TYPES.get(cls.__name__) is cls:
            return cls.__name__
    return type(layer).__name__


def build_layer(config: dict, dtype=np.float32) -> Layer:
    """Rebuild a layer from ``{"type": name, **get_config()}`` (used by checkpoints)."""
    config = dict(config)
    name = config.pop("type", None)
    if name not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {name!r}; known types: {', '.join(sorted(LAYER_TYPES))}")
    cls = LAYER_TYPES[name]
    if cls in (Conv2D, Linear):
        config["dtype"] = dtype
    return cls(**config)
