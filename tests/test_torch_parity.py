"""Parity with PyTorch autograd: same weights, same numbers (PyTorch is optional; without it these skip)."""
import numpy as np
import pytest

from lenet_core.torch_compat import TORCH_ADVICE

torch = pytest.importorskip("torch", reason=TORCH_ADVICE)

import lenet_core as lc  # noqa: E402
from lenet_core.gradcheck import rel_error  # noqa: E402
from lenet_core.torch_compat import load_torch_state_dict, to_torch_module, to_torch_state_dict  # noqa: E402

TOL32 = 1e-4


def torch_grads(module):
    return {name: p.grad.detach().numpy() for name, p in module.named_parameters()}


def ours_as_torch_names(model):
    names = {"W": "weight", "b": "bias"}
    return {f"{n.split('.')[0]}.{names[n.split('.')[1]]}": g for n, _, g in model.params_and_grads()}


@pytest.fixture(scope="module")
def digits(mnist_10k_dir):
    from lenet_core.mnist import load_mnist
    from lenet_core.preprocess import prepare_lenet_input
    images, labels = load_mnist("test", root=mnist_10k_dir, download=False)
    x = prepare_lenet_input(images[:32])
    # A little noise: on the flat background, max pooling would otherwise see windows of values equal
    # up to the last bit, and a different summation order can pick a different winner. Exact ties are
    # tested on their own below.
    x += np.random.default_rng(0).uniform(0, 0.05, x.shape).astype(np.float32)
    return x, labels[:32].astype(np.int64)


@pytest.mark.parametrize("engine", ["plain", "fast"])
@pytest.mark.parametrize("variant", ["classic", "modern"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lenet5_logits_loss_and_every_gradient_match(variant, dtype, engine, digits):
    x, y = digits
    x = x.astype(dtype)
    model = lc.lenet5(variant, seed=11, dtype=dtype, engine=engine)
    twin = to_torch_module(model)
    tol = TOL32 if dtype == np.float32 else 1e-10

    loss_fn = lc.SoftmaxCrossEntropy()
    logits = model.forward(x)
    loss = loss_fn.forward(logits, y)
    dx = model.backward(loss_fn.backward())

    xt = torch.tensor(x, requires_grad=True)
    logits_t = twin(xt)
    loss_t = torch.nn.functional.cross_entropy(logits_t, torch.tensor(y))
    loss_t.backward()

    assert logits.dtype == dtype
    assert rel_error(logits, logits_t.detach().numpy()) < tol
    assert loss == pytest.approx(loss_t.item(), rel=tol)
    assert rel_error(dx, xt.grad.numpy()) < tol
    ours, theirs = ours_as_torch_names(model), torch_grads(twin)
    assert set(ours) == set(theirs)
    for name in ours:
        assert rel_error(ours[name], theirs[name]) < tol, name


@pytest.mark.parametrize("case", [
    dict(c=3, f=4, k=3, s=1, p=0), dict(c=2, f=5, k=3, s=2, p=1), dict(c=1, f=2, k=5, s=3, p=2),
    dict(c=4, f=3, k=1, s=1, p=0), dict(c=2, f=2, k=4, s=2, p=0),
])
def test_conv2d_matches_torch(case):
    rng = np.random.default_rng(0)
    conv = lc.Conv2D(case["c"], case["f"], case["k"], case["s"], case["p"], rng=rng)
    x = rng.standard_normal((3, case["c"], 11, 9)).astype(np.float32)
    out = conv.forward(x)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx = conv.backward(dout)
    t = torch.nn.Conv2d(case["c"], case["f"], case["k"], stride=case["s"], padding=case["p"])
    t.load_state_dict({"weight": torch.tensor(conv.params["W"]), "bias": torch.tensor(conv.params["b"])})
    xt = torch.tensor(x, requires_grad=True)
    ot = t(xt)
    ot.backward(torch.tensor(dout))
    assert rel_error(out, ot.detach().numpy()) < TOL32
    assert rel_error(dx, xt.grad.numpy()) < TOL32
    assert rel_error(conv.grads["W"], t.weight.grad.numpy()) < TOL32
    assert rel_error(conv.grads["b"], t.bias.grad.numpy()) < TOL32


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("k,s", [(2, None), (3, 2), (2, 1), (3, 3)])
@pytest.mark.parametrize("ties", [False, True])
def test_pooling_matches_torch_including_ties(kind, k, s, ties):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    if ties:
        x = np.round(x)            # many tied maxima
    layer = lc.MaxPool2D(k, s) if kind == "max" else lc.AvgPool2D(k, s)
    tlayer = (torch.nn.MaxPool2d if kind == "max" else torch.nn.AvgPool2d)(k, stride=s)
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    ot = tlayer(xt)
    ot.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, ot.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("variant,opt_name", [("classic", "momentum"), ("modern", "momentum"),
                                              ("classic", "nesterov"), ("modern", "adam")])
def test_twenty_steps_stay_on_the_same_trajectory(variant, opt_name, digits):
    x, y = digits
    model = lc.lenet5(variant, seed=5)
    twin = to_torch_module(model)
    if opt_name == "adam":
        ours, theirs = lc.Adam(model, lr=1e-3), torch.optim.Adam(twin.parameters(), lr=1e-3)
    else:
        nesterov = opt_name == "nesterov"
        ours = lc.SGD(model, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=1e-4)
        theirs = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=1e-4)
    loss_fn = lc.SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    losses, losses_t = [], []
    for step in range(20):
        idx = rng.choice(len(x), size=16, replace=False)
        losses.append(loss_fn.forward(model.forward(x[idx]), y[idx]))
        model.backward(loss_fn.backward())
        ours.step()
        theirs.zero_grad()
        loss_t = torch.nn.functional.cross_entropy(twin(torch.tensor(x[idx])), torch.tensor(y[idx]))
        loss_t.backward()
        theirs.step()
        losses_t.append(loss_t.item())
    np.testing.assert_allclose(losses, losses_t, rtol=1e-4)
    final = to_torch_state_dict(model)
    for name, p in twin.state_dict().items():
        assert rel_error(final[name].numpy(), p.numpy()) < TOL32, name
    assert losses[-1] < losses[0]


def test_state_dict_converters_round_trip_and_reject_other_architectures():
    model = lc.lenet5("classic", seed=1)
    twin = to_torch_module(model)
    fresh = lc.lenet5("classic", seed=2)
    load_torch_state_dict(fresh, twin.state_dict())
    for (_, a, _), (_, b, _) in zip(model.params_and_grads(), fresh.params_and_grads()):
        np.testing.assert_array_equal(a, b)
    mlp_sd = to_torch_module(lc.mlp(seed=0)).state_dict()
    with pytest.raises(ValueError, match="does not fit"):
        load_torch_state_dict(fresh, mlp_sd)
    with pytest.raises(ValueError, match="unexpected entry"):
        load_torch_state_dict(fresh, {"0.running_mean": np.zeros(6)})
