import numpy as np
import pytest

import lenet_core as lc
from lenet_core.init import SCHEMES, fans, initialize
from lenet_core.network import Sequential


def tiny(seed=0, dtype=np.float64):
    return Sequential([lc.Linear(3, 2, dtype=dtype, rng=seed)])


def set_grads(model, value):
    for layer in model:
        for k in layer.params:
            layer.grads[k] = np.full_like(layer.params[k], value)


def test_sgd_plain_and_weight_decay():
    m = tiny()
    w0 = m[0].params["W"].copy()
    set_grads(m, 0.5)
    lc.SGD(m, lr=0.1).step()
    np.testing.assert_allclose(m[0].params["W"], w0 - 0.05)
    m = tiny()
    set_grads(m, 0.5)
    lc.SGD(m, lr=0.1, weight_decay=0.01).step()
    np.testing.assert_allclose(m[0].params["W"], w0 - 0.1 * (0.5 + 0.01 * w0))


def test_momentum_and_nesterov_by_hand():
    for nesterov in (False, True):
        m = tiny()
        w = m[0].params["W"].copy()
        opt = lc.SGD(m, lr=0.1, momentum=0.9, nesterov=nesterov)
        v = np.zeros_like(w)
        for g in (1.0, 2.0, -1.0):
            set_grads(m, g)
            opt.step()
            v = 0.9 * v + g
            w = w - 0.1 * ((g + 0.9 * v) if nesterov else v)
            np.testing.assert_allclose(m[0].params["W"], w)


def test_adam_by_hand():
    m = tiny()
    w = m[0].params["W"].copy()
    opt = lc.Adam(m, lr=0.01)
    mom, vel = 0.0, 0.0
    for t, g in enumerate((1.0, -0.5, 0.25), start=1):
        set_grads(m, g)
        opt.step()
        mom = 0.9 * mom + 0.1 * g
        vel = 0.999 * vel + 0.001 * g * g
        w = w - 0.01 * (mom / (1 - 0.9 ** t)) / (np.sqrt(vel / (1 - 0.999 ** t)) + 1e-8)
        np.testing.assert_allclose(m[0].params["W"], w, rtol=1e-12)


def test_float32_stays_float32():
    m = tiny(dtype=np.float32)
    set_grads(m, 0.1)
    for opt in (lc.SGD(m, 0.1, momentum=0.9), lc.Adam(m)):
        opt.step()
        assert all(p.dtype == np.float32 for _, p, _ in m.params_and_grads())
        assert all(b.dtype == np.float32 for s in opt.state.values() for b in s.values())


def test_state_dict_round_trip_continues_identically():
    for make in (lambda m: lc.SGD(m, 0.1, momentum=0.9), lambda m: lc.Adam(m, 0.01)):
        a, b = tiny(), tiny()
        oa = make(a)
        for g in (1.0, -2.0):
            set_grads(a, g)
            oa.step()
        b.load_state_dict(a.state_dict())
        ob = make(b).load_state_dict(oa.state_dict())
        for g in (0.5, 3.0):
            set_grads(a, g)
            set_grads(b, g)
            oa.step()
            ob.step()
        for (_, pa, _), (_, pb, _) in zip(a.params_and_grads(), b.params_and_grads()):
            np.testing.assert_array_equal(pa, pb)


def test_optimizer_errors():
    m = tiny()
    with pytest.raises(ValueError, match="learning rate"):
        lc.SGD(m, lr=0)
    with pytest.raises(ValueError, match="Nesterov"):
        lc.SGD(m, lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="params_and_grads"):
        lc.SGD([1, 2], lr=0.1)
    with pytest.raises(ValueError, match="not SGD"):
        lc.SGD(m, 0.1).load_state_dict(lc.Adam(m).state_dict())
    with pytest.raises(ValueError, match="unknown optimizer"):
        lc.make_optimizer("rmsprop", m, 0.1)
    assert isinstance(lc.make_optimizer("nesterov", m, 0.1), lc.SGD)


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s != "default"])
def test_initializers_have_the_documented_variance(scheme):
    W = np.zeros((400, 300), dtype=np.float64)
    model = Sequential([lc.Linear(300, 400, dtype=np.float64)])
    initialize(model, scheme, seed=0)
    W = model[0].params["W"]
    fan_in, fan_out = fans(W)
    expected = {"lecun": 1 / fan_in, "xavier": 2 / (fan_in + fan_out), "he": 2 / fan_in}[scheme.split("_")[0]]
    assert W.var() == pytest.approx(expected, rel=0.05)
    assert np.all(model[0].params["b"] == 0)
    again = initialize(Sequential([lc.Linear(300, 400, dtype=np.float64)]), scheme, seed=0)
    np.testing.assert_array_equal(again[0].params["W"], W)


def test_default_init_matches_pytorch_bounds():
    model = lc.lenet5(seed=0)
    for layer in model:
        if "W" in layer.params:
            bound = 1 / np.sqrt(fans(layer.params["W"])[0])
            for p in layer.params.values():
                assert np.abs(p).max() <= bound
                assert np.abs(p).max() > 0.8 * bound
    with pytest.raises(ValueError, match="unknown init"):
        initialize(model, "orthogonal")
