"""Preprocessing helpers (lenet_core.preprocess)."""
from __future__ import annotations

import numpy as np
import pytest

from lenet_core.mnist import load_mnist
from lenet_core.preprocess import one_hot, pad_to_32, prepare_lenet_input, scale, to_nchw


@pytest.fixture(scope="module")
def mnist_10k(mnist_10k_dir):
    """Both splits of the offline 10k root, loaded once."""
    return {split: load_mnist(split, root=mnist_10k_dir, download=False) for split in ("train", "test")}


# --- preprocessing ----------------------------------------------------------------------

@pytest.fixture
def digits():
    return np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)


def test_scale(digits):
    x = scale(digits)
    assert x.dtype == np.float32 and x.shape == digits.shape
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x * 255, digits, atol=1e-4)
    assert scale(np.array([0, 255], dtype=np.uint8)).tolist() == [0.0, 1.0]


def test_scale_standardize(digits):
    x = scale(digits, mean=0.5, std=0.25)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, (digits / 255 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        scale(digits, mean=0.5)
    with pytest.raises(ValueError):
        scale(digits, mean=0.5, std=0.0)


def test_scale_does_not_modify_input():
    x = np.full((2, 2), 255.0, dtype=np.float32)
    scale(x)
    assert x[0, 0] == 255.0


@pytest.mark.parametrize("shape", [(7, 28, 28), (7, 1, 28, 28), (28, 28)])
def test_pad_to_32(shape):
    images = np.ones(shape, dtype=np.uint8)
    padded = pad_to_32(images)
    assert padded.shape == shape[:-2] + (32, 32) and padded.dtype == np.uint8
    assert padded.sum() == images.sum()
    assert (padded[..., 2:30, 2:30] == 1).all()
    with pytest.raises(ValueError):
        pad_to_32(np.ones((7, 32, 32)))


def test_to_nchw():
    assert to_nchw(np.zeros((5, 28, 28))).shape == (5, 1, 28, 28)
    assert to_nchw(np.zeros((28, 28))).shape == (1, 1, 28, 28)
    assert to_nchw(np.zeros((5, 1, 32, 32))).shape == (5, 1, 32, 32)
    with pytest.raises(ValueError):
        to_nchw(np.zeros(5))


@pytest.mark.parametrize("shape", [(7, 28, 28), (7, 1, 28, 28)])
def test_prepare_lenet_input(digits, shape):
    x = prepare_lenet_input(digits.reshape(shape))
    assert x.shape == (7, 1, 32, 32) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(x[:, 0, 2:30, 2:30], scale(digits))
    assert not x[:, :, :2].any() and not x[:, :, -2:].any()
    assert not x[..., :2].any() and not x[..., -2:].any()


def test_prepare_real_digits(mnist_10k):
    x = prepare_lenet_input(mnist_10k["test"][0][:100])
    assert x.shape == (100, 1, 32, 32) and x.dtype == np.float32 and x.max() == 1.0


def test_one_hot():
    y = one_hot(np.array([3, 0, 9], dtype=np.uint8))
    assert y.shape == (3, 10) and y.dtype == np.float32
    assert y.sum(axis=1).tolist() == [1, 1, 1]
    assert y.argmax(axis=1).tolist() == [3, 0, 9]
    assert one_hot([1], num_classes=3, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError):
        one_hot([10])
    with pytest.raises(ValueError):
        one_hot([-1])
    with pytest.raises(ValueError):
        one_hot([0.5])
