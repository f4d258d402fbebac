"""The fast engine's layers: the same maths as :mod:`lenet_core.layers`, arranged for speed.

Each class here is a subclass of the plain layer it speeds up, with the same
constructor, ``params``, ``grads`` and results (the tests hold them equal: float64 to
1e-12, float32 to 1e-5, over random shapes). What changes is how the numbers are
laid out and visited:

* **Batch-last memory.** The *shapes* stay NCHW, but :class:`FastConv2D` works on a
  contiguous (C, H, W, N) copy of its input -- the batch axis innermost -- and returns
  its output as a transposed view ``out_fhwn.transpose(3, 0, 1, 2)``: NCHW shape,
  (F, H, W, N) memory. Every window row of a (C, H, W, N) array is a contiguous run of
  ``K * N`` numbers, so im2col is a handful of long block copies, and one matrix
  product covers the whole batch. The pools and activations keep whatever memory
  order they are given (NumPy's ufuncs and strided slices do), so the next
  convolution finds its input already batch-last and copies nothing.
* **Reused buffers.** The im2col matrix is kept and reused by the next forward pass
  of the same shape instead of being allocated again.
* **Chunks that stay in the cache** (inference only). :meth:`FastConv2D.infer_then`
  builds the im2col matrix a few output rows at a time in one small buffer
  (:data:`INFERENCE_CHUNK_BYTES`), adds the bias, applies the activation and the pooling
  to each chunk while it is in the CPU's cache, and writes only the pooled maps to
  memory (:meth:`~lenet_core.fast.network.FastSequential.infer`).
* **A tanh from multiplications** (:class:`FastTanh`, see :mod:`lenet_core.fast.tanh`).
* **Fewer temporaries**: in-place work on arrays the layer made itself (never on an
  input or on ``dout``), and no zero-fill where every entry is written anyway.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..layers import AvgPool2D, Conv2D, MaxPool2D, ReLU, Tanh, _as_float, _check_input
from . import tanh as fast_tanh

__all__ = ["FastConv2D", "FastAvgPool2D", "FastMaxPool2D", "FastTanh", "FastReLU", "FAST_TWINS",
           "INFERENCE_CHUNK_BYTES"]

INFERENCE_CHUNK_BYTES = 2 << 20   # evaluation mode: im2col a few output rows at a time, about this much
_TRANSPOSE_BLOCK = 16             # images per block when transposing: 16 float32 fill a 64-byte cache line


def _copy_batch_last(x: np.ndarray, out: np.ndarray) -> None:
    """Write ``x`` (N, C, H, W) into ``out``, a (C, H, W, N) array or view.

    If ``x`` already is batch-last in memory this is one plain copy. Otherwise a plain
    ``out[...] = x.transpose(1, 2, 3, 0)`` would read ``x`` with a stride of a whole
    image and write ``out`` one number at a time, touching a new cache line for almost
    every number; instead each block of 16 images is read from one small contiguous piece
    of ``x`` and written in runs of 16 consecutive numbers.
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
    :class:`FastConv2D`, or of an elementwise or pooling layer applied to one).
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


def _window_view(x: np.ndarray, k: int, stride: int, h_out: int, w_out: int) -> np.ndarray:
    """A read-only strided view of every ``k x k`` window of a (C, H, W, N) array:
    shape (C, K, K, H_out, W_out, N), element ``[c, u, v, i, j, n]`` is
    ``x[c, i*stride + u, j*stride + v, n]``. Nothing is copied."""
    c, _, _, n = x.shape
    sc, sh, sw, sn = x.strides
    return as_strided(x, shape=(c, k, k, h_out, w_out, n),
                      strides=(sc, sh, sw, sh * stride, sw * stride, sn), writeable=False)


def _offset_slices(k: int, stride: int, h_out: int, w_out: int):
    """For each window offset (u, v), in row-major order: the strided slices of an
    (N, C, H, W) array holding ``x[n, c, i*stride + u, j*stride + v]`` for all windows (i, j)."""
    for u in range(k):
        for v in range(k):
            yield (slice(None), slice(None), slice(u, u + (h_out - 1) * stride + 1, stride),
                   slice(v, v + (w_out - 1) * stride + 1, stride))


class FastConv2D(Conv2D):
    """:class:`~lenet_core.layers.Conv2D` on batch-last memory (see the module docstring).

    The same sums as the plain layer, arranged for the batch axis innermost::

        cols  (C*K*K, H_out*W_out*N)   row (c, u, v), column (i, j, n)
        out2d = W2d @ cols + b         (F, H_out*W_out*N), handed out as an (N, F, H_out, W_out) view
        dW2d  = (cols @ dout2d.T).T    the same numbers as dout2d @ cols.T, in the orientation
                                       BLAS computes faster for a short, wide dout2d
        dcols = W2d.T @ dout2d, then col2im as K*K strided adds over whole rows of W_out*N numbers
                (a mere rearrangement when the windows tile the input, as in C5)

    Cache: ``cols`` (its buffer reused by the next forward of the same shape) and the input shape.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cols = None   # the im2col work buffer, kept between steps

    def forward(self, x):
        W, b = self.params["W"], self.params["b"]
        x = self._check_forward_input(x)
        n, f, h_out, w_out = self.output_shape(x.shape)
        cols2d = self._im2col(self._padded_batch_last(x), h_out, w_out)
        out = W.reshape(f, -1) @ cols2d                           # (F, Ho*Wo*N): one BLAS call
        out += b[:, None]
        self.cache = (cols2d, x.shape)
        # (F, Ho, Wo, N) in memory, handed out as an (N, F, Ho, Wo) view: no transpose copy.
        return out.reshape(f, h_out, w_out, n).transpose(3, 0, 1, 2)

    def infer_then(self, x, activation, pool):
        """``pool.forward(activation.forward(self.forward(x)))`` when no backward pass follows:
        in eval mode, on a large batch, each chunk of output rows is activated *and pooled*
        while still in the CPU's cache, and only the pooled maps are written to memory. The
        three layers' caches are left empty: a backward pass after this raises an error.

        Fused only where it is exact: a fast activation, then a fast pool (not a subclass, whose
        own ``forward`` must run) whose stride equals its window (no window spans two chunks);
        otherwise, and in training mode, it is the plain composition."""
        fusable = (not self.training and type(activation) in (FastTanh, FastReLU)
                   and type(pool) in (FastAvgPool2D, FastMaxPool2D) and pool.stride == pool.kernel_size)
        x = _as_float(x, self.params["W"].dtype)
        _check_input(self, x, 4, "(N, C, H, W)", self.in_channels)
        n, f, h_out, w_out = self.output_shape(x.shape)
        s = pool.stride if fusable else 1
        rows = max(s, self._rows_per_product(w_out, n, x.dtype.itemsize) // s * s)   # whole pooling windows
        if not fusable or rows >= h_out or min(h_out, w_out) < pool.kernel_size or n == 0:
            # (too small an input or batch: the layers themselves say what is wrong, if anything)
            out = pool.forward(activation.forward(self.forward(x)))
        else:
            out = self._infer_in_row_chunks(self._padded_batch_last(x), h_out, w_out, rows, activation, pool)
        self.cache = activation.cache = pool.cache = None
        return out

    # -- the pieces ----------------------------------------------------------
    def _padded_batch_last(self, x):
        """``x`` (N, C, H, W) -> zero-padded, contiguous (C, H + 2P, W + 2P, N)."""
        p = self.padding
        if p == 0:
            return _batch_last(x)
        n, c, h, w = x.shape
        xp = np.zeros((c, h + 2 * p, w + 2 * p, n), dtype=x.dtype)
        _copy_batch_last(x, xp[:, p:p + h, p:p + w, :])
        return xp

    def _buffer(self, size, dtype):
        """A flat work buffer of ``size`` numbers, kept for the next call that asks for as many."""
        if self._cols is None or self._cols.size != size or self._cols.dtype != dtype:
            self._cols = np.empty(size, dtype=dtype)
        return self._cols

    def _im2col(self, xp, h_out, w_out):
        """``cols`` (C*K*K, Ho*Wo*N) from the padded batch-last input: one strided copy of the
        (C, K, K, Ho, Wo, N) window view, whose contiguous runs are whole output rows."""
        c, k, n = xp.shape[0], self.kernel_size, xp.shape[3]
        cols = self._buffer(c * k * k * h_out * w_out * n, xp.dtype).reshape(c, k, k, h_out, w_out, n)
        np.copyto(cols, _window_view(xp, k, self.stride, h_out, w_out))
        return cols.reshape(c * k * k, h_out * w_out * n)

    def _rows_per_product(self, w_out, n, itemsize):
        """Inference: how many output rows one product covers, so that their im2col columns
        take about ``INFERENCE_CHUNK_BYTES`` (at least one row)."""
        row_bytes = self.in_channels * self.kernel_size ** 2 * w_out * n * itemsize
        return max(1, INFERENCE_CHUNK_BYTES // max(1, row_bytes))

    def _product_of_rows(self, xp, i0, i1, w_out, buffer, out_rows):
        """Output rows ``i0:i1`` without bias into ``out_rows`` (an (F, i1 - i0, Wo, N) view):
        their im2col columns built in ``buffer``, then one product."""
        f, c, k, s, n = self.out_channels, self.in_channels, self.kernel_size, self.stride, xp.shape[3]
        part = buffer[:c * k * k * (i1 - i0) * w_out * n].reshape(c, k, k, i1 - i0, w_out, n)
        np.copyto(part, _window_view(xp[:, i0 * s:(i1 - 1) * s + k], k, s, i1 - i0, w_out))
        np.matmul(self.params["W"].reshape(f, c * k * k), part.reshape(c * k * k, -1),
                  out=out_rows.reshape(f, -1))             # a view: each f's rows are contiguous

    def _infer_in_row_chunks(self, xp, h_out, w_out, rows, activation, pool):
        """The pooled maps, (N, F, Ho // S, Wo // S) as a view of (F, Ho // S, Wo // S, N) memory,
        ``rows`` output rows at a time (a multiple of the pool's stride S): each chunk of rows is
        computed by products over im2col pieces of at most ``INFERENCE_CHUNK_BYTES``, then
        activated and pooled while in the cache. Rows the pool would drop are never computed."""
        W, b = self.params["W"], self.params["b"]
        f, ckk, n, ps = self.out_channels, self.in_channels * self.kernel_size ** 2, xp.shape[3], pool.stride
        per_product = self._rows_per_product(w_out, n, W.dtype.itemsize)
        out = np.empty((f, h_out // ps, w_out // ps, n), dtype=W.dtype)
        buffer = self._buffer(ckk * min(rows, per_product) * w_out * n, W.dtype)
        chunk_buffer = np.empty(f * rows * w_out * n, dtype=W.dtype)
        used = (h_out // ps) * ps
        for i0 in range(0, used, rows):
            i1 = min(used, i0 + rows)
            chunk = chunk_buffer[:f * (i1 - i0) * w_out * n].reshape(f, i1 - i0, w_out, n)
            for j0 in range(i0, i1, per_product):
                j1 = min(i1, j0 + per_product)
                self._product_of_rows(xp, j0, j1, w_out, buffer, chunk[:, j0 - i0:j1 - i0])
            chunk += b[:, None, None, None]
            activation.apply_in_place(chunk, f * h_out * w_out)
            pool.pool(chunk.transpose(3, 0, 1, 2), out[:, i0 // ps:i1 // ps].transpose(3, 0, 1, 2))
        return out.transpose(3, 0, 1, 2)

    def backward(self, dout, input_grad: bool = True):
        cols2d, x_shape = self._cached()
        W = self.params["W"]
        n, c, h, w = x_shape
        _, f, h_out, w_out = self.output_shape(x_shape)
        k, s, p = self.kernel_size, self.stride, self.padding
        dout = self._check_dout(dout, (n, f, h_out, w_out), W.dtype)
        d2d = _batch_last(dout).reshape(f, h_out * w_out * n)    # no copy if dout came from us

        self.grads["b"] = d2d.sum(axis=1)
        self.grads["W"] = (cols2d @ d2d.T).T.reshape(W.shape)
        if not input_grad:
            return None
        dcols = (W.reshape(f, c * k * k).T @ d2d).reshape(c, k, k, h_out, w_out, n)

        hp, wp = h + 2 * p, w + 2 * p
        if _windows_tile(hp, wp, k, s):
            # Every input position lies in exactly one window (C5: one 5x5 window on a 5x5
            # input), so col2im only rearranges the columns: no additions.
            dxp = dcols.transpose(0, 3, 1, 4, 2, 5).reshape(c, hp, wp, n)
        else:
            dxp = np.zeros((c, hp, wp, n), dtype=W.dtype)
            for u in range(k):
                for v in range(k):
                    dxp[:, u:u + (h_out - 1) * s + 1:s, v:v + (w_out - 1) * s + 1:s, :] += dcols[:, u, v]
        if p:
            dxp = dxp[:, p:p + h, p:p + w, :]
        return dxp.transpose(3, 0, 1, 2)                          # (N, C, H, W) view


class _FastPool:
    """Pooling as a short loop over the ``K*K`` window offsets ``(u, v)``: the inputs at
    offset ``(u, v)`` of every window form one strided slice of ``x``, so each step is one
    vectorized operation over the whole batch, in whatever memory order ``x`` has."""

    def _slices(self, x_shape):
        _, _, h_out, w_out = self.output_shape(x_shape)
        return _offset_slices(self.kernel_size, self.stride, h_out, w_out)

    def _tiles(self, x_shape) -> bool:
        return _windows_tile(x_shape[2], x_shape[3], self.kernel_size, self.stride)


class FastAvgPool2D(_FastPool, AvgPool2D):
    """:class:`~lenet_core.layers.AvgPool2D` as the sum of the ``K*K`` strided slices, scaled
    by ``1/K^2``, keeping the input's memory order. Cache: the input (a reference)."""

    def forward(self, x):
        x = self._check_forward_input(x)
        out = self.pool(x)
        self.cache = x
        return out

    def pool(self, x, out=None):
        """The pooled values (no cache), in a new array in ``x``'s memory order or in ``out``."""
        for i, sl in enumerate(self._slices(x.shape)):
            if i > 0:
                out += x[sl]
            elif out is None:
                out = x[sl].copy(order="K")  # a new array, in x's memory order
            else:
                np.copyto(out, x[sl])
        out *= x.dtype.type(1 / self.kernel_size ** 2)
        return out

    def backward(self, dout):
        x = self._cached()
        dout = self._check_dout(dout, self.output_shape(x.shape), x.dtype)
        share = dout * x.dtype.type(1 / self.kernel_size ** 2)
        tiles = self._tiles(x.shape)
        dx = np.empty_like(x) if tiles else np.zeros_like(x)     # x's memory order
        for sl in self._slices(x.shape):
            if tiles:
                dx[sl] = share
            else:                        # overlapping windows add up; leftovers stay 0
                dx[sl] += share
        return dx


class FastMaxPool2D(_FastPool, MaxPool2D):
    """:class:`~lenet_core.layers.MaxPool2D` as the running ``np.maximum`` of the ``K*K``
    strided slices. Backward visits the offsets in row-major order and gives each window's
    gradient to the first slice equal to the maximum (PyTorch's rule on ties), remembering
    which windows are served. Cache: the input ``x`` and the output (references)."""

    def forward(self, x):
        x = self._check_forward_input(x)
        out = self.pool(x)
        self.cache = (x, out)
        return out

    def pool(self, x, out=None):
        """The pooled values (no cache), in a new array in ``x``'s memory order or in ``out``."""
        for i, sl in enumerate(self._slices(x.shape)):
            if i > 0:
                np.maximum(out, x[sl], out=out)
            elif out is None:
                out = x[sl].copy(order="K")  # a new array, in x's memory order
            else:
                np.copyto(out, x[sl])
        return out

    def backward(self, dout):
        x, out = self._cached()
        dout = self._check_dout(dout, out.shape, x.dtype)
        tiles = self._tiles(x.shape)
        dx = np.empty_like(x) if tiles else np.zeros_like(x)
        slices = list(self._slices(x.shape))
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


class FastTanh(Tanh):
    """:class:`~lenet_core.layers.Tanh` with the rational float32 ``tanh`` of
    :mod:`lenet_core.fast.tanh` for layers with at least :attr:`RATIONAL_MIN_FEATURES`
    activations per image (C1's and C3's maps), ``np.tanh`` for smaller ones and for
    float64. The choice depends on one image's shape, never on the batch size or on how a
    convolution cuts its output into chunks, so an image's result never depends on its batch.
    Cache: the output."""

    RATIONAL_MIN_FEATURES = 1024

    def forward(self, x):
        x = _as_float(x)
        features = x.size // x.shape[0] if x.ndim and x.shape[0] else x.size
        out = self._tanh(x, None, features)
        self.cache = out
        return out

    def apply_in_place(self, a, features):
        """``a <- tanh(a)`` for a piece of an output with ``features`` numbers per image
        (how :meth:`FastConv2D.infer_then` fuses this layer)."""
        self._tanh(a, a, features)

    def _tanh(self, x, out, features):
        if x.dtype == np.float32 and features >= self.RATIONAL_MIN_FEATURES:
            return fast_tanh.tanh(x, out)
        return np.tanh(x, out=out)

    def backward(self, dout):
        out = self._cached()
        dout = self._check_dout(dout, out.shape)
        grad = out * out                 # one new array, reused in place for the next steps
        np.subtract(1, grad, out=grad)   # 1 - out^2
        grad *= dout
        return grad


class FastReLU(ReLU):
    """:class:`~lenet_core.layers.ReLU` that can also be applied in place to a chunk of a
    convolution's output (how :meth:`FastConv2D.infer_then` fuses it)."""

    def apply_in_place(self, a, features=None):
        np.maximum(a, a.dtype.type(0), out=a)


#: plain layer class -> its fast twin
FAST_TWINS = {Conv2D: FastConv2D, AvgPool2D: FastAvgPool2D, MaxPool2D: FastMaxPool2D, Tanh: FastTanh,
              ReLU: FastReLU}
