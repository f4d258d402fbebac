"""Layers of a convolutional network, each with an explicit forward and backward pass.

Every layer is a class with the same small interface:

* ``forward(x)`` computes the output and caches what the backward pass needs;
* ``backward(dout)`` takes ``dL/d(output)`` and returns ``dL/d(input)``. It
  *overwrites* ``self.grads`` (never accumulates), never updates weights and never
  modifies ``dout`` in place;
* ``params`` and ``grads`` are dicts keyed alike (``"W"``, ``"b"``) whose arrays
  have exactly PyTorch's shapes; optimizers update ``params`` from ``grads``;
* ``train()`` / ``eval()`` switch the mode (only :class:`Dropout` cares).

Arrays are NCHW, as in PyTorch: batch, channels, height, width. Layers with
parameters compute in their parameters' dtype (float32 by default, float64 for
gradient checks); the others compute in their input's floating dtype.

The convolution and pooling layers here are the fast, vectorized path: no
Python loop runs over pixels, channels or images. The plainly written loop
versions that the tests compare them against live in :mod:`lenet_core.reference`.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = [
    "Layer", "Conv2D", "AvgPool2D", "MaxPool2D", "Linear", "Flatten",
    "Tanh", "ReLU", "Sigmoid", "Dropout", "build_layer", "conv_output_size",
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


def _windows(x: np.ndarray, kernel_size: int, stride: int) -> np.ndarray:
    """A read-only strided view of every ``k x k`` window of ``x`` (N, C, H, W).

    Returns shape (N, C, H_out, W_out, k, k) without copying: element
    ``[n, c, i, j, u, v]`` is ``x[n, c, i*stride + u, j*stride + v]``.
    """
    n, c, h, w = x.shape
    k, s = kernel_size, stride
    h_out, w_out = (h - k) // s + 1, (w - k) // s + 1
    sn, sc, sh, sw = x.strides
    return as_strided(x, shape=(n, c, h_out, w_out, k, k),
                      strides=(sn, sc, sh * s, sw * s, sh, sw), writeable=False)


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
        return type(self).__name__

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # -- helpers for subclasses -------------------------------------------
    def _cached(self):
        if self.cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward was called before forward: "
                "run forward(x) on a batch first, then backward(dout) with the gradient of its output.")
        return self.cache

    def _check_dout(self, dout, expected_shape) -> np.ndarray:
        dout = np.asarray(dout)
        if dout.shape != tuple(expected_shape):
            raise ValueError(
                f"{type(self).__name__}.backward: dout has shape {dout.shape} but the last forward "
                f"output had shape {tuple(expected_shape)}; pass the gradient of that output.")
        return dout


def _check_input(layer: Layer, x: np.ndarray, ndim: int, what: str, channels=None) -> None:
    if x.ndim != ndim:
        raise ValueError(
            f"{type(layer).__name__} expects a {ndim}-D input {what}, got shape {x.shape}. "
            + ("Add a channel axis with x[:, None] for grayscale images." if ndim == 4 and x.ndim == 3 else ""))
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{type(layer).__name__} expects {channels} input channel(s) on axis 1, got shape {x.shape} "
            f"({x.shape[1]} channels). Check the previous layer's out_channels or the input layout (NCHW).")


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

    Backward, with ``dout = dL/dout`` of shape (N, F, H_out, W_out)::

        db[f]          = sum_{n,i,j} dout[n, f, i, j]
        dW[f, c, u, v] = sum_{n,i,j} dout[n, f, i, j] * xp[n, c, i*S + u, j*S + v]
        dxp            = "full" correlation of the stride-dilated dout with W rotated by 180 degrees

    Cache: the padded input ``xp`` (its windows are re-read as a strided view, not stored).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dtype=np.float32, rng=None):
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                                 ("kernel_size", kernel_size, 1), ("stride", stride, 1), ("padding", padding, 0)):
            if int(value) != value or value < low:
                raise ValueError(f"Conv2D: {name} must be an integer >= {low}, got {value!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        from .init import uniform_fan_in
        rng = np.random.default_rng(rng)
        shape = (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)
        fan_in = self.in_channels * self.kernel_size ** 2
        self.params["W"] = uniform_fan_in(shape, fan_in, rng, dtype)
        self.params["b"] = uniform_fan_in((self.out_channels,), fan_in, rng, dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

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
        n, f, ho, wo = self.output_shape(input_shape)
        return n * f * ho * wo * self.in_channels * self.kernel_size ** 2

    def _pad(self, x):
        p = self.padding
        if p == 0:
            return x
        return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))

    def forward(self, x):
        W, b = self.params["W"], self.params["b"]
        x = _as_float(x, W.dtype)
        _check_input(self, x, 4, "(N, C, H, W)", self.in_channels)
        k = self.kernel_size
        if x.shape[2] + 2 * self.padding < k or x.shape[3] + 2 * self.padding < k:
            raise ValueError(f"Conv2D: input {x.shape} (padding {self.padding}) is smaller than the "
                             f"{k}x{k} kernel.")
        xp = self._pad(x)
        cols = _windows(xp, k, self.stride)                       # (N, C, Ho, Wo, K, K) view
        out = np.tensordot(cols, W, axes=([1, 4, 5], [1, 2, 3]))  # (N, Ho, Wo, F)
        out += b
        self.cache = (xp, x.shape)
        return out.transpose(0, 3, 1, 2)

    def backward(self, dout):
        xp, x_shape = self._cached()
        W = self.params["W"]
        n, f = x_shape[0], self.out_channels
        k, s, p = self.kernel_size, self.stride, self.padding
        ho, wo = conv_output_size(x_shape[2], k, s, p), conv_output_size(x_shape[3], k, s, p)
        dout = _as_float(self._check_dout(dout, (n, f, ho, wo)), W.dtype)

        self.grads["b"] = dout.sum(axis=(0, 2, 3))
        cols = _windows(xp, k, s)
        self.grads["W"] = np.tensordot(dout, cols, axes=([0, 2, 3], [0, 2, 3]))  # (F, C, K, K)

        # dx: spread each output gradient back over the window it came from. Insert S-1 zeros
        # between the gradients (undoing the stride), pad by K-1 and correlate with the kernel
        # rotated by 180 degrees, channels swapped: the "full" convolution of dout with W.
        hp, wp = xp.shape[2], xp.shape[3]
        dil = np.zeros((n, f, hp + k - 1, wp + k - 1), dtype=dout.dtype)
        dil[:, :, k - 1:k - 1 + (ho - 1) * s + 1:s, k - 1:k - 1 + (wo - 1) * s + 1:s] = dout
        w_rot = W[:, :, ::-1, ::-1]
        dxp = np.tensordot(_windows(dil, k, 1), w_rot, axes=([1, 4, 5], [0, 2, 3]))  # (N, Hp, Wp, C)
        dxp = dxp.transpose(0, 3, 1, 2)
        if p:
            dxp = dxp[:, :, p:p + x_shape[2], p:p + x_shape[3]]
        return np.ascontiguousarray(dxp)


class _Pool2D(Layer):
    """Shared shape logic of the pooling layers: floor mode, no padding."""

    def __init__(self, kernel_size: int, stride: int | None = None):
        super().__init__()
        stride = kernel_size if stride is None else stride
        for name, value in (("kernel_size", kernel_size), ("stride", stride)):
            if int(value) != value or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be an integer >= 1, got {value!r}")
        self.kernel_size, self.stride = int(kernel_size), int(stride)

    def get_config(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride)

    def describe(self):
        return f"{type(self).__name__} {self.kernel_size}x{self.kernel_size} s{self.stride}"

    def output_shape(self, input_shape):
        n, c, h, w = input_shape
        k, s = self.kernel_size, self.stride
        return (n, c, conv_output_size(h, k, s), conv_output_size(w, k, s))

    def _prepare(self, x):
        x = _as_float(x)
        _check_input(self, x, 4, "(N, C, H, W)")
        if x.shape[2] < self.kernel_size or x.shape[3] < self.kernel_size:
            raise ValueError(f"{type(self).__name__}: input {x.shape} is smaller than the "
                             f"{self.kernel_size}x{self.kernel_size} window.")
        return x

    def _window_slices(self, ho, wo):
        """For each window offset (u, v): the strided slices of the input it touches."""
        k, s = self.kernel_size, self.stride
        for u in range(k):
            for v in range(k):
                yield u, v, (slice(None), slice(None), slice(u, u + (ho - 1) * s + 1, s),
                             slice(v, v + (wo - 1) * s + 1, s))


class AvgPool2D(_Pool2D):
    r"""Average pooling over ``K x K`` windows with stride ``S`` (default ``S = K``).

    Math: ``out[n, c, i, j] = (1/K^2) * sum_{u,v} x[n, c, i*S + u, j*S + v]``.

    Shapes: x (N, C, H, W) -> out (N, C, H_out, W_out), H_out = floor((H - K) / S) + 1.
    Rows and columns left over by the floor get no output and zero gradient.

    Backward *spreads* each output gradient evenly over its window:
    ``dx[n, c, i*S + u, j*S + v] += dout[n, c, i, j] / K^2`` (overlapping windows add up).

    Cache: only the input shape and dtype.
    """

    def macs(self, input_shape):
        n, c, ho, wo = self.output_shape(input_shape)
        return n * c * ho * wo * self.kernel_size ** 2

    def forward(self, x):
        x = self._prepare(x)
        out = _windows(x, self.kernel_size, self.stride).mean(axis=(4, 5), dtype=x.dtype)
        self.cache = (x.shape, x.dtype)
        return out

    def backward(self, dout):
        x_shape, dtype = self._cached()
        out_shape = self.output_shape(x_shape)
        dout = _as_float(self._check_dout(dout, out_shape), dtype)
        k, s = self.kernel_size, self.stride
        share = dout / dtype.type(k * k)
        ho, wo = out_shape[2], out_shape[3]
        dx = np.zeros(x_shape, dtype=dtype)
        if s == k:  # non-overlapping windows: one broadcast write, no loop
            n, c = x_shape[0], x_shape[1]
            spread = np.broadcast_to(share[:, :, :, None, :, None], (n, c, ho, k, wo, k))
            dx[:, :, :ho * k, :wo * k] = spread.reshape(n, c, ho * k, wo * k)
            return dx
        for _, _, sl in self._window_slices(ho, wo):
            dx[sl] += share
        return dx


class MaxPool2D(_Pool2D):
    r"""Max pooling over ``K x K`` windows with stride ``S`` (default ``S = K``).

    Math: ``out[n, c, i, j] = max_{u,v} x[n, c, i*S + u, j*S + v]``.

    Shapes: x (N, C, H, W) -> out (N, C, H_out, W_out), H_out = floor((H - K) / S) + 1.

    Backward *routes* each output gradient to the single input that won the max:
    ``dx[n, c, i*S + u*, j*S + v*] += dout[n, c, i, j]``. On tied maxima the gradient
    goes to the first maximum of the window in row-major order, as PyTorch does; the
    true function is not differentiable there, so this is a (standard) choice.

    Cache: the flat index ``u*K + v`` of the winner of every window, shape (N, C, H_out, W_out),
    plus the input shape and dtype.
    """

    def macs(self, input_shape):
        return 0

    def forward(self, x):
        x = self._prepare(x)
        k = self.kernel_size
        win = _windows(x, k, self.stride)
        n, c, ho, wo = win.shape[:4]
        flat = win.reshape(n, c, ho, wo, k * k)   # copies the windows once
        arg = flat.argmax(axis=4)                 # first maximum in row-major order
        out = np.take_along_axis(flat, arg[..., None], axis=4)[..., 0]
        self.cache = (arg.astype(np.int16 if k * k < 32000 else np.int64), x.shape, x.dtype)
        return out

    def backward(self, dout):
        arg, x_shape, dtype = self._cached()
        out_shape = self.output_shape(x_shape)
        dout = _as_float(self._check_dout(dout, out_shape), dtype)
        k, s = self.kernel_size, self.stride
        ho, wo = out_shape[2], out_shape[3]
        dx = np.zeros(x_shape, dtype=dtype)
        if s == k:  # non-overlapping: scatter through a (N, C, Ho, Wo, K*K) view of dx
            n, c = x_shape[0], x_shape[1]
            block = np.zeros((n, c, ho, wo, k * k), dtype=dtype)
            np.put_along_axis(block, arg[..., None].astype(np.intp), dout[..., None], axis=4)
            block = block.reshape(n, c, ho, wo, k, k).transpose(0, 1, 2, 4, 3, 5)
            dx[:, :, :ho * k, :wo * k] = block.reshape(n, c, ho * k, wo * k)
            return dx
        for u, v, sl in self._window_slices(ho, wo):
            dx[sl] += np.where(arg == u * k + v, dout, dtype.type(0))
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
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if int(value) != value or value < 1:
                raise ValueError(f"Linear: {name} must be an integer >= 1, got {value!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        from .init import uniform_fan_in
        rng = np.random.default_rng(rng)
        self.params["W"] = uniform_fan_in((self.out_features, self.in_features), self.in_features, rng, dtype)
        self.params["b"] = uniform_fan_in((self.out_features,), self.in_features, rng, dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

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
        out = x @ W.T
        out += b
        return out

    def backward(self, dout):
        x = self._cached()
        W = self.params["W"]
        dout = _as_float(self._check_dout(dout, (x.shape[0], self.out_features)), W.dtype)
        self.grads["W"] = dout.T @ x
        self.grads["b"] = dout.sum(axis=0)
        return dout @ W


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
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        shape = self._cached()
        dout = self._check_dout(dout, self.output_shape(shape))
        return dout.reshape(shape)


class Tanh(Layer):
    r"""Hyperbolic tangent, elementwise: ``out = tanh(x)``; ``dx = dout * (1 - out^2)``.

    Any shape in, same shape out. Cache: the output ``out``.
    """

    def forward(self, x):
        out = np.tanh(_as_float(x))
        self.cache = out
        return out

    def backward(self, dout):
        out = self._cached()
        dout = self._check_dout(dout, out.shape)
        return dout * (1 - out * out)


class ReLU(Layer):
    r"""Rectified linear unit, elementwise: ``out = max(x, 0)``; ``dx = dout * [x > 0]``.

    The derivative at exactly 0 is taken as 0, as in PyTorch.
    Any shape in, same shape out. Cache: the boolean mask ``x > 0``.
    """

    def forward(self, x):
        x = _as_float(x)
        mask = x > 0
        self.cache = mask
        return np.where(mask, x, x.dtype.type(0))

    def backward(self, dout):
        mask = self._cached()
        dout = self._check_dout(dout, mask.shape)
        return np.where(mask, dout, dout.dtype.type(0))


class Sigmoid(Layer):
    r"""Logistic sigmoid, elementwise: ``out = 1 / (1 + exp(-x))``; ``dx = dout * out * (1 - out)``.

    Computed as ``(1 + tanh(x / 2)) / 2``, which never overflows. Any shape in, same
    shape out. Cache: the output ``out``.
    """

    def forward(self, x):
        x = _as_float(x)
        half = x.dtype.type(0.5)
        out = half * (1 + np.tanh(half * x))
        self.cache = out
        return out

    def backward(self, dout):
        out = self._cached()
        dout = self._check_dout(dout, out.shape)
        return dout * out * (1 - out)


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
        dout = self._check_dout(dout, value.shape)
        return dout * value


_LAYER_TYPES = {cls.__name__: cls for cls in
                (Conv2D, AvgPool2D, MaxPool2D, Linear, Flatten, Tanh, ReLU, Sigmoid, Dropout)}


def build_layer(config: dict, dtype=np.float32) -> Layer:
    """Rebuild a layer from ``{"type": name, **get_config()}`` (used by checkpoints)."""
    config = dict(config)
    name = config.pop("type", None)
    if name not in _LAYER_TYPES:
        raise ValueError(f"unknown layer type {name!r}; known types: {', '.join(sorted(_LAYER_TYPES))}")
    cls = _LAYER_TYPES[name]
    if cls in (Conv2D, Linear):
        config["dtype"] = dtype
    return cls(**config)
