"""DataParallel: batches split over worker processes give the serial results (up to float
rounding), stay deterministic, fall back to serial when they must, and fail clearly."""
from __future__ import annotations

import gc
import glob
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lenet_core as lc
from lenet_core import parallel
from lenet_core.parallel import DataParallel


def _batch(n, seed=0, shape=(1, 32, 32)):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape, dtype=np.float32), rng.integers(0, 10, n)


def _run(runner, x, y, input_grad=True):
    loss_fn = lc.SoftmaxCrossEntropy()
    logits = runner.forward(x)
    loss = loss_fn(logits, y)
    dx = runner.backward(loss_fn.backward(), input_grad=input_grad)
    return logits, loss, dx


@pytest.mark.parametrize("variant", ["classic", "modern"])
@pytest.mark.parametrize("n, processes", [(64, 2), (37, 2), (50, 3)])
def test_same_outputs_and_gradients_as_the_model(variant, n, processes):
    x, y = _batch(n)
    serial, split = lc.lenet5(variant, seed=1), lc.lenet5(variant, seed=1)
    logits_a, loss_a, dx_a = _run(serial, x, y)
    runner = DataParallel(split, processes)
    assert runner.plan(n) is not None, "this batch should be split"
    logits_b, loss_b, dx_b = _run(runner, x, y)
    np.testing.assert_allclose(logits_b, logits_a, rtol=1e-5, atol=1e-6)
    assert loss_b == pytest.approx(loss_a, rel=1e-6)
    np.testing.assert_allclose(dx_b, dx_a, rtol=1e-4, atol=1e-9)
    for (name, _, g_a), (_, _, g_b) in zip(serial.params_and_grads(), split.params_and_grads()):
        scale = np.abs(g_a).max()
        assert np.abs(g_b - g_a).max() <= 1e-5 * scale, name


def test_float64_matches_to_rounding():
    x, y = _batch(40)
    x = x.astype(np.float64)
    serial, split = lc.lenet5("classic", seed=2, dtype=np.float64), lc.lenet5("classic", seed=2, dtype=np.float64)
    _run(serial, x, y, input_grad=False)
    assert _run(DataParallel(split, 2), x, y, input_grad=False)[2] is None
    for (name, _, g_a), (_, _, g_b) in zip(serial.params_and_grads(), split.params_and_grads()):
        assert g_b.dtype == np.float64
        np.testing.assert_allclose(g_b, g_a, rtol=1e-11, atol=1e-14, err_msg=name)


def test_mlp_on_flat_rows():
    rng = np.random.default_rng(3)
    x, y = rng.random((48, 784), dtype=np.float32), rng.integers(0, 10, 48)
    serial, split = lc.mlp(seed=4), lc.mlp(seed=4)
    a, b = _run(serial, x, y), _run(DataParallel(split, 2), x, y)
    np.testing.assert_allclose(b[0], a[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b[2], a[2], rtol=1e-4, atol=1e-9)


def test_weights_updated_in_place_are_seen_by_the_workers():
    """The optimizer changes the model's arrays; the next forward must use the new values."""
    x, y = _batch(32)
    serial, split = lc.lenet5("modern", seed=5), lc.lenet5("modern", seed=5)
    runner = DataParallel(split, 2)
    opt_a, opt_b = lc.SGD(serial, lr=0.1, momentum=0.9), lc.SGD(split, lr=0.1, momentum=0.9)
    for _ in range(3):
        _run(serial, x, y, input_grad=False)
        opt_a.step()
        _run(runner, x, y, input_grad=False)
        opt_b.step()
    np.testing.assert_allclose(runner.forward(x), serial.forward(x), rtol=1e-4, atol=1e-5)


def test_small_batches_and_one_process_run_the_model_itself():
    model = lc.lenet5("classic", seed=0)
    x, y = _batch(2 * parallel.MIN_SHARD - 1)
    runner = DataParallel(model, 2)
    assert runner.plan(len(x)) is None
    _run(runner, x, y)
    assert model.layers[0].cache is not None      # the model itself ran: its caches are filled
    assert DataParallel(model, 1).plan(1000) is None


def test_active_dropout_runs_serially_for_reproducible_masks():
    model = lc.lenet5("modern", seed=0, dropout=0.5)
    runner = DataParallel(model, 2)
    assert runner.train().plan(64) is None
    assert runner.eval().plan(64) is not None    # no dropout in eval mode: split again


def test_fit_is_deterministic_and_close_to_serial():
    x, y = _batch(96, seed=7)
    weights = []
    for processes in (2, 2, 1):
        model = lc.lenet5("classic", seed=0)
        hist = lc.fit(model, lc.SGD(model, lr=0.05, momentum=0.9), x, y, epochs=2, batch_size=32,
                      progress=False, processes=processes)
        weights.append((model.state_dict(), hist))
    (w1, h1), (w2, h2), (w_serial, h_serial) = weights
    for k in w1:
        np.testing.assert_array_equal(w1[k], w2[k], err_msg=f"{k}: same processes, different weights")
        np.testing.assert_allclose(w1[k], w_serial[k], rtol=1e-3, atol=1e-5, err_msg=k)
    assert h1["train_loss"] == h2["train_loss"]
    np.testing.assert_allclose(h1["train_loss"], h_serial["train_loss"], rtol=1e-4)


def test_evaluate_and_predict_match_serial():
    x, y = _batch(300, seed=8)
    model = lc.lenet5("modern", seed=3)
    assert lc.evaluate(model, x, y, batch_size=128, processes=2) == pytest.approx(
        lc.evaluate(model, x, y, batch_size=128, processes=1), rel=1e-5)
    np.testing.assert_array_equal(lc.predict(model, x, processes=3), lc.predict(model, x, processes=1))


def test_errors_in_a_shard_reach_the_caller_and_the_workers_survive():
    runner = DataParallel(lc.lenet5("classic", seed=0), 2)
    with pytest.raises(ValueError, match="channel|expects"):
        runner.forward(np.zeros((32, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="4-D input"):
        runner.forward(np.zeros((32, 32, 32), np.float32))   # the layer's own message, not an unpacking error
    x, y = _batch(32)
    logits = runner.forward(x)                     # the next batch works
    assert logits.shape == (32, 10)
    with pytest.raises(ValueError, match="dout has shape"):
        runner.backward(np.zeros((31, 10), np.float32))


def test_a_dead_worker_is_replaced_before_the_next_batch():
    runner = DataParallel(lc.lenet5("classic", seed=0), 2)
    x, y = _batch(32)
    expected = runner.forward(x)
    process, _ = parallel._workers[0]
    process.kill()
    process.wait()
    np.testing.assert_array_equal(runner.forward(x), expected)


def test_a_worker_dying_during_a_batch_gives_a_clear_error_then_recovers(monkeypatch):
    runner = DataParallel(lc.lenet5("classic", seed=0), 2)
    x, y = _batch(32)
    runner.forward(x)
    gone = DataParallel(lc.lenet5("classic", seed=0), 2)
    gone.forward(x)
    del gone                                             # the workers are told to forget it next time
    gc.collect()
    process, _ = parallel._workers[0]
    process.kill()
    process.wait()
    monkeypatch.setattr(process, "poll", lambda: None)   # it dies after the check, mid-batch
    with pytest.raises(RuntimeError, match="stopped unexpectedly"):
        runner.forward(x)
    monkeypatch.undo()
    assert runner.forward(x).shape == (32, 10)     # a fresh worker took over


def test_no_shared_memory_files_are_left_behind():
    shm = parallel._shm_dir()
    before = set(glob.glob(os.path.join(shm, "lenet-core-*")))
    runner = DataParallel(lc.lenet5("classic", seed=0), 2)
    x, y = _batch(64)
    _run(runner, x, y)
    _run(runner, *_batch(256))                     # a bigger batch: a new, larger input block
    assert set(glob.glob(os.path.join(shm, "lenet-core-*"))) <= before


def test_processes_setting(monkeypatch):
    monkeypatch.setenv("LENET_PROCESSES", "3")
    assert parallel.default_processes() == 3
    monkeypatch.setenv("LENET_PROCESSES", "two")
    with pytest.raises(ValueError, match="LENET_PROCESSES"):
        parallel.default_processes()
    monkeypatch.setenv("LENET_PROCESSES", "0")
    with pytest.raises(ValueError, match="at least 1"):
        parallel.default_processes()
    with pytest.raises(ValueError, match="at least 1"):
        DataParallel(lc.lenet5(), processes=0)
    with pytest.raises(TypeError, match="Sequential"):
        DataParallel(object())


def test_a_with_block_keeps_blas_on_one_thread_and_restores_it():
    before = parallel.blas_threads()
    runner = DataParallel(lc.lenet5("classic", seed=0), 2)
    with runner:
        with runner:
            assert parallel.blas_threads() == 1
        assert parallel.blas_threads() == 1
    assert parallel.blas_threads() == before


def test_a_script_without_a_main_guard_can_train(tmp_path):
    """Workers are plain subprocesses, so a reader's top-level script is never re-run in them."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import numpy as np, lenet_core as lc
        print("script body runs")
        rng = np.random.default_rng(0)
        x, y = rng.random((64, 1, 32, 32), dtype=np.float32), rng.integers(0, 10, 64)
        model = lc.lenet5("classic", seed=0)
        lc.fit(model, lc.SGD(model, lr=0.01), x, y, epochs=1, batch_size=32, progress=False, processes=2)
        print("trained")
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["script", "body", "runs", "trained"]


@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_infer_matches_the_model_and_refuses_a_backward_after_it(variant):
    x, _ = _batch(120, seed=4)
    model = lc.lenet5(variant, seed=2).eval()
    expected = model.forward(x)
    runner = DataParallel(model, 2)
    np.testing.assert_allclose(runner.infer(x), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="before forward"):
        runner.backward(np.ones_like(expected))
