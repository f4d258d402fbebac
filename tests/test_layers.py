"""The plain layers (lenet_core.layers): every forward and backward pass checked against central
differences and the loop reference, and the contract every layer keeps."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lenet_core import layers as L
from lenet_core import reference as ref
from lenet_core.gradcheck import check_layer, rel_error

TOL = 1e-7          # gradient checks, float64
SETTINGS = settings(max_examples=30, deadline=None)


def f64(layer):
    """Cast a layer's parameters (and zeroed grads) to float64 in place."""
    for k in list(layer.params):
        layer.params[k] = layer.params[k].astype(np.float64)
        layer.grads[k] = np.zeros_like(layer.params[k])
    return layer


@st.composite
def conv_cases(draw):
    k = draw(st.integers(1, 4))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, 2))
    h = draw(st.integers(max(1, k - 2 * p), k - 2 * p + 6))
    w = draw(st.integers(max(1, k - 2 * p), k - 2 * p + 6))
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 3)), f=draw(st.integers(1, 3)),
                k=k, s=s, p=p, h=h, w=w, seed=draw(st.integers(0, 2**16)))


@SETTINGS
@given(conv_cases())
def test_conv_matches_loop_reference_and_finite_differences(case):
    rng = np.random.default_rng(case["seed"])
    conv = f64(L.Conv2D(case["c"], case["f"], case["k"], case["s"], case["p"], rng=rng))
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    out = conv.forward(x)
    W, b = conv.params["W"], conv.params["b"]
    assert out.shape == conv.output_shape(x.shape)
    np.testing.assert_allclose(out, ref.conv2d_forward_naive(x, W, b, case["s"], case["p"]), rtol=1e-10, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx = conv.backward(dout)
    rdx, rdW, rdb = ref.conv2d_backward_naive(dout, x, W, case["s"], case["p"])
    np.testing.assert_allclose(dx, rdx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.grads["W"], rdW, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.grads["b"], rdb, rtol=1e-10, atol=1e-12)
    errors = check_layer(conv, x, seed=case["seed"])
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("k,s,p,h,w", [
    (5, 1, 0, 5, 5),     # C5: one window covering the whole input
    (5, 3, 0, 5, 5),     # one window, any stride
    (2, 2, 0, 4, 6),     # windows tile the input exactly
    (3, 3, 1, 4, 7),     # ... the padded input
    (2, 2, 0, 5, 4),     # a leftover row: not a tiling, the general col2im
    (3, 1, 0, 3, 4),     # one row of overlapping windows
])
def test_conv_input_gradient_when_windows_tile_the_input(k, s, p, h, w):
    rng = np.random.default_rng(k * 100 + s * 10 + h)
    conv = f64(L.Conv2D(2, 3, k, s, p, rng=rng))
    x = rng.standard_normal((3, 2, h, w))
    dout = rng.standard_normal(conv.forward(x).shape)
    dx = conv.backward(dout)
    rdx, _, _ = ref.conv2d_backward_naive(dout, x, conv.params["W"], s, p)
    np.testing.assert_allclose(dx, rdx, rtol=1e-10, atol=1e-12)


@st.composite
def pool_cases(draw):
    k = draw(st.integers(1, 3))
    s = draw(st.one_of(st.none(), st.integers(1, 3)))
    return dict(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)), k=k, s=s,
                h=draw(st.integers(k, k + 6)), w=draw(st.integers(k, k + 6)), seed=draw(st.integers(0, 2**16)))


@SETTINGS
@given(pool_cases())
def test_avgpool_matches_reference_and_finite_differences(case):
    rng = np.random.default_rng(case["seed"])
    pool = L.AvgPool2D(case["k"], case["s"])
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    out = pool.forward(x)
    np.testing.assert_allclose(out, ref.avgpool_forward_naive(x, case["k"], case["s"]), rtol=1e-12)
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(pool.backward(dout), ref.avgpool_backward_naive(dout, x, case["k"], case["s"]),
                               rtol=1e-12, atol=1e-15)
    assert check_layer(pool, x)["x"] < TOL


@SETTINGS
@given(pool_cases())
def test_maxpool_matches_reference_and_finite_differences(case):
    rng = np.random.default_rng(case["seed"])
    pool = L.MaxPool2D(case["k"], case["s"])
    shape = (case["n"], case["c"], case["h"], case["w"])
    # distinct values, well separated, so that +-h never changes which input wins
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.1 + 0.0
    out = pool.forward(x)
    np.testing.assert_array_equal(out, ref.maxpool_forward_naive(x, case["k"], case["s"]))
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(pool.backward(dout), ref.maxpool_backward_naive(dout, x, case["k"], case["s"]),
                               rtol=1e-12)
    assert check_layer(pool, x)["x"] < TOL


@pytest.mark.parametrize("k,s", [(2, 2), (3, 1), (2, 1), (3, 2)])
def test_maxpool_ties_route_gradient_to_first_maximum_in_row_major_order(k, s):
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 1:3, 1:4] = 7.0      # a plateau of tied maxima
    pool = L.MaxPool2D(k, s)
    out = pool.forward(x)
    dout = np.arange(1, out.size + 1, dtype=float).reshape(out.shape)
    dx = pool.backward(dout)
    np.testing.assert_array_equal(dx, ref.maxpool_backward_naive(dout, x, k, s))
    # all-equal input: every window's gradient lands on its top-left element
    flat = np.ones((1, 1, 4, 4))
    pool.forward(flat)
    g = pool.backward(np.ones(pool.output_shape(flat.shape)))
    expected = np.zeros_like(flat)
    ho = (4 - k) // s + 1
    for i in range(ho):
        for j in range(ho):
            expected[0, 0, i * s, j * s] += 1
    np.testing.assert_array_equal(g, expected)


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 7), st.integers(1, 6), st.integers(0, 2**16))
def test_linear_finite_differences(n, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    lin = f64(L.Linear(d_in, d_out, rng=rng))
    assert lin.params["W"].shape == (d_out, d_in)
    x = rng.standard_normal((n, d_in))
    np.testing.assert_allclose(lin.forward(x), x @ lin.params["W"].T + lin.params["b"])
    errors = check_layer(lin, x, seed=seed)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("layer_cls", [L.Tanh, L.ReLU, L.Sigmoid, L.Flatten])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4, 5)])
def test_parameterless_layers_finite_differences(layer_cls, shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    if layer_cls is L.ReLU:  # keep away from the kink at 0
        x = np.where(np.abs(x) < 1e-3, 0.5, x)
    assert check_layer(layer_cls(), x)["x"] < TOL


def test_activation_values():
    x = np.array([[-1e4, -2.0, 0.0, 2.0, 1e4]])
    np.testing.assert_allclose(L.Sigmoid().forward(x), 1 / (1 + np.exp(-np.clip(x, -700, 700))), atol=1e-15)
    assert np.all(np.isfinite(L.Sigmoid().forward(x)))
    np.testing.assert_array_equal(L.ReLU().forward(x), np.maximum(x, 0))
    np.testing.assert_allclose(L.Tanh().forward(x), np.tanh(x))


def test_dropout_scaling_modes_and_seed():
    x = np.ones((200, 50))
    d = L.Dropout(0.25, seed=3)
    out = d.forward(x)
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / 0.75)
    assert abs(kept.mean() - 0.75) < 0.02
    dx = d.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx, out)            # same mask, same scale
    np.testing.assert_array_equal(L.Dropout(0.25, seed=3).forward(x), out)  # seedable
    d.eval()
    np.testing.assert_array_equal(d.forward(x), x)
    np.testing.assert_array_equal(d.backward(x), x)
    with pytest.raises(ValueError):
        L.Dropout(1.0)
    # gradient check with a fixed mask: reseed before every forward
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((4, 6))
    drop = L.Dropout(0.5, seed=9)
    orig = drop.forward

    def fixed_forward(z):
        drop.rng = np.random.default_rng(9)
        return orig(z)

    drop.forward = fixed_forward
    assert check_layer(drop, xs)["x"] < TOL


def _all_layers():
    rng = np.random.default_rng(0)
    return [
        (L.Conv2D(2, 3, 3, stride=2, padding=1, rng=rng), (2, 2, 7, 7)),
        (L.AvgPool2D(2), (2, 3, 5, 5)),
        (L.MaxPool2D(3, 2), (2, 3, 7, 6)),
        (L.Linear(5, 4, rng=rng), (3, 5)),
        (L.Flatten(), (2, 3, 4)),
        (L.Tanh(), (2, 3)),
        (L.ReLU(), (2, 3)),
        (L.Sigmoid(), (2, 3)),
        (L.Dropout(0.3, seed=1), (4, 5)),
    ]


@pytest.mark.parametrize("layer,shape", _all_layers(), ids=lambda v: type(v).__name__ if isinstance(v, L.Layer) else "")
def test_backward_never_mutates_dout_and_overwrites_grads(layer, shape):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    x_copy = x.copy()
    out = layer.forward(x)
    np.testing.assert_array_equal(x, x_copy)           # forward leaves its input alone
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dout_copy = dout.copy()
    dx1 = layer.backward(dout)
    np.testing.assert_array_equal(dout, dout_copy)
    assert dx1.shape == x.shape
    g1 = {k: v.copy() for k, v in layer.grads.items()}
    dx2 = layer.backward(dout)
    np.testing.assert_array_equal(dx1, dx2)
    for k in g1:                                        # overwritten, not accumulated
        np.testing.assert_array_equal(layer.grads[k], g1[k])
        assert layer.grads[k].shape == layer.params[k].shape
    # backward never touches the weights
    params_before = {k: v.copy() for k, v in layer.params.items()}
    layer.backward(dout)
    for k in params_before:
        np.testing.assert_array_equal(layer.params[k], params_before[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layers_compute_in_parameter_dtype(dtype):
    conv = L.Conv2D(1, 2, 3, dtype=dtype)
    lin = L.Linear(4, 2, dtype=dtype)
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5))      # float64 input
    out = conv.forward(x)
    assert out.dtype == dtype
    assert conv.backward(np.ones_like(out)).dtype == dtype
    assert conv.grads["W"].dtype == dtype
    assert lin.forward(np.ones((3, 4), dtype=np.float64)).dtype == dtype
    for layer in (L.Tanh(), L.ReLU(), L.Sigmoid(), L.AvgPool2D(2), L.MaxPool2D(2)):
        y = layer.forward(np.ones((1, 1, 4, 4), dtype=np.float32))
        assert y.dtype == np.float32
        assert layer.backward(np.ones_like(y)).dtype == np.float32


def test_clear_errors_for_bad_use():
    conv = L.Conv2D(3, 4, 3)
    with pytest.raises(ValueError, match="4-D input"):
        conv.forward(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="3 input channel"):
        conv.forward(np.zeros((1, 1, 8, 8)))
    with pytest.raises(ValueError, match="smaller than"):
        conv.forward(np.zeros((1, 3, 2, 2)))
    with pytest.raises(RuntimeError, match="before forward"):
        L.Conv2D(1, 1, 3).backward(np.zeros((1, 1, 2, 2)))
    with pytest.raises(RuntimeError, match="before forward"):
        L.MaxPool2D(2).backward(np.zeros((1, 1, 2, 2)))
    out = conv.forward(np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="dout has shape"):
        conv.backward(np.zeros((2, 4, 5, 5)))
    lin = L.Linear(10, 2)
    with pytest.raises(ValueError, match=r"\(N, 10\)"):
        lin.forward(np.zeros((2, 9)))
    with pytest.raises(ValueError, match="Flatten"):
        lin.forward(np.zeros((2, 1, 10, 1)))
    with pytest.raises(ValueError, match="kernel_size"):
        L.Conv2D(1, 1, 0)
    with pytest.raises(ValueError):
        L.AvgPool2D(2).forward(np.zeros((1, 1, 1, 1)))
    assert out.shape == (2, 4, 6, 6)


def test_build_layer_round_trip():
    for layer, _ in _all_layers():
        cfg = dict(type=type(layer).__name__, **layer.get_config())
        twin = L.build_layer(cfg)
        assert type(twin) is type(layer) and twin.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="unknown layer type"):
        L.build_layer({"type": "Conv3D"})


def test_rel_error_behavior():
    a = np.array([1.0, 2.0, 3.0])
    assert rel_error(a, a) == 0
    assert rel_error(a, -a) == 1
    assert 1e-9 < rel_error(a, a * (1 + 1e-8)) < 1e-7
