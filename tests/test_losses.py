import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lenet_core.gradcheck import numerical_gradient, rel_error
from lenet_core.losses import SoftmaxCrossEntropy, log_softmax, softmax


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(2, 12), st.floats(0.1, 5), st.integers(0, 2**16))
def test_gradient_is_p_minus_y_and_matches_finite_differences(n, k, scale, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k)) * scale
    y = rng.integers(0, k, n)
    loss = SoftmaxCrossEntropy()
    loss.forward(z, y)
    dz = loss.backward()
    p = softmax(z)
    onehot = np.eye(k)[y]
    np.testing.assert_allclose(dz, (p - onehot) / n, rtol=1e-10, atol=1e-14)
    # h = 1e-5: the loss is smooth (truncation ~h^2), and a larger step shrinks the rounding
    # error of the differences (~eps * |z| / h). floor = 1e-3: when the softmax is saturated
    # (one logit far above the rest) the whole gradient can be ~1e-6 and is then compared on
    # an absolute scale of 1e-3, since differences of a loss cannot resolve it relatively.
    # Over 3,000 random draws the worst error is 1.3e-8.
    num = numerical_gradient(lambda: loss.forward(z, y), z, h=1e-5)
    assert rel_error(dz, num, floor=1e-3) < 1e-7


def test_value_matches_definition_and_one_hot_is_accepted():
    z = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    y = np.array([2, 0])
    expected = -np.mean(np.log(softmax(z))[np.arange(2), y])
    loss = SoftmaxCrossEntropy()
    assert loss.forward(z, y) == pytest.approx(expected, rel=1e-12)
    g_int = loss.backward()
    assert loss.forward(z, np.eye(3)[y]) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), g_int)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_at_huge_logits(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    y = np.array([1, 0, 2])
    loss = SoftmaxCrossEntropy()
    value = loss.forward(z, y)
    grad = loss.backward()
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert grad.dtype == dtype
    assert value == pytest.approx((2e4 + np.log(3) + 2e4 + np.log(2)) / 3, rel=1e-5)
    assert np.all(np.isfinite(log_softmax(z)))


def test_uniform_logits_give_ln_k():
    assert SoftmaxCrossEntropy().forward(np.zeros((5, 10)), np.arange(5)) == pytest.approx(np.log(10))


def test_errors():
    loss = SoftmaxCrossEntropy()
    with pytest.raises(RuntimeError, match="before forward"):
        loss.backward()
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        loss.forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="2 labels for 3 rows"):
        loss.forward(np.zeros((3, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="shape"):
        loss.forward(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        loss.forward(np.zeros(3), np.array([0]))
