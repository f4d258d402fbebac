"""Saliency and integrated gradients: checked against central differences and the completeness axiom."""
from __future__ import annotations

import numpy as np
import pytest

import lenet_core as lc
from lenet_core.explain import (completeness, input_gradient, integrated_gradients, riemann_alphas,
                                saliency_map, target_logits)
from lenet_core.gradcheck import numerical_gradient, rel_error


def small_cnn(seed=0, dtype=np.float64, pool=lc.AvgPool2D, act=lc.Tanh):
    """A tiny convnet on 1x8x8 inputs: conv 3x3 -> act -> pool -> linear to 4 classes."""
    rng = np.random.default_rng(seed)
    return lc.Sequential([lc.Conv2D(1, 3, 3, dtype=dtype, rng=rng), act(), pool(2), lc.Flatten(),
                          lc.Linear(3 * 3 * 3, 4, dtype=dtype, rng=rng)], input_shape=(1, 1, 8, 8))


@pytest.fixture
def x8():
    return np.random.default_rng(1).uniform(0, 1, size=(3, 1, 8, 8))


def test_input_gradient_matches_central_differences(x8):
    model = small_cnn()
    target = np.array([0, 3, 1])
    g = input_gradient(model, x8, target)
    assert g.shape == x8.shape
    x = x8.copy()
    num = numerical_gradient(lambda: float(target_logits(model, x, target).sum()), x)
    assert rel_error(g, num) < 1e-8


def test_input_gradient_lenet5_float64_one_image():
    model = lc.lenet5("classic", seed=0, dtype=np.float64)
    x = np.random.default_rng(2).uniform(0, 1, size=(1, 32, 32))
    g = input_gradient(model, x, 7)
    assert g.shape == x.shape
    num = numerical_gradient(lambda: target_logits(model, x, 7), x)
    assert rel_error(g, num) < 1e-7


def test_saliency_map_is_abs_max_over_channels():
    rng = np.random.default_rng(3)
    model = lc.Sequential([lc.Conv2D(2, 2, 3, dtype=np.float64, rng=rng), lc.ReLU(), lc.Flatten(),
                           lc.Linear(2 * 4 * 4, 5, dtype=np.float64, rng=rng)], input_shape=(1, 2, 6, 6))
    x = rng.standard_normal((4, 2, 6, 6))
    s = saliency_map(model, x, 2)
    assert s.shape == (4, 6, 6)
    np.testing.assert_array_equal(s, np.abs(input_gradient(model, x, 2)).max(axis=1))
    assert saliency_map(model, x[0], 2).shape == (6, 6)


def test_eval_mode_and_layer_modes_restored():
    model = lc.lenet5("classic", seed=0, dropout=0.5)
    x = np.random.default_rng(4).uniform(0, 1, size=(2, 1, 32, 32)).astype(np.float32)
    model.train()
    g1 = input_gradient(model, x, 1)
    g2 = input_gradient(model, x, 1)
    np.testing.assert_array_equal(g1, g2)  # dropout was off: deterministic
    assert model.training
    model.eval()
    input_gradient(model, x, 1)
    assert not any(layer.training for layer in model.layers)


def test_bad_targets_raise(x8):
    model = small_cnn()
    with pytest.raises(ValueError, match="target classes"):
        input_gradient(model, x8, 4)
    with pytest.raises(ValueError, match="one per image"):
        input_gradient(model, x8, [0, 1])
    with pytest.raises(TypeError, match="floating"):
        input_gradient(model, (x8 * 255).astype(np.uint8), 0)


def test_riemann_rules_integrate_polynomials():
    for method, exact_degree in (("midpoint", 1), ("trapezoid", 1), ("left", 0)):
        a, w = riemann_alphas(8, method)
        assert w.sum() == pytest.approx(1.0)
        for deg in range(exact_degree + 1):
            assert (w * a ** deg).sum() == pytest.approx(1 / (deg + 1))
    with pytest.raises(ValueError):
        riemann_alphas(0)
    with pytest.raises(ValueError):
        riemann_alphas(5, "simpson")


def test_ig_of_linear_model_is_exact():
    """For F(x) = W x + b the gradient is constant, so IG = (x - x') * W[t] for any number of steps."""
    rng = np.random.default_rng(5)
    model = lc.Sequential([lc.Flatten(), lc.Linear(16, 3, dtype=np.float64, rng=rng)], input_shape=(1, 1, 4, 4))
    x = rng.standard_normal((2, 1, 4, 4))
    base = rng.standard_normal((1, 4, 4))
    ig = integrated_gradients(model, x, [2, 0], baseline=base, steps=3)
    W = model[1].params["W"]
    expected = (x - base) * np.stack([W[2], W[0]]).reshape(2, 1, 4, 4)
    np.testing.assert_allclose(ig, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["midpoint", "trapezoid"])
def test_ig_completeness_converges(method):
    model = lc.lenet5("classic", seed=0, dtype=np.float64)
    x = np.random.default_rng(6).uniform(0, 1, size=(1, 1, 32, 32))
    errors = []
    for steps in (4, 16, 64):
        ig = integrated_gradients(model, x, 3, steps=steps, method=method, batch_size=50)
        assert ig.shape == x.shape
        c = completeness(model, x, ig, 3)
        np.testing.assert_allclose(c.difference, c.logit_x - c.logit_baseline)
        errors.append(c.rel_error.max())
    assert errors[-1] < 1e-3
    assert errors[2] < errors[1] < errors[0]  # second-order rules: about 16x smaller per 4x steps
    assert errors[1] / errors[2] > 8


def test_ig_completeness_relu_maxpool_model():
    model = lc.lenet5("modern", seed=1, dtype=np.float64)
    x = np.random.default_rng(7).uniform(0, 1, size=(1, 32, 32))
    ig = integrated_gradients(model, x, 5, steps=256)
    assert ig.shape == x.shape
    c = completeness(model, x, ig, 5)
    assert c.rel_error[0] < 1e-2


def test_ig_batching_does_not_change_result(x8):
    model = small_cnn()
    a = integrated_gradients(model, x8, [0, 1, 2], steps=7, batch_size=1)
    b = integrated_gradients(model, x8, [0, 1, 2], steps=7, batch_size=1000)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    single = integrated_gradients(model, x8[1], 1, steps=7)
    np.testing.assert_allclose(single, a[1], rtol=1e-12, atol=1e-14)


def test_ig_baseline_shapes(x8):
    model = small_cnn()
    ig_zero = integrated_gradients(model, x8, 0, steps=5)
    ig_explicit = integrated_gradients(model, x8, 0, baseline=np.zeros_like(x8), steps=5)
    np.testing.assert_allclose(ig_zero, ig_explicit)
    with pytest.raises(ValueError, match="baseline"):
        integrated_gradients(model, x8, 0, baseline=np.zeros((2, 8, 8)))
    # attributions vanish where the input equals the baseline
    ig_self = integrated_gradients(model, x8, 0, baseline=x8, steps=5)
    assert np.all(ig_self == 0)


def test_float32_model_works():
    model = lc.lenet5("classic", seed=0)
    x = np.random.default_rng(8).uniform(0, 1, size=(3, 1, 32, 32)).astype(np.float32)
    ig = integrated_gradients(model, x, [0, 1, 2], steps=32)
    c = completeness(model, x, ig, [0, 1, 2])
    assert c.rel_error.max() < 1e-2
    assert "relative error" in str(c)
