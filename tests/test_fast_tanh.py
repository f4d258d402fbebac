"""The float32 tanh of lenet_core.fast.tanh: accuracy, special values, memory layouts."""
from __future__ import annotations

import numpy as np
import pytest

from lenet_core.fast import tanh as fastmath


def _ulp_error(y32, x32):
    exact = np.tanh(x32.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(y32.astype(np.float64) - exact) / ulp, np.abs(y32 - exact)


def test_accuracy_over_every_scale_of_float32():
    """Within a few units in the last place everywhere (an exhaustive run over all float32
    values in [0, 9.5] found at most 6.4 ulp, 3.8e-7 absolute; the mean is 0.08 ulp)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([
        np.linspace(-10, 10, 2_000_001, dtype=np.float32),
        np.geomspace(1e-38, 10, 200_000).astype(np.float32),
        (rng.standard_normal(500_000) * 3).astype(np.float32),
    ])
    ulps, absolute = _ulp_error(fastmath.rational_tanh(x), x)
    assert ulps.max() <= 8 and absolute.max() <= 4e-7
    assert np.median(ulps[np.abs(x) > 0.1]) <= 1


def test_odd_exact_at_zero_saturating_and_special_values():
    x = np.array([0.0, -0.0, 9.0, 9.5, 50, -50, np.inf, -np.inf, np.nan, 1e-30, -1e-30], np.float32)
    y = fastmath.rational_tanh(x)
    assert y[0] == 0 and not np.signbit(y[0]) and y[1] == 0 and np.signbit(y[1])
    assert list(y[2:8]) == [1, 1, 1, -1, 1, -1]
    assert np.isnan(y[8]) and y[9] == np.float32(1e-30) and y[10] == np.float32(-1e-30)
    grid = np.linspace(-12, 12, 100_001, dtype=np.float32)
    out = fastmath.rational_tanh(grid)
    np.testing.assert_array_equal(out, -fastmath.rational_tanh(-grid))
    assert np.abs(out).max() <= 1                   # so 1 - tanh^2, the derivative, is never negative


@pytest.mark.parametrize("make", [
    lambda a: a,                                     # C-contiguous, several blocks
    lambda a: a.transpose(3, 0, 1, 2),               # NCHW view of batch-last memory
    lambda a: a[:, 3:9],                             # a slice of rows: not contiguous
    lambda a: a[..., ::3],                           # strided
])
def test_any_memory_layout_and_in_place(make):
    base = (np.random.default_rng(1).standard_normal((6, 28, 28, 130)) * 2).astype(np.float32)
    x = make(base)
    expected = np.tanh(x.astype(np.float64))
    y = fastmath.rational_tanh(x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.abs(y - expected).max() <= 4e-7
    same = x.copy(order="K")
    assert fastmath.rational_tanh(same, out=same) is same
    np.testing.assert_array_equal(same, y)
    x_in_place = base.copy()
    view = make(x_in_place)
    fastmath.rational_tanh(view, out=view)
    np.testing.assert_array_equal(view, y)


def test_tanh_is_the_rational_function_for_float32_and_numpy_otherwise():
    x = np.linspace(-3, 3, 1001, dtype=np.float32)
    expected = fastmath.rational_tanh(x) if fastmath.rational_pays() else np.tanh(x)
    np.testing.assert_array_equal(fastmath.tanh(x), expected)
    out = np.empty_like(x)
    assert fastmath.tanh(x, out=out) is out
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(fastmath.tanh(x64), np.tanh(x64))           # float64: gradient checks
    np.testing.assert_array_equal(fastmath.tanh(x, out=np.empty(x.shape)), np.tanh(x))


def test_reversed_and_overlapping_arrays():
    a = (np.random.default_rng(3).standard_normal((300, 40)) * 2).astype(np.float32)
    expected = fastmath.rational_tanh(a.copy())
    np.testing.assert_array_equal(fastmath.rational_tanh(a[::-1, ::-1], block=500), expected[::-1, ::-1])
    b = a.ravel().copy()
    fastmath.rational_tanh(b[:-1], out=b[1:], block=64)       # out is x shifted by one number
    np.testing.assert_array_equal(b[1:], expected.ravel()[:-1])


def test_rational_tanh_refuses_what_it_cannot_do():
    assert fastmath.rational_tanh(np.zeros(0, np.float32)).shape == (0,)
    with pytest.raises(TypeError, match="float32"):
        fastmath.rational_tanh(np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        fastmath.rational_tanh(np.zeros(3, np.float32), out=np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="float32 NumPy array"):
        fastmath.rational_tanh(np.zeros(3, np.float32), out=[0, 0, 0])


def test_the_coefficients_are_the_minimax_fit():
    """TANH_P and TANH_Q are what fit_tanh_rational computes, not numbers from elsewhere."""
    p, q, max_relative_error = fastmath.fit_tanh_rational(4, 4)
    np.testing.assert_allclose(p, fastmath.TANH_P, rtol=1e-6)
    np.testing.assert_allclose(q, fastmath.TANH_Q, rtol=1e-6)
    assert max_relative_error < 3e-8


@pytest.mark.parametrize("block", [100, 4000, 65_536, 10**7])
def test_block_size_changes_speed_not_values(block):
    x = (np.random.default_rng(2).standard_normal((40, 3000)) * 2).astype(np.float32)
    np.testing.assert_array_equal(fastmath.rational_tanh(x, block=block), fastmath.rational_tanh(x))
    with pytest.raises(ValueError, match="block"):
        fastmath.rational_tanh(x, block=0)


@pytest.mark.parametrize("wanted, rational", [("rational", True), ("numpy", False)])
def test_the_environment_can_choose_the_function(monkeypatch, wanted, rational):
    monkeypatch.setenv("LENET_TANH", wanted)
    assert fastmath.rational_pays() is rational
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    np.testing.assert_array_equal(fastmath.tanh(x), fastmath.rational_tanh(x) if rational else np.tanh(x))
    monkeypatch.setenv("LENET_TANH", "fastest")
    with pytest.raises(ValueError, match="LENET_TANH"):
        fastmath.rational_pays()


def test_the_measured_choice_is_made_once_per_process(monkeypatch):
    monkeypatch.delenv("LENET_TANH", raising=False)
    first = fastmath.rational_pays()
    assert all(fastmath.rational_pays() is first for _ in range(3))
