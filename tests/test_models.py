import numpy as np
import pytest

import lenet_core as lc
from lenet_core.gradcheck import check_model
from lenet_core.network import Sequential


@pytest.fixture(scope="module")
def mnist_small(mnist_10k_dir):
    """The first 100 training digits, prepared as LeNet-5 input."""
    from lenet_core.mnist import load_mnist
    from lenet_core.preprocess import prepare_lenet_input
    images, labels = load_mnist("train", root=mnist_10k_dir, download=False)
    return prepare_lenet_input(images[:100]), labels[:100].astype(np.int64)


@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_lenet5_shapes_and_parameter_count(variant):
    model = lc.lenet5(variant, seed=0)
    assert model.num_params() == 61_706
    shapes = {name: p.shape for name, p, _ in model.params_and_grads()}
    assert shapes == {"0.W": (6, 1, 5, 5), "0.b": (6,), "3.W": (16, 6, 5, 5), "3.b": (16,),
                      "6.W": (120, 16, 5, 5), "6.b": (120,), "9.W": (84, 120), "9.b": (84,),
                      "11.W": (10, 84), "11.b": (10,)}
    out = model.forward(np.zeros((3, 1, 32, 32), np.float32))
    assert out.shape == (3, 10) and out.dtype == np.float32
    kinds = [type(layer).__name__ for layer in model]
    act, pool = ("Tanh", "AvgPool2D") if variant == "classic" else ("ReLU", "MaxPool2D")
    assert kinds == ["Conv2D", act, pool, "Conv2D", act, pool, "Conv2D", act, "Flatten", "Linear", act, "Linear"]


def test_summary_lists_shapes_params_and_macs():
    text = lc.lenet5("classic").summary(print_fn=None)
    for fragment in ["(6, 28, 28)", "(6, 14, 14)", "(16, 10, 10)", "(16, 5, 5)", "(120, 1, 1)", "(84,)", "(10,)",
                     "Total parameters: 61,706", "48,120", "10,164", "850"]:
        assert fragment in text
    assert "Multiply-adds per image (forward): 422,824" in text


def test_same_seed_same_weights_and_different_seed_different_weights():
    a, b, c = lc.lenet5(seed=1), lc.lenet5(seed=1), lc.lenet5(seed=2)
    for (_, pa, _), (_, pb, _), (_, pc, _) in zip(a.params_and_grads(), b.params_and_grads(), c.params_and_grads()):
        np.testing.assert_array_equal(pa, pb)
        assert not np.array_equal(pa, pc)


@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_whole_network_gradient_check(variant):
    model = lc.lenet5(variant, seed=3, dtype=np.float64)
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 32, 32))
    y = np.array([3, 7])
    errors = check_model(model, x, y, max_per_param=15)
    assert set(errors) == {"x", "0.W", "0.b", "3.W", "3.b", "6.W", "6.b", "9.W", "9.b", "11.W", "11.b"}
    assert max(errors.values()) < 1e-7, errors


def test_initial_loss_is_close_to_ln10():
    model = lc.lenet5("classic", seed=0)
    x = np.random.default_rng(0).random((256, 1, 32, 32)).astype(np.float32)
    loss = lc.SoftmaxCrossEntropy().forward(model.forward(x), np.arange(256) % 10)
    assert abs(loss - np.log(10)) < 0.15


@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_overfits_100_images(variant, mnist_small):
    x, y = mnist_small
    model = lc.lenet5(variant, seed=0)
    opt = lc.Adam(model, lr=3e-3)
    loss_fn = lc.SoftmaxCrossEntropy()
    for step in range(200):                       # full batch: the 100 images every step
        loss_fn.forward(model.forward(x), y)
        model.backward(loss_fn.backward())
        opt.step()
        if step % 10 == 9 and np.mean(model.forward(x).argmax(1) == y) == 1.0:
            break
    assert np.mean(model.forward(x).argmax(1) == y) == 1.0
    assert loss_fn.forward(model.forward(x), y) < 0.1


def test_mlp_baseline():
    model = lc.mlp((784, 300, 100, 10), seed=0)
    assert model.num_params() == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert model.forward(np.zeros((2, 1, 28, 28))).shape == (2, 10)
    model64 = lc.mlp((12, 5, 3), activation="tanh", seed=0, dtype=np.float64)
    errors = check_model(model64, np.random.default_rng(0).random((3, 12)), np.array([0, 1, 2]), max_per_param=None)
    assert max(errors.values()) < 1e-7


def test_state_dict_round_trip_and_mismatch_errors():
    a, b = lc.lenet5("classic", seed=1), lc.lenet5("classic", seed=2)
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).random((2, 1, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    before = b.state_dict()
    with pytest.raises(ValueError, match="does not fit"):
        b.load_state_dict(lc.mlp(seed=0).state_dict())
    bad = a.state_dict()
    bad["9.W"] = np.zeros((84, 100))
    with pytest.raises(ValueError, match="9.W: expected"):
        b.load_state_dict(bad)
    for k, v in b.state_dict().items():      # nothing changed on error
        np.testing.assert_array_equal(v, before[k])


def test_config_round_trip_and_forward_trace():
    model = lc.lenet5("modern", seed=0, dropout=0.2)
    twin = Sequential.from_config(model.get_config())
    assert twin.get_config() == model.get_config()
    trace = model.eval().forward_trace(np.zeros((1, 1, 32, 32), np.float32))
    assert len(trace) == len(model) + 1
    assert [t.shape for t in trace][:4] == [(1, 1, 32, 32), (1, 6, 28, 28), (1, 6, 28, 28), (1, 6, 14, 14)]


def test_bad_variant_and_wrong_input():
    with pytest.raises(ValueError, match="classic"):
        lc.lenet5("tiny")
    model = lc.lenet5()
    with pytest.raises(ValueError, match="1 input channel"):
        model.forward(np.zeros((1, 3, 32, 32)))
    with pytest.raises(ValueError, match="x\\[:, None\\]"):
        model.forward(np.zeros((1, 32, 32)))


@pytest.mark.parametrize("variant", ["classic", "modern"])
@pytest.mark.parametrize("chunk_bytes", [1, None])
def test_eval_forward_with_fused_activations_matches_layer_by_layer(monkeypatch, variant, chunk_bytes):
    """In eval mode Sequential.forward fuses each convolution with its activation (applied per
    chunk of rows); outputs, caches and hence a backward pass are those of the plain loop."""
    from lenet_core import layers as L
    if chunk_bytes is not None:
        monkeypatch.setattr(L, "_INFERENCE_CHUNK_BYTES", chunk_bytes)   # chunk even a small batch
    rng = np.random.default_rng(0)
    x = rng.random((12, 1, 32, 32), dtype=np.float32)
    fused, plain = lc.lenet5(variant, seed=3).eval(), lc.lenet5(variant, seed=3).eval()
    out_fused = fused.forward(x)
    h = x
    for layer in plain.layers:
        h = layer.forward(h)
    np.testing.assert_allclose(out_fused, h, rtol=1e-6, atol=1e-6)
    for a, b in zip(fused.layers, plain.layers):
        if isinstance(a, (L.Tanh, L.ReLU)):
            np.testing.assert_allclose(a.cache, b.cache, rtol=1e-6, atol=1e-6)
    dout = rng.standard_normal(out_fused.shape).astype(np.float32)
    np.testing.assert_allclose(fused.backward(dout), plain.backward(dout), rtol=1e-5, atol=1e-7)
    for (name, _, g_a), (_, _, g_b) in zip(fused.params_and_grads(), plain.params_and_grads()):
        np.testing.assert_allclose(g_a, g_b, rtol=1e-5, atol=1e-6, err_msg=name)


def test_sequential_forward_respects_a_convolution_subclass_that_overrides_forward():
    """Chapter 10 swaps in loop engines by overriding Conv2D.forward; fusion must not bypass them."""
    from lenet_core import layers as L
    calls = []

    class CountingConv(L.Conv2D):
        def forward(self, x):
            calls.append(x.shape)
            return super().forward(x)

    model = Sequential([CountingConv(1, 2, 3, rng=0), L.Tanh(), L.Flatten()]).eval()
    x = np.random.default_rng(1).random((4, 1, 6, 6), dtype=np.float32)
    out = model.forward(x)
    assert calls == [(4, 1, 6, 6)]
    np.testing.assert_allclose(out, np.tanh(np.asarray(model.layers[0].forward(x))).reshape(4, -1), rtol=1e-6)


@pytest.mark.parametrize("variant", ["classic", "modern"])
@pytest.mark.parametrize("chunk_bytes", [1, 100_000, None])
@pytest.mark.parametrize("size", [32, 31])
def test_infer_fuses_conv_activation_and_pool_and_matches_forward(monkeypatch, variant, chunk_bytes, size):
    """Sequential.infer pools each activated chunk in cache; it returns forward's numbers (for
    odd map sizes too, where the pool drops the last row), and leaves no cache behind."""
    from lenet_core import layers as L
    if chunk_bytes is not None:
        monkeypatch.setattr(L, "_INFERENCE_CHUNK_BYTES", chunk_bytes)
    x = np.random.default_rng(0).random((12, 1, size, size), dtype=np.float32)
    model = lc.lenet5(variant, seed=3).eval() if size == 32 else Sequential(
        [L.Conv2D(1, 4, 5, rng=0), L.Tanh() if variant == "classic" else L.ReLU(),
         L.AvgPool2D(2) if variant == "classic" else L.MaxPool2D(2), L.Flatten()]).eval()
    expected = model.forward(x)
    fused = []
    chunked = L.Conv2D._infer_in_row_chunks
    monkeypatch.setattr(L.Conv2D, "_infer_in_row_chunks", lambda self, *a: fused.append(self) or chunked(self, *a))
    np.testing.assert_allclose(model.infer(x), expected, rtol=1e-6, atol=1e-7)
    if chunk_bytes == 1:                             # every conv + activation + pool ran fused
        assert len(fused) == (2 if size == 32 else 1)
    assert all(layer.cache is None for layer in model.layers)
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.ones_like(expected))


def test_infer_does_not_fuse_what_it_cannot_do_exactly(monkeypatch):
    """Overlapping pooling windows, a pool subclass and training mode get the plain composition."""
    from lenet_core import layers as L
    monkeypatch.setattr(L, "_INFERENCE_CHUNK_BYTES", 1)
    calls = []

    class CountingPool(L.AvgPool2D):
        def forward(self, x):
            calls.append(x.shape)
            return super().forward(x)

    x = np.random.default_rng(2).random((5, 1, 12, 12), dtype=np.float32)
    for pool in (L.MaxPool2D(3, stride=2), CountingPool(2)):
        model = Sequential([L.Conv2D(1, 3, 3, rng=0), L.ReLU(), pool, L.Flatten()]).eval()
        np.testing.assert_allclose(model.infer(x), model.forward(x), rtol=1e-6)
    assert calls == [(5, 3, 10, 10)] * 2            # the subclass ran its own forward, twice
    model = lc.lenet5("classic", seed=0).train()
    x = np.random.default_rng(3).random((4, 1, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(model.infer(x), model.forward(x), rtol=1e-6)
