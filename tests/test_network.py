"""Sequential (lenet_core.network): the textbook loop, parameters by name, saving and restoring."""
import numpy as np
import pytest

import lenet_core as lc
from lenet_core import layers as L
from lenet_core.network import Sequential, eval_mode


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


def test_forward_is_every_layer_in_turn_and_backward_the_reverse():
    layers = [L.Linear(4, 3, dtype=np.float64, rng=0), L.Tanh(), L.Linear(3, 2, dtype=np.float64, rng=1)]
    model = Sequential(layers)
    x = np.random.default_rng(0).standard_normal((5, 4))
    h = x
    for layer in layers:
        h = layer.forward(h)
    np.testing.assert_array_equal(model.forward(x), h)
    dout = np.ones((5, 2))
    d = dout
    for layer in reversed(layers):
        d = layer.backward(d)
    np.testing.assert_array_equal(model.backward(dout), d)
    assert model.backward(dout, input_grad=False) is None       # the first layer only sets its grads


def test_infer_gives_forwards_numbers_and_keeps_no_cache():
    model = lc.lenet5("classic", seed=0, engine="plain")
    x = np.random.default_rng(1).random((3, 1, 32, 32), dtype=np.float32)
    expected = model.forward(x)
    np.testing.assert_array_equal(model.infer(x), expected)
    assert all(layer.cache is None for layer in model.layers)
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.ones_like(expected))


def test_eval_mode_restores_each_layers_mode_even_on_error():
    model = lc.lenet5("modern", seed=0, dropout=0.3)
    model.layers[9].eval()                         # one layer already in eval mode
    modes = [layer.training for layer in model.layers]
    with pytest.raises(ZeroDivisionError):
        with eval_mode(model):
            assert not model.training
            1 / 0
    assert [layer.training for layer in model.layers] == modes


def test_only_layers_go_in():
    with pytest.raises(TypeError, match="not a lenet_core Layer"):
        Sequential([L.Tanh(), object()])
