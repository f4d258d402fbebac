import numpy as np
import pytest

import lenet_core as lc
from lenet_core.gradcheck import check_model
from lenet_core.layers import layer_type


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
    kinds = [layer_type(layer) for layer in model]
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


@pytest.mark.parametrize("engine", ["fast", "plain"])
@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_whole_network_gradient_check(variant, engine):
    model = lc.lenet5(variant, seed=3, dtype=np.float64, engine=engine)
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


def test_bad_variant_and_wrong_input():
    with pytest.raises(ValueError, match="classic"):
        lc.lenet5("tiny")
    model = lc.lenet5()
    with pytest.raises(ValueError, match="1 input channel"):
        model.forward(np.zeros((1, 3, 32, 32)))
    with pytest.raises(ValueError, match="x\\[:, None\\]"):
        model.forward(np.zeros((1, 32, 32)))
