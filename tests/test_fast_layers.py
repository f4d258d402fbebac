"""The fast engine's layers (lenet_core.fast.layers) compute what the plain layers compute.

Over random shapes, strides, paddings and memory layouts, in training and in evaluation
mode (where the convolution works in chunks of rows): float64 to 1e-12, float32 to 1e-5,
for the outputs, dx and every gradient. Then what only the engine does: batch-last copies,
chunk sizes, the choice of tanh.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lenet_core import layers as L
from lenet_core.fast import layers as F
from lenet_core.fast import tanh as fast_tanh

SETTINGS = settings(max_examples=40, deadline=None)
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}


def assert_same(fast, plain, dtype, what):
    """Equal up to ``TOLERANCE[dtype]`` relative to the array's largest magnitude."""
    fast, plain = np.asarray(fast), np.asarray(plain)
    assert fast.shape == plain.shape and fast.dtype == plain.dtype, what
    tol = TOLERANCE[dtype]
    scale = max(1.0, float(np.abs(plain).max(initial=0)))
    np.testing.assert_allclose(fast, plain, rtol=tol, atol=tol * scale, err_msg=what)


def twins(plain_layer):
    """The plain layer and its fast twin with copies of the same parameters."""
    fast = F.FAST_TWINS[type(plain_layer)].__new__(F.FAST_TWINS[type(plain_layer)])
    fast.__dict__.update(plain_layer.__dict__)
    fast.params = {k: v.copy() for k, v in plain_layer.params.items()}
    fast.grads = {k: np.zeros_like(v) for k, v in fast.params.items()}
    if isinstance(fast, F.FastConv2D):
        fast._cols = None
    return plain_layer, fast


def layouts(x):
    """The same values in NCHW memory and in the batch-last memory the fast engine hands on."""
    return [x, np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)] if x.ndim == 4 else [x]


def compare(plain, fast, x, dtype, rng, training=True):
    for layer in (plain, fast):
        layer.train() if training else layer.eval()
    for xi in layouts(x):
        out_p, out_f = plain.forward(xi), fast.forward(xi)
        assert_same(out_f, out_p, dtype, "forward")
        dout = rng.standard_normal(out_p.shape).astype(dtype)
        for dlayout in layouts(dout):
            dx_p, dx_f = plain.backward(dlayout), fast.backward(dlayout)
            assert_same(dx_f, dx_p, dtype, "dx")
            for key in plain.grads:
                assert_same(fast.grads[key], plain.grads[key], dtype, f"d{key}")


@st.composite
def conv_cases(draw):
    k = draw(st.integers(1, 5))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, 2))
    return dict(n=draw(st.integers(1, 20)), c=draw(st.integers(1, 4)), f=draw(st.integers(1, 5)), k=k, s=s, p=p,
                h=draw(st.integers(max(1, k - 2 * p), k - 2 * p + 9)),
                w=draw(st.integers(max(1, k - 2 * p), k - 2 * p + 9)),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                training=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


@SETTINGS
@given(conv_cases())
def test_conv_equals_the_plain_layer(case):
    rng = np.random.default_rng(case["seed"])
    plain, fast = twins(L.Conv2D(case["c"], case["f"], case["k"], case["s"], case["p"], dtype=case["dtype"],
                                 rng=rng))
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(case["dtype"])
    compare(plain, fast, x, case["dtype"], rng, training=case["training"])
    assert fast.backward(np.ones(fast.output_shape(x.shape), case["dtype"]), input_grad=False) is None


@SETTINGS
@given(conv_cases(), st.sampled_from([L.Tanh, L.ReLU]), st.sampled_from([L.AvgPool2D, L.MaxPool2D]),
       st.integers(1, 3), st.sampled_from([1, 700, 10**9]))
def test_conv_activation_and_pool_in_chunks_equal_the_three_plain_layers(case, act, pool, k, chunk_bytes):
    """Inference computes conv + activation + pool a few output rows at a time, in the cache."""
    rng = np.random.default_rng(case["seed"])
    plain, fast = twins(L.Conv2D(case["c"], case["f"], case["k"], case["s"], case["p"], dtype=case["dtype"],
                                 rng=rng))
    x = rng.standard_normal((case["n"], case["c"], case["h"] + 3, case["w"] + 3)).astype(case["dtype"])
    _, _, h_out, w_out = plain.output_shape(x.shape)
    if min(h_out, w_out) < k:
        return
    acts, pools = twins(act()), twins(pool(k))
    expected = pools[0].forward(acts[0].forward(plain.forward(x)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(F, "INFERENCE_CHUNK_BYTES", chunk_bytes)
        fast.eval()
        assert_same(fast.infer_then(x, acts[1], pools[1]), expected, case["dtype"], "infer_then")
    assert fast.cache is None and acts[1].cache is None and pools[1].cache is None


@st.composite
def pool_cases(draw):
    k = draw(st.integers(1, 4))
    return dict(n=draw(st.integers(1, 20)), c=draw(st.integers(1, 4)), k=k,
                s=draw(st.one_of(st.none(), st.integers(1, 4))),
                h=draw(st.integers(k, k + 9)), w=draw(st.integers(k, k + 9)),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                ties=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


@SETTINGS
@given(pool_cases(), st.sampled_from([L.AvgPool2D, L.MaxPool2D]))
def test_pools_equal_the_plain_layers(case, cls):
    rng = np.random.default_rng(case["seed"])
    shape = (case["n"], case["c"], case["h"], case["w"])
    x = rng.standard_normal(shape)
    if case["ties"]:                               # plateaus of tied maxima: the same winner in both
        x = np.round(x)
    plain, fast = twins(cls(case["k"], case["s"]))
    compare(plain, fast, x.astype(case["dtype"]), case["dtype"], rng)


@SETTINGS
@given(st.sampled_from([L.Tanh, L.ReLU]), st.integers(0, 3), st.sampled_from([np.float32, np.float64]),
       st.integers(0, 2**16))
def test_activations_equal_the_plain_layers(cls, size, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = [(3, 5), (4, 16, 10, 10), (2, 6, 28, 28), (7, 120)][size]   # small maps and C3/C1-sized ones
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    plain, fast = twins(cls())
    compare(plain, fast, x, dtype, rng)


def _fast_layers():
    rng = np.random.default_rng(0)
    return [
        (F.FastConv2D(2, 3, 3, stride=2, padding=1, rng=rng), (2, 2, 7, 7)),
        (F.FastConv2D(3, 4, 5, rng=rng), (40, 3, 9, 9)),
        (F.FastAvgPool2D(2), (2, 3, 5, 5)),
        (F.FastMaxPool2D(3, 2), (2, 3, 7, 6)),
        (F.FastMaxPool2D(2), (2, 3, 6, 6)),
        (F.FastTanh(), (2, 16, 10, 10)),
        (F.FastReLU(), (2, 3)),
    ]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layer,shape", _fast_layers(), ids=lambda v: type(v).__name__ if isinstance(v, L.Layer) else "")
def test_backward_never_mutates_its_input_and_overwrites_grads(layer, shape, training, monkeypatch):
    monkeypatch.setattr(F, "INFERENCE_CHUNK_BYTES", 1)
    layer.train() if training else layer.eval()
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    x_copy = x.copy()
    out = layer.forward(x)
    np.testing.assert_array_equal(x, x_copy)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dout_copy = dout.copy()
    dx1 = np.array(layer.backward(dout))
    np.testing.assert_array_equal(dout, dout_copy)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    params = {k: v.copy() for k, v in layer.params.items()}
    np.testing.assert_array_equal(layer.backward(dout), dx1)
    for k in grads:
        np.testing.assert_array_equal(layer.grads[k], grads[k])
        np.testing.assert_array_equal(layer.params[k], params[k])


def test_the_fast_layers_are_the_plain_layers_to_everything_outside():
    for plain_cls, fast_cls in F.FAST_TWINS.items():
        assert issubclass(fast_cls, plain_cls)
        assert L.layer_type(fast_cls.__new__(fast_cls)) == plain_cls.__name__
    conv = F.FastConv2D(1, 6, 5, rng=0)
    assert repr(conv) == repr(L.Conv2D(1, 6, 5)) and conv.describe() == "Conv2D 1->6 5x5"
    with pytest.raises(ValueError, match="1 input channel"):
        conv.forward(np.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="smaller than"):
        conv.forward(np.zeros((1, 1, 4, 4)))
    with pytest.raises(RuntimeError, match="before forward"):
        F.FastMaxPool2D(2).backward(np.zeros((1, 1, 2, 2)))


@pytest.mark.parametrize("n", [1, 15, 16, 17, 40])
@pytest.mark.parametrize("padding", [0, 2])
def test_batch_last_copy_in_blocks_of_images(n, padding):
    """The input is copied to (C, H, W, N) order 16 images at a time: check every block size."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 2, 6, 5))
    np.testing.assert_array_equal(F._batch_last(x), x.transpose(1, 2, 3, 0))
    plain, fast = twins(L.Conv2D(2, 3, 3, 1, padding, dtype=np.float64, rng=rng))
    np.testing.assert_allclose(fast.forward(x), plain.forward(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c, f, k, s, p, hw, n", [(1, 6, 5, 1, 0, 32, 40), (6, 16, 5, 1, 0, 14, 23),
                                                   (3, 4, 3, 2, 1, 11, 17)])
def test_inference_row_chunks_really_run(monkeypatch, c, f, k, s, p, hw, n):
    """With a small chunk size the chunked path runs, a given number of rows per product."""
    rng = np.random.default_rng(0)
    plain, fast = twins(L.Conv2D(c, f, k, stride=s, padding=p, rng=1))
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    w_out = fast.output_shape(x.shape)[3]
    rows = 3
    monkeypatch.setattr(F, "INFERENCE_CHUNK_BYTES", rows * c * k * k * w_out * n * 4)
    assert fast._rows_per_product(w_out, n, 4) == rows
    products = []
    original = F.FastConv2D._product_of_rows
    monkeypatch.setattr(F.FastConv2D, "_product_of_rows",
                        lambda self, xp, i0, i1, *a: products.append(i1 - i0) or original(self, xp, i0, i1, *a))
    expected = L.AvgPool2D(2).forward(np.tanh(plain.forward(x)))
    assert_same(fast.eval().infer_then(x, F.FastTanh(), F.FastAvgPool2D(2)), expected, np.float32, "chunks")
    assert products and max(products) <= rows


def test_tanh_chooses_its_function_by_one_images_size_never_by_the_batch(monkeypatch):
    """float32 maps of >= RATIONAL_MIN_FEATURES numbers per image use the rational function
    (where it pays: here it is forced), smaller ones np.tanh; an image gets bit-identical
    activations alone or in any batch."""
    monkeypatch.setenv("LENET_TANH", "rational")
    rng = np.random.default_rng(0)
    layer = F.FastTanh()
    big = (rng.standard_normal((40, 16, 10, 10)) * 2).astype(np.float32)     # 1,600 per image (C3)
    small = (rng.standard_normal((40, 120)) * 2).astype(np.float32)          # 120 per image (C5)
    np.testing.assert_array_equal(layer.forward(big), fast_tanh.rational_tanh(big))
    np.testing.assert_array_equal(layer.forward(small), np.tanh(small))
    for x in (big, small):
        together = layer.forward(x)
        for i in (0, 17):
            np.testing.assert_array_equal(layer.forward(x[i:i + 1])[0], together[i])
    x64 = big.astype(np.float64)
    np.testing.assert_array_equal(layer.forward(x64), np.tanh(x64))
