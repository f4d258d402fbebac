"""Layers of a convolutional network, each with an explicit forward and backward pass.

Every layer is a class with the same small interface:

* ``forward(x)`` computes the output and caches what the backward pass needs;
* ``backward(dout)`` takes ``dL/d(output)`` and returns ``dL/d(input)``. It
  *overwrites* ``self.grads`` (never accumulates), never updates weights and never
  modifies ``dout`` in place. The layers with parameters also accept
  ``backward(dout, input_grad=False)``, which only sets ``grads`` and returns None:
  the first layer of a network need not compute the gradient of the images;
* ``params`` and ``grads`` are dicts keyed alike (``"W"``, ``"b"``) whose arrays
  have exactly PyTorch's shapes; optimizers update ``params`` from ``grads``;
* ``train()`` / ``eval()`` switch the mode (only :class:`Dropout` cares).

Arrays are NCHW, as in PyTorch: batch, channels, height, width. Layers with
parameters compute in their parameters' dtype (float32 by default, float64 for
gradient checks); the others compute in their input's floating dtype.

The convolution and pooling layers here are the fast, vectorized path: no
Python loop runs over pixels, channels or images. The plainly written loop
versions that the tests compare them against live in :mod:`lenet_core.reference`.

Memory layout. The *shapes* are NCHW everywhere, but inside the convolution the
batch axis is kept innermost: a convolution turns its input into a contiguous
(C, H, W, N) array, does its work there, and returns its output as a
*transposed view* ``out_chwn.transpose(3, 0, 1, 2)``, which has the NCHW shape
(N, F, H, W) but the (F, H, W, N) memory order. Why: every window of a
(C, H, W, N) array is made of long contiguous runs (a whole row of ``W * N``
numbers), so gathering the windows (im2col) is a handful of fast block copies,
and one matrix product then covers the whole batch. The elementwise and pooling
layers keep whatever memory order they are given (NumPy's ufuncs do), so the
next convolution finds its input already in this order and needs no copy.
Nothing changes for a caller: values, shapes and indexing are those of an NCHW
array; call ``np.ascontiguousarray`` if you need NCHW memory order.
"""
from __future__ import annotations

import copy

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import fastmath
from .init import uniform_fan_in

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


_INFERENCE_CHUNK_BYTES = 2 << 20  # eval mode: im2col a few output rows at a time, about this much
_TRANSPOSE_BLOCK = 16  # images per block: 16 float32 numbers fill one 64-byte cache line


def _copy_batch_last(x: np.ndarray, out: np.ndarray) -> None:
    """Write ``x`` (N, C, H, W) into ``out``, a (C, H, W, N) array or view.

    If ``x`` already is batch-last in memory this is one plain copy. Otherwise a plain
    ``out[...] = x.transpose(1, 2, 3, 0)`` would read ``x`` with a stride of a whole
    image and write ``out`` one number at a time, touching a new cache line for almost
    every number; instead each block of 16 images is read from one small contiguous piece
    of ``x`` and written in runs of 16 consecutive numbers (3.5x faster at batch 128).
    """
    if x.transpose(1, 2, 3, 0).flags.c_contiguous:
        np.copyto(out, x.transpose(1, 2, 3, 0))
        return
    for start in range(0, x.shape[0], _TRANSPOSE_BLOCK):
        stop = start + _TRANSPOSE_BLOCK
        np.copyto(out[..., start:stop], x[start:stop].transpose(1, 2, 3, 0))


def _batch_last(x: np.ndarray) -> np.ndarray:
    """``x`` (N, C, H, W) as a C-contiguous (C, H, W, N) array: the batch axis innermost.

    No copy if ``x`` is already a transposed view of such an array (the output of a
    :class:`Conv2D`, or of an elementwise or pooling layer applied to one).
    """
    xt = x.transpose(1, 2, 3, 0)
    if xt.flags.c_contiguous:
        return xt
    out = np.empty(xt.shape, dtype=x.dtype)
    _copy_batch_last(x, out)
    return out


def _windows_tile(h: int, w: int, k: int, stride: int) -> bool:
    """True if the ``k x k`` windows at ``stride`` cover an ``h x w`` input exactly once each:
    stride = kernel with no leftover rows or columns, or a single window covering it all."""
    return all(size % k == 0 and (stride == k or size == k) for size in (h, w))


def _window_view(x: np.ndarray, k: int, stride: int, ho: int, wo: int, lead: int) -> np.ndarray:
    """A read-only strided view of every ``k x k`` window of the axes ``lead`` and ``lead + 1``.

    ``x`` has the spatial axes (H, W) at positions ``lead``, ``lead + 1``. The view
    inserts the window offsets (u, v) just before them and replaces them with the
    window positions (i, j): for ``x`` of shape (C, H, W, N) and ``lead=1`` it has shape
    (C, K, K, H_out, W_out, N) and element ``[c, u, v, i, j, n]`` is
    ``x[c, i*stride + u, j*stride + v, n]``. Nothing is copied.
    """
    sh, sw = x.strides[lead], x.strides[lead + 1]
    shape = x.shape[:lead] + (k, k, ho, wo) + x.shape[lead + 2:]
    strides = x.strides[:lead] + (sh, sw, sh * stride, sw * stride) + x.strides[lead + 2:]
    return as_strided(x, shape=shape, strides=strides, writeable=False)


def _offset_slices(k: int, stride: int, ho: int, wo: int):
    """For each window offset (u, v), in row-major order: the strided slices of an
    (N, C, H, W) array holding ``x[n, c, i*stride + u, j*stride + v]`` for all windows (i, j)."""
    for u in range(k):
        for v in range(k):
            yield u, v, (slice(None), slice(None), slice(u, u + (ho - 1) * stride + 1, stride),
                         slice(v, v + (wo - 1) * stride + 1, stride))


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

    def replica(self) -> "Layer":
        """A twin that shares this layer's ``params`` (the same dict, the same arrays) but has
        its own ``grads``, cache and work buffers: :mod:`lenet_core.parallel` computes the calling
        process's share of a batch with such twins, leaving the model's own caches alone."""
        twin = copy.copy(self)
        twin.grads = dict(self.grads)
        twin.cache = None
        return twin

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

    How it is computed (im2col): gather every window into the columns of one matrix
    ``cols`` of shape (C*K*K, H_out*W_out*N) -- row ``(c, u, v)``, column ``(i, j, n)``
    holds ``xp[n, c, i*S + u, j*S + v]`` -- and the whole batch is one matrix product::

        out2d = W2d @ cols + b        W2d = W.reshape(F, C*K*K),  out2d: (F, H_out*W_out*N)

    The batch axis is innermost (see the module docstring): ``cols`` is filled from a
    (C, H, W, N) copy of ``xp`` in one strided copy whose contiguous runs are whole
    rows of ``W_out * N`` numbers, and ``out2d`` is returned as an NCHW-shaped view.

    Backward, with ``dout = dL/dout`` of shape (N, F, H_out, W_out), as ``dout2d``
    (F, H_out*W_out*N) in the same order::

        db    = dout2d.sum(axis=1)          i.e. db[f] = sum_{n,i,j} dout[n, f, i, j]
        dW2d  = dout2d @ cols.T             i.e. dW[f, c, u, v] = sum_{n,i,j} dout[n, f, i, j] * xp[n, c, i*S + u, j*S + v]
        dcols = W2d.T @ dout2d              (C*K*K, H_out*W_out*N)
        dxp[n, c, i*S + u, j*S + v] += dcols[(c, u, v), (i, j, n)]   (col2im: K*K strided adds)

    and ``dx`` is ``dxp`` without its padding. The col2im step sends every column back to
    the window it came from; overlapping windows add up. When the windows tile the input
    exactly (stride = kernel size with nothing left over, or C5's single window) nothing
    overlaps and col2im is a mere rearrangement of ``dcols``.

    In eval mode (inference), when ``cols`` would exceed about 2 MB (C1 at 500 images: 39 MB),
    it is built and multiplied a few output rows at a time in one small buffer that stays in
    the CPU's cache, instead of being written to memory in full and read back (C1 at batch
    500: 37 -> 24 us per image). A backward pass after such a forward rebuilds ``cols`` for ``dW``.
    :meth:`forward_then` applies the next activation to each chunk while it is in the cache, and
    :meth:`infer_then`, for inference only, the pooling after it as well.

    Cache: ``cols`` (reused as a buffer by the next forward of the same shape) and the input
    shape; after a chunked forward, the padded batch-last input instead of ``cols``.
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
        rng = np.random.default_rng(rng)
        shape = (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)
        fan_in = self.in_channels * self.kernel_size ** 2
        self.params["W"] = uniform_fan_in(shape, fan_in, rng, dtype)
        self.params["b"] = uniform_fan_in((self.out_channels,), fan_in, rng, dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cols = None  # the im2col buffer, kept between steps to avoid reallocating it

    def replica(self):
        twin = super().replica()
        twin._cols = None            # its own im2col buffer
        return twin

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

    def _padded_batch_last(self, x):
        """``x`` (N, C, H, W) -> zero-padded, contiguous (C, H + 2P, W + 2P, N)."""
        p = self.padding
        if p == 0:
            return _batch_last(x)
        n, c, h, w = x.shape
        xp = np.zeros((c, h + 2 * p, w + 2 * p, n), dtype=x.dtype)
        _copy_batch_last(x, xp[:, p:p + h, p:p + w, :])
        return xp

    def forward(self, x):
        return self._forward(x, None)

    def forward_then(self, x, activation):
        """``activation.forward(self.forward(x))`` in one step: in eval mode, on a large batch,
        the activation (a :class:`Tanh` or :class:`ReLU`) is applied to each chunk of output
        rows right after its product, while the chunk is still in the CPU's cache, instead of
        in a second pass over the whole output. Both layers' caches are set as if they had run
        one after the other, so ``backward`` works as usual. ``Sequential.forward`` uses this.
        A subclass that overrides ``forward`` gets exactly that composition, unfused."""
        if type(self).forward is not Conv2D.forward:
            return activation.forward(self.forward(x))
        return self._forward(x, activation)

    def infer_then(self, x, activation, pool):
        """``pool.forward(activation.forward(self.forward(x)))`` when no backward pass follows
        (:meth:`Sequential.infer`): in eval mode, on a large batch, each chunk of output rows
        is activated *and pooled* while still in the CPU's cache, and only the pooled maps
        -- a quarter of the size for 2x2 pooling -- are written to memory. The three layers'
        caches are left empty: a backward pass after this raises an error.

        Fused only for what it can do exactly: a :class:`Tanh` or :class:`ReLU`, then a pool
        whose stride equals its window (windows do not overlap, so no window spans two
        chunks); otherwise, and in training mode, it is the plain composition."""
        fusable = (not self.training and type(self).forward is Conv2D.forward
                   and hasattr(activation, "_apply_in_place")
                   and type(pool) in (AvgPool2D, MaxPool2D) and pool.stride == pool.kernel_size)
        x = _as_float(x, self.params["W"].dtype)
        _check_input(self, x, 4, "(N, C, H, W)", self.in_channels)
        n, f, ho, wo = self.output_shape(x.shape)
        s = pool.stride if fusable else 1
        rows = max(s, self._rows_per_product(wo, n, x.dtype.itemsize) // s * s)   # whole pooling windows
        if not fusable or rows >= ho or min(ho, wo) < pool.kernel_size or n == 0:
            # (too small an input or batch: the plain layers say what is wrong, if anything)
            out = pool.forward(self.forward_then(x, activation))
        else:
            out = self._infer_in_row_chunks(self._padded_batch_last(x), ho, wo, rows, activation, pool)
        self.cache = activation.cache = pool.cache = None
        return out

    def _infer_in_row_chunks(self, xp, ho, wo, rows, activation, pool):
        """The pooled maps, (N, F, Ho // S, Wo // S) as a view of (F, Ho // S, Wo // S, N) memory,
        ``rows`` output rows at a time (a multiple of the pool's stride S): each chunk of rows is
        computed by products over ``im2col`` pieces of at most ``_INFERENCE_CHUNK_BYTES`` (as in
        eval-mode ``forward``), then activated and pooled while in the cache. Rows the pool would
        drop (floor mode) are never computed."""
        W, b = self.params["W"], self.params["b"]
        f, ckk, n, ps = self.out_channels, self.in_channels * self.kernel_size ** 2, xp.shape[3], pool.stride
        per_product = self._rows_per_product(wo, n, W.dtype.itemsize)
        out = np.empty((f, ho // ps, wo // ps, n), dtype=W.dtype)
        buffer = self._buffer(ckk * min(rows, per_product) * wo * n, W.dtype)
        chunk_buffer = np.empty(f * rows * wo * n, dtype=W.dtype)
        used = (ho // ps) * ps
        for i0 in range(0, used, rows):
            i1 = min(used, i0 + rows)
            chunk = chunk_buffer[:f * (i1 - i0) * wo * n].reshape(f, i1 - i0, wo, n)
            for j0 in range(i0, i1, per_product):
                j1 = min(i1, j0 + per_product)
                self._product_of_rows(xp, j0, j1, wo, buffer, chunk[:, j0 - i0:j1 - i0])
            chunk += b[:, None, None, None]
            activation._apply_in_place(chunk, f * ho * wo)
            pool._pool(chunk.transpose(3, 0, 1, 2), out[:, i0 // ps:i1 // ps].transpose(3, 0, 1, 2))
        return out.transpose(3, 0, 1, 2)

    def _forward(self, x, activation):
        W, b = self.params["W"], self.params["b"]
        x = _as_float(x, W.dtype)
        _check_input(self, x, 4, "(N, C, H, W)", self.in_channels)
        k = self.kernel_size
        if x.shape[2] + 2 * self.padding < k or x.shape[3] + 2 * self.padding < k:
            raise ValueError(f"Conv2D: input {x.shape} (padding {self.padding}) is smaller than the "
                             f"{k}x{k} kernel.")
        n, f, ho, wo = self.output_shape(x.shape)
        c = self.in_channels
        xp = self._padded_batch_last(x)                           # (C, Hp, Wp, N), contiguous
        rows = ho if self.training else self._rows_per_product(wo, n, W.dtype.itemsize)
        if rows >= ho:
            cols2d = self._im2col(xp, ho, wo)
            out = W.reshape(f, c * k * k) @ cols2d                # (F, Ho*Wo*N): one BLAS call
            out += b[:, None]
            self.cache = (cols2d, x.shape, None)
        else:
            fused = activation if hasattr(activation, "_apply_in_place") else None
            out = self._forward_in_row_chunks(xp, ho, wo, rows, fused)
            self.cache = (None, x.shape, xp)
            if fused is not None:
                out = out.reshape(f, ho, wo, n).transpose(3, 0, 1, 2)
                fused.cache = out        # what its own forward would have cached: its output
                return out
        # (F, Ho, Wo, N) in memory, handed out as an (N, F, Ho, Wo) view: no transpose copy.
        out = out.reshape(f, ho, wo, n).transpose(3, 0, 1, 2)
        return out if activation is None else activation.forward(out)

    def _buffer(self, size, dtype):
        """A flat work buffer of ``size`` numbers, kept for the next call that asks for as many."""
        if self._cols is None or self._cols.size != size or self._cols.dtype != dtype:
            self._cols = np.empty(size, dtype=dtype)
        return self._cols

    def _im2col(self, xp, ho, wo):
        """``cols`` (C*K*K, Ho*Wo*N) from the padded batch-last input: one strided copy of the
        (C, K, K, Ho, Wo, N) window view, whose contiguous runs are whole output rows."""
        c, k, n = xp.shape[0], self.kernel_size, xp.shape[3]
        cols = self._buffer(c * k * k * ho * wo * n, xp.dtype).reshape(c, k, k, ho, wo, n)
        np.copyto(cols, _window_view(xp, k, self.stride, ho, wo, lead=1))
        return cols.reshape(c * k * k, ho * wo * n)

    def _rows_per_product(self, wo, n, itemsize):
        """Eval mode: how many output rows one product covers, so that their im2col columns
        take about ``_INFERENCE_CHUNK_BYTES`` (at least one row)."""
        row_bytes = self.in_channels * self.kernel_size ** 2 * wo * n * itemsize
        return max(1, _INFERENCE_CHUNK_BYTES // max(1, row_bytes))

    def _product_of_rows(self, xp, i0, i1, wo, buffer, out_rows):
        """Output rows ``i0:i1`` without bias into ``out_rows`` (an (F, i1 - i0, Wo, N) view):
        their im2col columns built in ``buffer``, then one product."""
        f, c, k, s, n = self.out_channels, self.in_channels, self.kernel_size, self.stride, xp.shape[3]
        part = buffer[:c * k * k * (i1 - i0) * wo * n].reshape(c, k, k, i1 - i0, wo, n)
        np.copyto(part, _window_view(xp[:, i0 * s:(i1 - 1) * s + k], k, s, i1 - i0, wo, lead=1))
        np.matmul(self.params["W"].reshape(f, c * k * k), part.reshape(c * k * k, -1),
                  out=out_rows.reshape(f, -1))             # a view: each f's rows are contiguous

    def _forward_in_row_chunks(self, xp, ho, wo, rows, activation=None):
        """``W2d @ cols + b`` computed ``rows`` output rows at a time, each chunk of ``cols``
        built in the same small buffer, and ``activation`` applied to each chunk in place:
        (F, Ho*Wo*N), equal to the one-product result."""
        W, b = self.params["W"], self.params["b"]
        f, c, k, n = self.out_channels, self.in_channels, self.kernel_size, xp.shape[3]
        out = np.empty((f, ho, wo, n), dtype=W.dtype)
        buffer = self._buffer(c * k * k * rows * wo * n, W.dtype)
        for i0 in range(0, ho, rows):
            i1 = min(ho, i0 + rows)
            chunk = out[:, i0:i1]
            self._product_of_rows(xp, i0, i1, wo, buffer, chunk)
            chunk += b[:, None, None, None]
            if activation is not None:
                activation._apply_in_place(chunk, f * ho * wo)
        return out.reshape(f, ho * wo * n)

    def backward(self, dout, input_grad: bool = True):
        """Set ``grads`` and return ``dL/dx``; with ``input_grad=False`` only set ``grads``
        and return None (the first layer of a network: nobody needs the image's gradient)."""
        cols2d, x_shape, xp = self._cached()
        W = self.params["W"]
        n, c, h, w = x_shape
        _, f, ho, wo = self.output_shape(x_shape)
        k, s, p = self.kernel_size, self.stride, self.padding
        if cols2d is None:                                        # after a chunked forward
            cols2d = self._im2col(xp, ho, wo)
        dout = _as_float(self._check_dout(dout, (n, f, ho, wo)), W.dtype)
        d2d = _batch_last(dout).reshape(f, ho * wo * n)          # no copy if dout came from us

        self.grads["b"] = d2d.sum(axis=1)
        # dW as (cols2d @ d2d.T).T: the same numbers, but BLAS runs this orientation (a tall
        # result, the long axis L = Ho*Wo*N summed over) up to 2.5x faster than d2d @ cols2d.T.
        self.grads["W"] = (cols2d @ d2d.T).T.reshape(W.shape)
        if not input_grad:
            return None
        dcols = (W.reshape(f, c * k * k).T @ d2d).reshape(c, k, k, ho, wo, n)

        hp, wp = h + 2 * p, w + 2 * p
        if _windows_tile(hp, wp, k, s):
            # The windows tile the input exactly (C5: one 5x5 window on a 5x5 input): every
            # input position lies in exactly one window, so col2im only rearranges the
            # columns, dxp[c, i*K + u, j*K + v, n] = dcols[c, u, v, i, j, n] -- no additions.
            dxp = dcols.transpose(0, 3, 1, 4, 2, 5).reshape(c, hp, wp, n)
        else:
            # col2im: add the column of every window offset (u, v) back onto the input positions
            # it was read from -- K*K strided adds, each over whole rows of Wo * N numbers.
            dxp = np.zeros((c, hp, wp, n), dtype=W.dtype)
            for u in range(k):
                for v in range(k):
                    dxp[:, u:u + (ho - 1) * s + 1:s, v:v + (wo - 1) * s + 1:s, :] += dcols[:, u, v]
        if p:
            dxp = dxp[:, p:p + h, p:p + w, :]
        return dxp.transpose(3, 0, 1, 2)                          # (N, C, H, W) view


class _Pool2D(Layer):
    """Shared shape logic of the pooling layers: floor mode, no padding.

    Both pools are written as a short loop over the ``K*K`` window offsets ``(u, v)``:
    the inputs at offset ``(u, v)`` of every window form one strided slice of ``x``, so
    each step is a single vectorized operation over the whole batch. The slices and
    NumPy's elementwise operations keep the input's memory order, so the pools work
    in whichever order they are given (see the module docstring) without copying.
    """

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

    def _windows_tile(self, x_shape) -> bool:
        """True if the windows cover the input exactly once (see :func:`_windows_tile`)."""
        return _windows_tile(x_shape[2], x_shape[3], self.kernel_size, self.stride)

    def _window_slices(self, x_shape):
        """The (u, v, slices) of every window offset, for an input of shape ``x_shape``."""
        _, _, ho, wo = self.output_shape(x_shape)
        return _offset_slices(self.kernel_size, self.stride, ho, wo)


class AvgPool2D(_Pool2D):
    r"""Average pooling over ``K x K`` windows with stride ``S`` (default ``S = K``).

    Math: ``out[n, c, i, j] = (1/K^2) * sum_{u,v} x[n, c, i*S + u, j*S + v]``.

    Shapes: x (N, C, H, W) -> out (N, C, H_out, W_out), H_out = floor((H - K) / S) + 1.
    Rows and columns left over by the floor get no output and zero gradient.

    Computed as the sum of the ``K*K`` strided slices ``x[:, :, u::S, v::S]`` (cut to
    H_out x W_out), scaled by ``1/K^2``.

    Backward *spreads* each output gradient evenly over its window:
    ``dx[n, c, i*S + u, j*S + v] += dout[n, c, i, j] / K^2`` (overlapping windows add up),
    one strided add per offset ``(u, v)``.

    Cache: the input (a reference, used only for its shape and memory order).
    """

    def macs(self, input_shape):
        n, c, ho, wo = self.output_shape(input_shape)
        return n * c * ho * wo * self.kernel_size ** 2

    def forward(self, x):
        x = self._prepare(x)
        out = self._pool(x)
        self.cache = x
        return out

    def _pool(self, x, out=None):
        """The pooled values (no cache), in a new array in ``x``'s memory order or in ``out``."""
        for k, (_, _, sl) in enumerate(self._window_slices(x.shape)):
            if k > 0:
                out += x[sl]
            elif out is None:
                out = x[sl].copy(order="K")  # a new array, in x's memory order
            else:
                np.copyto(out, x[sl])
        out *= x.dtype.type(1 / self.kernel_size ** 2)
        return out

    def backward(self, dout):
        x = self._cached()
        x_shape, dtype = x.shape, x.dtype
        dout = _as_float(self._check_dout(dout, self.output_shape(x_shape)), dtype)
        share = dout * dtype.type(1 / self.kernel_size ** 2)
        tiles = self._windows_tile(x_shape)
        # Same shape and memory order as the input; no zero-fill if every entry gets written.
        dx = np.empty_like(x) if tiles else np.zeros_like(x)
        for _, _, sl in self._window_slices(x_shape):
            if tiles:
                dx[sl] = share
            else:                        # overlapping windows add up; leftovers stay 0
                dx[sl] += share
        return dx


class MaxPool2D(_Pool2D):
    r"""Max pooling over ``K x K`` windows with stride ``S`` (default ``S = K``).

    Math: ``out[n, c, i, j] = max_{u,v} x[n, c, i*S + u, j*S + v]``.

    Shapes: x (N, C, H, W) -> out (N, C, H_out, W_out), H_out = floor((H - K) / S) + 1.

    Computed as the running ``np.maximum`` of the ``K*K`` strided slices ``x[:, :, u::S, v::S]``.

    Backward *routes* each output gradient to the single input that won the max:
    ``dx[n, c, i*S + u*, j*S + v*] += dout[n, c, i, j]``. On tied maxima the gradient
    goes to the first maximum of the window in row-major order, as PyTorch does; the
    true function is not differentiable there, so this is a (standard) choice. The
    backward pass visits the offsets in that order and gives each window's gradient to
    the first slice equal to the maximum, remembering which windows are served.

    Cache: the input ``x`` and the output ``out`` (references, not copies).
    """

    def macs(self, input_shape):
        return 0

    def forward(self, x):
        x = self._prepare(x)
        out = self._pool(x)
        self.cache = (x, out)
        return out

    def _pool(self, x, out=None):
        """The pooled values (no cache), in a new array in ``x``'s memory order or in ``out``."""
        for k, (_, _, sl) in enumerate(self._window_slices(x.shape)):
            if k > 0:
                np.maximum(out, x[sl], out=out)
            elif out is None:
                out = x[sl].copy(order="K")  # a new array, in x's memory order
            else:
                np.copyto(out, x[sl])
        return out

    def backward(self, dout):
        x, out = self._cached()
        dout = _as_float(self._check_dout(dout, out.shape), x.dtype)
        tiles = self._windows_tile(x.shape)
        # Same shape and memory order as the input; no zero-fill if every entry gets written.
        dx = np.empty_like(x) if tiles else np.zeros_like(x)
        slices = [sl for _, _, sl in self._window_slices(x.shape)]
        unserved = None                  # windows whose maximum has not been found yet
        for i, sl in enumerate(slices):
            winner = x[sl] == out        # a new array in out's memory order, like every operand here
            if unserved is not None:
                winner &= unserved       # only the first maximum of each window
            if i < len(slices) - 1:      # (winner is a subset of unserved)
                unserved = ~winner if unserved is None else np.logical_xor(unserved, winner, out=unserved)
            if tiles:
                np.multiply(dout, winner, out=dx[sl])
            else:                        # overlapping windows add up; leftovers stay 0
                dx[sl] += dout * winner
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

    def backward(self, dout, input_grad: bool = True):
        """Set ``grads`` and return ``dL/dx`` (None with ``input_grad=False``, as in :class:`Conv2D`)."""
        x = self._cached()
        W = self.params["W"]
        dout = _as_float(self._check_dout(dout, (x.shape[0], self.out_features)), W.dtype)
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
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))   # (not -1: N may be 0)

    def backward(self, dout):
        shape = self._cached()
        dout = self._check_dout(dout, self.output_shape(shape))
        return dout.reshape(shape)


class Tanh(Layer):
    r"""Hyperbolic tangent, elementwise: ``out = tanh(x)``; ``dx = dout * (1 - out^2)``.

    float32 inputs with at least :attr:`RATIONAL_MIN_FEATURES` numbers per image (C1's and
    C3's maps) go through :func:`lenet_core.fastmath.tanh`, a rational function accurate to a
    few units in the last place that needs only multiplications, additions and one division
    (on the book's machine 1.5-1.9x faster than ``np.tanh``). Smaller ones (C5, F6: the
    rational function's twenty NumPy calls cost about 50 us however few numbers they get)
    and float64 use ``np.tanh``. The choice depends on one image's shape, never on the batch
    size or on how a convolution cuts its output into chunks.
    Any shape in, same shape out. Cache: the output ``out``.
    """

    RATIONAL_MIN_FEATURES = 1024

    def forward(self, x):
        x = _as_float(x)
        out = self._tanh(x, None, x.size // x.shape[0] if x.ndim and x.shape[0] else x.size)
        self.cache = out
        return out

    @classmethod
    def _apply_in_place(cls, a, features):
        """``a <- tanh(a)``, for a piece of an output with ``features`` numbers per image:
        how :meth:`Conv2D.forward_then` fuses this layer."""
        cls._tanh(a, a, features)

    @classmethod
    def _tanh(cls, x, out, features):
        if x.dtype == np.float32 and features >= cls.RATIONAL_MIN_FEATURES:
            return fastmath.tanh(x, out)
        return np.tanh(x, out=out)

    def backward(self, dout):
        out = self._cached()
        dout = self._check_dout(dout, out.shape)
        grad = out * out                 # one new array, reused in place for the next steps
        np.subtract(1, grad, out=grad)   # 1 - out^2
        grad *= dout
        return grad


class ReLU(Layer):
    r"""Rectified linear unit, elementwise: ``out = max(x, 0)``; ``dx = dout * [x > 0]``.

    The derivative at exactly 0 is taken as 0, as in PyTorch.
    Any shape in, same shape out. Cache: the output ``out``, which is positive exactly where
    ``x`` is: the backward pass reads its mask ``out > 0`` from it, so a forward pass that
    is never followed by a backward one (inference) makes one pass over memory, not two.
    """

    def forward(self, x):
        x = _as_float(x)
        out = np.maximum(x, x.dtype.type(0))   # a ufunc: keeps x's memory order
        self.cache = out
        return out

    @staticmethod
    def _apply_in_place(a, features=None):
        """``a <- max(a, 0)``: how :meth:`Conv2D.forward_then` fuses this layer."""
        np.maximum(a, a.dtype.type(0), out=a)

    def backward(self, dout):
        out = self._cached()
        dout = self._check_dout(dout, out.shape)
        return dout * (out > 0)          # a bool factor: 10x faster here than np.where(out > 0, dout, 0)


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
