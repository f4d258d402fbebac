r"""A float32 ``tanh`` made of the cheapest operations NumPy has: the fast engine's ``tanh``.

Why. ``np.tanh`` evaluates an exponential-like function per number, which on some CPUs
costs as much as twenty multiplications or additions over an array (chapter 10 times
both on the reader's machine; ``benchmarks/README.md`` has the book machine's numbers).
Classic LeNet-5 applies ``tanh`` to about 6,500 numbers per image, so on such CPUs it is
a large part of the network's time. A rational function -- a ratio of two polynomials --
needs only multiplications, additions and one division.

What. For ``|x| <= X_MAX = 9`` (beyond which float32 ``tanh`` is exactly +-1)::

    tanh(x) ~= x * P(x^2) / Q(x^2),    P(z) = a0 + a1 z + ... + a4 z^4,
                                       Q(z) = 1 + b1 z + ... + b4 z^4,

an odd function like ``tanh`` itself, with ``x`` clipped to ``[-X_MAX, X_MAX]`` first.
The coefficients (:data:`TANH_P`, :data:`TANH_Q`) minimize the largest *relative*
error on ``(0, X_MAX]`` (:func:`fit_tanh_rational` recomputes them): about 2e-8 in
exact arithmetic, below float32's resolution (6e-8 near 1). Evaluated in float32 by
Horner's rule, the result is within a few units in the last place of the exact
``tanh`` over every float32 in [0, 9.5] (the tests check the bound: 8 ulp and 4e-7).
It keeps its sign, is exact at 0, saturates to exactly +-1, and passes NaN through.
The last step clips it to ``[-1, 1]`` so that ``1 - tanh(x)^2``, the derivative, is
never negative.

How. Twenty elementwise passes, each over a block of :data:`BLOCK` numbers that stays
in the CPU's caches (over whole arrays the same passes would go to memory and back
twenty times). The twenty NumPy calls have a fixed cost, so small arrays are better
left to ``np.tanh``: :class:`~lenet_core.fast.layers.FastTanh` decides by the size of
one image's activations, never by the batch size. And on a CPU where NumPy's own float32
``tanh`` is vectorized it is far faster than any of this: :func:`rational_pays` measures
the two once and :func:`tanh` uses the faster (``LENET_TANH`` overrides). :func:`tanh`
sends other dtypes (float64 for gradient checks) to ``np.tanh``; :func:`rational_tanh` is
the rational function alone.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

__all__ = ["tanh", "rational_tanh", "rational_pays", "X_MAX", "BLOCK", "TANH_P", "TANH_Q", "fit_tanh_rational"]

X_MAX = 9.0
# a0..a4 and b0..b4 (b0 = 1) of P and Q, from fit_tanh_rational(4, 4).
TANH_P = (0.9999999795933874, 0.13381101784108188, 0.003495677654155647,
          2.061051523326177e-05, 1.3356558720145628e-08)
TANH_Q = (1.0, 0.46714417429647087, 0.02587732516791399,
          0.00032857795568341476, 7.777354229659972e-07)

BLOCK = 1 << 16  # numbers per block: three float32 blocks (768 KB) stay in the CPU's caches
# 0-d arrays rather than NumPy scalars: each of the twenty ufunc calls starts a little faster.
_P32 = tuple(np.array(c, np.float32) for c in TANH_P)
_Q32 = tuple(np.array(c, np.float32) for c in TANH_Q)
_LIMITS = (np.array(-X_MAX, np.float32), np.array(X_MAX, np.float32),
           np.array(-1, np.float32), np.array(1, np.float32))


def tanh(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``tanh(x)`` elementwise, same shape and memory order as ``x``; ``out`` may be ``x``.

    float32, where :func:`rational_pays`: :func:`rational_tanh`; otherwise (float64 for
    gradient checks, or a NumPy whose own float32 ``tanh`` is the faster): ``np.tanh``.
    """
    x = np.asarray(x)
    if x.dtype == np.float32 and (out is None or getattr(out, "dtype", None) == np.float32) and rational_pays():
        return rational_tanh(x, out)
    return np.tanh(x, out=out) if out is not None else np.tanh(x)


_choice: list = []


def rational_pays() -> bool:
    """Whether the rational function beats ``np.tanh`` on this machine. ``LENET_TANH=rational``
    or ``LENET_TANH=numpy`` decides; otherwise both are timed once per process on one block,
    and the rational function is chosen only if it takes less than 3/4 of ``np.tanh``'s time
    (NumPy's own float32 ``tanh`` is vectorized on some CPUs, e.g. with AVX-512, and then far
    faster; on others it costs as much as the twenty passes). The margin keeps the choice from
    flipping between runs on a machine where the two are close."""
    wanted = os.environ.get("LENET_TANH", "").strip().lower()
    if wanted in ("rational", "numpy"):
        return wanted == "rational"
    if wanted:
        raise ValueError(f"LENET_TANH must be 'rational' or 'numpy', got {wanted!r}")
    if not _choice:
        x = np.linspace(-5, 5, BLOCK, dtype=np.float32)
        out = np.empty_like(x)
        seconds = {}
        for name, f in (("numpy", lambda: np.tanh(x, out=out)), ("rational", lambda: rational_tanh(x, out))):
            times = []
            for _ in range(7):
                t0 = time.perf_counter()
                f()
                times.append(time.perf_counter() - t0)
            seconds[name] = min(times)
        _choice.append(seconds["rational"] < 0.75 * seconds["numpy"])
    return _choice[0]


def rational_tanh(x: np.ndarray, out: np.ndarray | None = None, block: int = BLOCK) -> np.ndarray:
    """The rational function of the module docstring on a float32 array, ``block`` numbers at
    a time (chapter 10 times other block sizes); same shape and memory order as ``x``;
    ``out`` may be ``x`` (or overlap it: then ``x`` is copied first)."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"rational_tanh: x must be float32, got {x.dtype} (use tanh for any dtype)")
    if out is None:
        out = np.empty_like(x)                           # keeps x's memory order
    elif not isinstance(out, np.ndarray) or out.dtype != np.float32:
        raise TypeError(f"rational_tanh: out must be a float32 NumPy array, got {type(out).__name__}"
                        f"{'' if not isinstance(out, np.ndarray) else ' of ' + str(out.dtype)}")
    if x.shape != out.shape:
        raise ValueError(f"rational_tanh: out has shape {out.shape}, x has {x.shape}")
    if (out is not x and np.may_share_memory(x, out)
            and (x.__array_interface__["data"][0], x.strides) != (out.__array_interface__["data"][0], out.strides)):
        x = x.copy()                                     # out overlaps x, shifted: read x first
    block = int(block)
    if block < 1:
        raise ValueError(f"rational_tanh: block must be at least 1, got {block}")
    z, p = _scratch() if block == BLOCK else (np.empty(block, np.float32), np.empty(block, np.float32))
    for part_x, part_out in _blocks(x, out, block):
        _tanh_block(part_x, part_out, z[:part_x.size].reshape(part_x.shape),
                    p[:part_x.size].reshape(part_x.shape))
    return out


def _tanh_block(x, out, z, p):
    """out <- x * P(x^2) / Q(x^2) with x clipped, by Horner's rule in place (``out`` may be ``x``)."""
    a, b = _P32, _Q32
    low, high, minus_one, one = _LIMITS
    np.clip(x, low, high, out=out)                       # out = x, clipped
    np.multiply(out, out, out=z)                         # z = x^2
    np.multiply(z, a[-1], out=p)                         # p = P(z), from the top coefficient down
    for c in a[-2:0:-1]:
        p += c
        p *= z
    p += a[0]
    p *= out                                             # p = x P(z); x is not needed after this
    np.multiply(z, b[-1], out=out)                       # out = Q(z)
    for c in b[-2:0:-1]:
        out += c
        out *= z
    out += b[0]
    np.divide(p, out, out=out)
    np.clip(out, minus_one, one, out=out)


def _blocks(x, out, block):
    """Pairs of matching views of ``x`` and ``out``, at most ``block`` numbers each,
    together covering both arrays.

    Arrays contiguous in some axis order -- e.g. the (N, C, H, W) views of batch-last
    memory that :class:`~lenet_core.fast.layers.FastConv2D` returns -- are cut into flat runs;
    others (a slice of rows of such an array) along their outermost axis in memory.
    """
    order = sorted(range(x.ndim), key=lambda axis: -abs(x.strides[axis]))
    x, out = x.transpose(order), out.transpose(order)    # outermost axis in memory first
    if x.flags.c_contiguous and out.flags.c_contiguous:
        x, out = x.reshape(-1), out.reshape(-1)
    if x.size <= block:
        yield x, out
    elif x.ndim == 1:
        for start in range(0, x.size, block):
            yield x[start:start + block], out[start:start + block]
    elif x.size // x.shape[0] > block:                   # one row is too big: cut each row
        for i in range(x.shape[0]):
            yield from _blocks(x[i], out[i], block)
    else:
        rows = block // (x.size // x.shape[0])
        for start in range(0, x.shape[0], rows):
            yield x[start:start + rows], out[start:start + rows]


_local = threading.local()


def _scratch():
    """Two float32 work buffers of :data:`BLOCK` numbers, one pair per thread, kept."""
    if not hasattr(_local, "buffers"):
        _local.buffers = (np.empty(BLOCK, np.float32), np.empty(BLOCK, np.float32))
    return _local.buffers


def fit_tanh_rational(m: int = 4, n: int = 4, x_max: float = X_MAX, iterations: int = 60):
    """Coefficients ``(a0..am), (1, b1..bn)`` of ``x P(x^2) / Q(x^2)`` that minimize the
    largest relative error to ``tanh`` on ``(0, x_max]``, and that error.

    Loeb's linearization (a weighted linear least-squares fit of ``x P - tanh(x) Q``,
    divided by the previous ``Q``) with Lawson's reweighting, which pushes the weight onto
    the points of largest error until the error curve equioscillates (the minimax fit).
    """
    x = np.concatenate([np.linspace(1e-4, x_max, 40_000), np.geomspace(1e-4, 1, 2_000)])
    x.sort()
    z, t = x * x, np.tanh(x)
    weights, q_prev = np.ones_like(x), np.ones_like(x)
    for _ in range(iterations):
        columns = [x * z ** k for k in range(m + 1)] + [-t * z ** k for k in range(1, n + 1)]
        scale = np.sqrt(weights) / (t * q_prev)
        coef, *_ = np.linalg.lstsq(np.stack(columns, axis=1) * scale[:, None], t * scale, rcond=None)
        a, b = coef[:m + 1], np.concatenate([[1.0], coef[m + 1:]])
        q_prev = np.polyval(b[::-1], z)
        error = np.abs(x * np.polyval(a[::-1], z) / q_prev / t - 1)
        weights = weights * error
        weights /= weights.sum()
    return tuple(a), tuple(b), float(error.max())
