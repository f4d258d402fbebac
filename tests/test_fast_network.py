"""FastSequential and the engine switch (lenet_core.fast.network): the fast engine's network gives
the plain network's numbers, with its fusions, and shares the plain one's weights and gradients."""
import numpy as np
import pytest

import lenet_core as lc
from lenet_core import layers as L
from lenet_core.fast import FastSequential, engine_of, to_fast, to_plain
from lenet_core.fast import layers as F
from lenet_core.network import Sequential


@pytest.mark.parametrize("variant", ["classic", "modern"])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("training", [True, False])
def test_fast_lenet5_equals_the_plain_one(monkeypatch, variant, dtype, tol, training):
    """Outputs, dx and every gradient of a whole LeNet-5, the fast engine against the plain layers
    (in evaluation mode with one output row per product, so that every chunked path runs)."""
    monkeypatch.setattr(F, "INFERENCE_CHUNK_BYTES", 1)
    plain = lc.lenet5(variant, seed=3, dtype=dtype, engine="plain")
    fast = lc.lenet5(variant, seed=3, dtype=dtype)
    assert type(fast) is FastSequential and type(plain) is Sequential
    for model in (plain, fast):
        model.train() if training else model.eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 1, 32, 32)).astype(dtype)
    out_p, out_f = plain.forward(x), fast.forward(x)
    scale = np.abs(out_p).max()
    np.testing.assert_allclose(out_f, out_p, rtol=tol, atol=tol * scale)
    dout = rng.standard_normal(out_p.shape).astype(dtype)
    dx_p, dx_f = plain.backward(dout), fast.backward(dout)
    np.testing.assert_allclose(dx_f, dx_p, rtol=tol, atol=tol * np.abs(dx_p).max())
    for (name, _, g_f), (_, _, g_p) in zip(fast.params_and_grads(), plain.params_and_grads()):
        np.testing.assert_allclose(g_f, g_p, rtol=tol, atol=tol * np.abs(g_p).max(), err_msg=name)
    np.testing.assert_allclose(fast.infer(x), out_p, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("variant", ["classic", "modern"])
@pytest.mark.parametrize("chunk_bytes", [1, 100_000, None])
@pytest.mark.parametrize("size", [32, 31])
def test_infer_fuses_conv_activation_and_pool_and_matches_forward(monkeypatch, variant, chunk_bytes, size):
    """Sequential.infer pools each activated chunk in cache; it returns forward's numbers (for
    odd map sizes too, where the pool drops the last row), and leaves no cache behind."""
    if chunk_bytes is not None:
        monkeypatch.setattr(F, "INFERENCE_CHUNK_BYTES", chunk_bytes)
    x = np.random.default_rng(0).random((12, 1, size, size), dtype=np.float32)
    model = lc.lenet5(variant, seed=3).eval() if size == 32 else to_fast(Sequential(
        [L.Conv2D(1, 4, 5, rng=0), L.Tanh() if variant == "classic" else L.ReLU(),
         L.AvgPool2D(2) if variant == "classic" else L.MaxPool2D(2), L.Flatten()])).eval()
    expected = model.forward(x)
    fused = []
    chunked = F.FastConv2D._infer_in_row_chunks
    monkeypatch.setattr(F.FastConv2D, "_infer_in_row_chunks", lambda self, *a: fused.append(self) or chunked(self, *a))
    np.testing.assert_allclose(model.infer(x), expected, rtol=1e-6, atol=1e-7)
    if chunk_bytes == 1:                             # every conv + activation + pool ran fused
        assert len(fused) == (2 if size == 32 else 1)
    assert all(layer.cache is None for layer in model.layers)
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.ones_like(expected))


def test_infer_does_not_fuse_what_it_cannot_do_exactly(monkeypatch):
    """Overlapping pooling windows, a pool subclass and training mode get the plain composition."""
    monkeypatch.setattr(F, "INFERENCE_CHUNK_BYTES", 1)
    calls = []

    class CountingPool(F.FastAvgPool2D):
        def forward(self, x):
            calls.append(x.shape)
            return super().forward(x)

    x = np.random.default_rng(2).random((5, 1, 12, 12), dtype=np.float32)
    for pool in (L.MaxPool2D(3, stride=2), CountingPool(2)):
        model = to_fast(Sequential([L.Conv2D(1, 3, 3, rng=0), L.ReLU(), pool, L.Flatten()])).eval()
        np.testing.assert_allclose(model.infer(x), model.forward(x), rtol=1e-6)
    assert calls == [(5, 3, 10, 10)] * 2            # the subclass ran its own forward, twice
    model = lc.lenet5("classic", seed=0).train()
    x = np.random.default_rng(3).random((4, 1, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(model.infer(x), model.forward(x), rtol=1e-6)


def test_infer_respects_a_convolution_subclass_that_overrides_forward():
    """Chapter 10 swaps in loop engines by overriding forward; fusion must not bypass a subclass."""
    calls = []

    class CountingConv(F.FastConv2D):
        def forward(self, x):
            calls.append(x.shape)
            return super().forward(x)

    model = to_fast(Sequential([CountingConv(1, 2, 3, rng=0), L.Tanh(), L.AvgPool2D(2), L.Flatten()])).eval()
    x = np.random.default_rng(1).random((4, 1, 6, 6), dtype=np.float32)
    out = model.infer(x)
    assert calls == [(4, 1, 6, 6)]
    np.testing.assert_allclose(out, model.forward(x), rtol=1e-6)


def test_twins_share_weights_and_gradients():
    plain = lc.lenet5("classic", seed=0, engine="plain")
    fast = to_fast(plain)
    assert to_fast(fast) is fast and to_plain(plain) is plain
    for (_, p_a, _), (_, p_b, _) in zip(plain.params_and_grads(), fast.params_and_grads()):
        assert p_a is p_b
    x = np.random.default_rng(0).random((4, 1, 32, 32), dtype=np.float32)
    loss_fn = lc.SoftmaxCrossEntropy()
    loss_fn.forward(fast.forward(x), np.arange(4))
    fast.backward(loss_fn.backward())
    for (_, _, g_a), (_, _, g_b) in zip(plain.params_and_grads(), fast.params_and_grads()):
        assert g_a is g_b                        # the plain model sees the fast one's gradients
    before = plain.layers[0].params["W"].copy()
    lc.SGD(plain, lr=0.1).step()                 # an optimizer on the plain model moves both
    assert not np.array_equal(fast.layers[0].params["W"], before)
    back = to_plain(fast)
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in plain.layers]
    assert back.get_config() == fast.get_config() == plain.get_config()


def test_engine_of_and_the_engine_argument():
    assert engine_of(lc.lenet5()) == "fast" and engine_of(lc.lenet5(engine="plain")) == "plain"
    assert engine_of(lc.mlp(seed=0)) == "fast" and engine_of(lc.mlp(seed=0, engine="plain")) == "plain"

    class LoopConv(L.Conv2D):
        pass

    assert engine_of(Sequential([LoopConv(1, 1, 3), L.Tanh()])) is None
    mixed = Sequential([F.FastConv2D(1, 1, 3), L.Tanh()])
    assert engine_of(mixed) is None
    with pytest.raises(ValueError, match="engine"):
        lc.lenet5(engine="turbo")
    twin = FastSequential.from_config(lc.lenet5(engine="plain").get_config())
    assert engine_of(twin) == "fast"


def test_the_passes_run_blas_on_one_thread_and_leave_it_as_it_was(monkeypatch):
    from lenet_core.fast import threads
    seen = []
    model = lc.lenet5("classic", seed=0)
    original = F.FastConv2D.forward
    monkeypatch.setattr(F.FastConv2D, "forward", lambda self, x: seen.append(threads.blas_threads()) or original(self, x))
    before = threads.blas_threads()
    x = np.random.default_rng(0).random((4, 1, 32, 32), dtype=np.float32)
    model.backward(np.ones_like(model.forward(x)))
    model.eval().infer(x)
    assert seen and set(seen) <= {1, None}
    assert threads.blas_threads() == before
