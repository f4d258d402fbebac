"""Training loop, evaluation helpers and learning-rate schedules (synthetic data, seconds)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import lenet_core as lc
from lenet_core import progress, training
from lenet_core.checkpoint import load_checkpoint
from lenet_core.torch_compat import TORCH_ADVICE
from lenet_core.schedules import Constant, CosineAnnealing, ExponentialDecay, StepDecay, make_schedule
from lenet_core.training import (History, TrainingDiverged, accuracy, confusion_matrix, epoch_permutation,
                                 evaluate, fit, predict, predict_logits, predict_proba)


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return x, y


def _weights(model):
    return {k: v.copy() for k, v in model.named_params().items()}


def _run(seed=0, data_seed=0, epochs=2, variant="modern", dropout=0.0):
    x, y = _data(seed=data_seed)
    model = lc.lenet5(variant, seed=1, dropout=dropout)
    opt = lc.Adam(model, 1e-3)
    hist = fit(model, opt, x, y, epochs, batch_size=16, x_val=x[:16], y_val=y[:16], seed=seed, progress=False)
    return model, hist


def test_same_seed_same_data_gives_bit_identical_weights():
    m1, h1 = _run(dropout=0.3)
    m2, h2 = _run(dropout=0.3)
    for k, v in _weights(m1).items():
        assert np.array_equal(v, m2.named_params()[k]), k
    assert h1["train_loss"] == h2["train_loss"] and h1["val_acc"] == h2["val_acc"]


def test_other_seed_changes_the_run():
    m1, h1 = _run(seed=0, epochs=1)
    m2, h2 = _run(seed=1, epochs=1)
    assert not np.array_equal(m1.named_params()["0.W"], m2.named_params()["0.W"])


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = epoch_permutation(3, 5, 100)
    assert np.array_equal(a, epoch_permutation(3, 5, 100))
    assert sorted(a) == list(range(100))
    assert not np.array_equal(a, epoch_permutation(3, 6, 100))
    assert not np.array_equal(a, epoch_permutation(4, 5, 100))


def test_history_contents():
    _, h = _run(epochs=2)
    assert isinstance(h, History) and h.epochs == 2
    assert h["epoch"] == [1, 2]
    assert all(len(h[k]) == 2 for k in History.KEYS)
    assert all(0 <= a <= 1 for a in h["train_acc"] + h["val_acc"])
    assert all(math.isfinite(v) and v > 0 for v in h["train_loss"] + h["val_loss"] + h["seconds"])
    assert h["lr"] == [1e-3, 1e-3]
    assert h.last()["epoch"] == 2


def test_history_without_validation_keeps_val_lists_empty():
    x, y = _data(32)
    model = lc.lenet5("modern", seed=0)
    h = fit(model, lc.SGD(model, 0.01), x, y, 1, batch_size=32, progress=False)
    assert h["val_loss"] == [] and h["val_acc"] == [] and len(h["train_loss"]) == 1


def test_train_loss_is_mean_over_the_epochs_batches():
    """With SGD at a tiny lr the weights barely move, so the running mean equals a fresh evaluation."""
    x, y = _data(40)
    model = lc.lenet5("classic", seed=0)
    before = evaluate(model, x, y)
    h = fit(model, lc.SGD(model, 1e-12), x, y, 1, batch_size=16, progress=False)  # batches of 16, 16, 8
    assert h["train_loss"][0] == pytest.approx(before[0], rel=1e-5)
    assert h["train_acc"][0] == pytest.approx(before[1])


def test_modes_train_during_fit_eval_during_evaluation():
    x, y = _data(32)
    model = lc.lenet5("modern", seed=0, dropout=0.5)
    seen = []

    class Spy(lc.SoftmaxCrossEntropy):
        def forward(self, logits, labels):
            seen.append(model.training)
            return super().forward(logits, labels)

    fit(model, lc.SGD(model, 0.01), x, y, 1, batch_size=16, x_val=x, y_val=y, progress=False, loss_fn=Spy())
    assert seen[:2] == [True, True]  # the two training batches
    assert seen[2:] == [False]       # validation, one batch
    assert model.training            # back in training mode afterwards
    model.eval()
    evaluate(model, x, y)
    assert not model.layers[9].training  # evaluate restores the previous (eval) mode
    model.train()
    a, b = evaluate(model, x, y), evaluate(model, x, y)
    assert a == b and model.training  # dropout off while evaluating, mode restored


def test_schedule_sets_the_learning_rate_per_epoch():
    x, y = _data(16)
    model = lc.lenet5("modern", seed=0)
    opt = lc.SGD(model, 0.1)
    h = fit(model, opt, x, y, 3, batch_size=16, schedule=StepDecay(0.1, step_size=1, gamma=0.5), progress=False)
    assert h["lr"] == [0.1, 0.05, 0.025] and opt.lr == 0.025


def test_divergence_names_epoch_and_step_and_keeps_the_checkpoint(tmp_path):
    x, y = _data(64)
    model = lc.lenet5("modern", seed=0)
    opt = lc.SGD(model, 0.01)
    path = tmp_path / "run.npz"
    schedule = lambda e: 0.01 if e == 0 else 1e10  # noqa: E731 - blows up in the second epoch
    with pytest.raises(TrainingDiverged) as info:
        fit(model, opt, x, y, 3, batch_size=16, schedule=schedule, progress=False, checkpoint_path=path)
    err = info.value
    assert isinstance(err, RuntimeError)
    assert err.epoch == 2 and 1 <= err.step <= 4 and err.global_step == 4 + err.step
    msg = str(err)
    assert f"epoch 2, step {err.step}" in msg and "the loss became nan" in msg
    # the first epoch's rate worked, so that is the suggestion (not a tenth of 1e10)
    assert err.suggested_lr == 0.01 and msg.endswith("Try a smaller learning rate, e.g. 0.01.")
    assert err.history.epochs == 1
    ckpt = load_checkpoint(path)  # the checkpoint of epoch 1 survived
    assert ckpt.epoch == 1 and all(np.isfinite(v).all() for v in ckpt.model.named_params().values())


def test_resume_arguments_are_checked():
    x, y = _data(16)
    model = lc.lenet5("modern", seed=0)
    opt = lc.SGD(model, 0.01)
    h = fit(model, opt, x, y, 1, batch_size=16, progress=False)
    with pytest.raises(ValueError, match="start_epoch"):
        fit(model, opt, x, y, 3, batch_size=16, progress=False, start_epoch=2, history=h)
    with pytest.raises(ValueError, match="same length|samples"):
        fit(model, opt, x, y[:5], 1, progress=False)
    with pytest.raises(ValueError, match="x_val"):
        fit(model, opt, x, y, 1, x_val=x, progress=False)
    assert fit(model, opt, x, y, 1, start_epoch=1, history=h, progress=False).epochs == 1  # nothing to do


def test_on_epoch_end_can_stop_early():
    x, y = _data(16)
    model = lc.lenet5("modern", seed=0)
    calls = []
    h = fit(model, lc.SGD(model, 0.01), x, y, 5, batch_size=16, progress=False,
            on_epoch_end=lambda e, hist: calls.append(e) or e == 2)
    assert calls == [1, 2] and h.epochs == 2


def test_progress_bar_in_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda stream=None: True)   # as if stderr were a terminal
    x, y = _data(16)
    model = lc.lenet5("modern", seed=0)
    fit(model, lc.SGD(model, 0.01), x, y, 1, batch_size=8, progress=True)
    assert "epoch 1/1" in capsys.readouterr().err


def test_no_progress_bar_in_a_log(capsys):
    """Output captured (not a terminal), as in a CI log: no carriage-return bars even with progress=True."""
    x, y = _data(16)
    model = lc.lenet5("modern", seed=0)
    fit(model, lc.SGD(model, 0.01), x, y, 1, batch_size=8, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "\r" not in err and "epoch 1/1" not in err


# -- evaluation -------------------------------------------------------------


def test_evaluate_and_predict_shapes_and_batching():
    x, y = _data(25)
    model = lc.lenet5("classic", seed=0)
    logits = predict_logits(model, x, batch_size=7)
    assert logits.shape == (25, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, predict_logits(model, x), rtol=1e-5, atol=1e-6)
    labels = predict(model, x, batch_size=4)
    assert labels.shape == (25,) and labels.dtype == np.int64 and np.array_equal(labels, logits.argmax(1))
    probs = predict_proba(model, x)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    loss, acc = evaluate(model, x, y, batch_size=6)
    loss2, acc2 = evaluate(model, x, y)
    assert loss == pytest.approx(loss2, rel=1e-5) and acc == acc2 == accuracy(y, labels)
    ref = -np.log(probs[np.arange(25), y]).mean()
    assert loss == pytest.approx(ref, rel=1e-4)


def test_confusion_matrix_and_accuracy():
    y_true = np.array([0, 1, 2, 2, 9, 9, 9])
    y_pred = np.array([0, 2, 2, 2, 9, 1, 9])
    cm = confusion_matrix(y_true, y_pred)
    assert cm.shape == (10, 10) and cm.sum() == 7
    assert np.array_equal(cm.sum(1), np.bincount(y_true, minlength=10))
    assert np.array_equal(cm.sum(0), np.bincount(y_pred, minlength=10))
    assert cm[1, 2] == 1 and cm[2, 2] == 2 and cm[9, 1] == 1 and cm[9, 9] == 2
    assert np.trace(cm) / 7 == accuracy(y_true, y_pred) == pytest.approx(5 / 7)
    assert confusion_matrix([0, 1], [1, 0], num_classes=2).tolist() == [[0, 1], [1, 0]]
    with pytest.raises(ValueError):
        confusion_matrix([0, 10], [0, 1])
    with pytest.raises(ValueError):
        accuracy([1, 2], [1])


# -- schedules --------------------------------------------------------------


def test_schedule_values():
    assert [Constant(0.1)(e) for e in range(3)] == [0.1] * 3
    step = StepDecay(1.0, step_size=2, gamma=0.1)
    assert [step(e) for e in range(5)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    exp = ExponentialDecay(0.5, gamma=0.5)
    assert [exp(e) for e in range(3)] == pytest.approx([0.5, 0.25, 0.125])
    cos = CosineAnnealing(1.0, total_epochs=4, min_lr=0.1)
    assert [cos(e) for e in range(6)] == pytest.approx(
        [1.0, 0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2, 0.55, 0.1 + 0.9 * (1 + math.cos(3 * math.pi / 4)) / 2,
         0.1, 0.1])
    assert repr(step) == "StepDecay(lr=1.0, step_size=2, gamma=0.1)"
    assert isinstance(make_schedule("cosine", 0.1, 10), CosineAnnealing)
    assert make_schedule("step", 0.1, 9)(3) == pytest.approx(0.01)
    for bad in (lambda: StepDecay(0.1, 0), lambda: Constant(-1), lambda: CosineAnnealing(0.1, 5, min_lr=1),
                lambda: make_schedule("warmup", 0.1), lambda: Constant(0.1)(-1)):
        with pytest.raises(ValueError):
            bad()


def test_schedules_match_pytorch():
    torch = pytest.importorskip("torch", reason=TORCH_ADVICE)
    param = torch.nn.Parameter(torch.zeros(1))
    cases = [(StepDecay(0.1, 3, 0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
             (ExponentialDecay(0.1, 0.8), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.8)),
             (CosineAnnealing(0.1, 7, 0.01), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 7, 0.01))]
    for ours, make in cases:
        opt = torch.optim.SGD([param], lr=0.1)
        sched = make(opt)
        theirs = []
        for _ in range(7):
            theirs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert [ours(e) for e in range(7)] == pytest.approx(theirs, rel=1e-9), ours


# -- divergence without NaN: noticed, stopped, nothing bad saved, a sensible rate suggested ----------


@pytest.fixture(scope="module")
def digits_4k(mnist_10k_dir):
    """4,000 standardized MNIST training digits (63 steps of 64 per epoch)."""
    from lenet_core.mnist import load_mnist
    images, labels = load_mnist("train", root=mnist_10k_dir, download=False)
    return lc.standardize(lc.prepare_lenet_input(images[:4000])), labels[:4000].astype(np.int64)


@pytest.mark.parametrize("variant, optimizer, lr", [("classic", "adam", 100.0), ("classic", "adam", 1.0),
                                                    ("classic", "sgd", 2.0), ("modern", "adam", 0.1),
                                                    ("classic", "momentum", 1.0), ("modern", "sgd", 1e5)])
def test_a_run_that_blows_up_without_nan_is_stopped_and_not_saved(digits_4k, tmp_path, variant, optimizer, lr):
    """Item 3: lr 100 with Adam (loss in the thousands, accuracy near chance, never NaN) used to finish
    normally and keep its checkpoint. Now it stops, saves nothing of the bad epoch, and suggests a rate
    that trains this network (at most WORKING_LR, never a tenth of an absurd one)."""
    x, y = digits_4k
    model = lc.lenet5(variant, seed=0)
    opt = lc.make_optimizer(optimizer, model, lr)
    path = tmp_path / "run.npz"
    with pytest.raises(TrainingDiverged) as info:
        fit(model, opt, x, y, 2, progress=False, checkpoint_path=path)
    err = info.value
    assert not path.exists() and err.history.epochs == 0
    cap = training.WORKING_LR[type(opt).__name__]
    assert err.suggested_lr <= cap and err.suggested_lr < lr
    assert str(err).endswith(f"Try a smaller learning rate, e.g. {err.suggested_lr:g}.")
    # ... and the suggestion does train it
    model = lc.lenet5(variant, seed=0)
    h = fit(model, lc.make_optimizer(optimizer, model, err.suggested_lr), x, y, 1, progress=False)
    assert h["train_acc"][-1] > 0.3   # chance is 0.11


SENSIBLE = [("classic", "sgd", 0.003), ("classic", "sgd", 0.01), ("modern", "sgd", 0.01), ("classic", "adam", 1e-4),
            ("classic", "adam", 1e-3), ("modern", "adam", 1e-3), ("classic", "adam", 0.1), ("classic", "sgd", 0.5),
            ("classic", "momentum", 0.1), ("modern", "momentum", 0.1)]


# Adam at 0.1 on random labels really does blow up (loss 3.5, well above a uniform guess): not in the list
@pytest.mark.parametrize("variant, optimizer, lr, labels",
                         [case + ("real",) for case in SENSIBLE]
                         + [case + ("random",) for case in SENSIBLE if case[1:] != ("adam", 0.1)])
def test_sensible_runs_are_never_flagged(digits_4k, variant, optimizer, lr, labels):
    """Slow runs (SGD 0.003: still at chance after an epoch), fast ones, and runs on random labels
    (at chance by construction) all finish; only blown-up or stuck-and-worsening runs stop."""
    x, y = digits_4k
    if labels == "random":
        y = np.random.default_rng(0).integers(0, 10, len(y))
    model = lc.lenet5(variant, seed=0)
    h = fit(model, lc.make_optimizer(optimizer, model, lr), x, y, 1, progress=False)   # 63 steps: all checks on
    assert h.epochs == 1


def test_check_epoch_and_check_batch():
    ref = math.log(10)
    ok = dict(train_loss=2.2, train_acc=0.2)
    assert training.check_epoch(ok, ref, 0.11, 500) is None
    assert "3841" in training.check_epoch(dict(train_loss=3841.0, train_acc=0.098), ref, 0.11, 500)
    stuck = dict(train_loss=2.6, train_acc=0.1, samples=10_000)
    assert "no better than guessing" in training.check_epoch(stuck, ref, 0.11, 500)
    assert training.check_epoch(stuck, ref, 0.11, 10) is None          # too early to judge
    assert training.check_epoch(dict(stuck, train_loss=2.31), ref, 0.11, 500) is None   # slow or random labels
    assert training.check_batch(float("nan"), ref) == "the loss became nan"
    assert training.check_batch(1e4, ref).startswith("the loss of one batch rose to 1e+04")
    assert training.check_batch(50.0, ref) is None and training.check_batch(50.0, None) is None


def test_suggest_lr_from_the_runs_evidence():
    adam = lc.Adam(lc.lenet5(seed=0), 1.0)
    sgd = lc.SGD(lc.lenet5(seed=0), 1.0)
    assert training.suggest_lr(1e5, None, None, adam) == 0.01      # not 10000
    assert training.suggest_lr(1e5, float("inf"), None, sgd) == 0.1
    assert training.suggest_lr(2.0, 18.8, None, sgd) == 0.1
    assert training.suggest_lr(0.5, 266.0, None, sgd) == 0.05
    assert training.suggest_lr(5e-3, 1e9, None, None) == 5e-6      # three powers of ten at most, no cap
    assert training.suggest_lr(0.07, 2.0, None, None) == 0.005     # rounded down to 1, 2 or 5
    worked = History({"epoch": [1, 2], "train_loss": [1.0, 0.5], "lr": [0.02, 0.05], "train_acc": [0.5, 0.8],
                      "seconds": [1, 1]})
    assert training.suggest_lr(1.0, 50.0, worked, sgd) == 0.05     # the largest smaller rate whose loss fell
