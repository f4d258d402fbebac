"""DataParallel: batches split over worker processes give the serial results (up to float
rounding), stay deterministic, fall back to serial when they must, and fail clearly."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

import lenet_core as lc
from lenet_core import layers as L
from lenet_core import parallel
from lenet_core.network import Sequential
from lenet_core.parallel import DataParallel, shard_step


def _batch(n, seed=0, shape=(1, 32, 32)):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape, dtype=np.float32), rng.integers(0, 10, n)


def _serial(model, x, y):
    """The batch's loss and gradients computed the textbook way, in this process."""
    loss_fn = lc.SoftmaxCrossEntropy()
    logits = model.forward(x)
    loss = loss_fn(logits, y)
    model.backward(loss_fn.backward(), input_grad=False)
    return loss, int((logits.argmax(1) == y).sum())


def _assert_same_gradients(a, b, rtol):
    for (name, _, g_a), (_, _, g_b) in zip(a.params_and_grads(), b.params_and_grads()):
        assert g_b.dtype == g_a.dtype
        assert np.abs(g_b - g_a).max() <= rtol * np.abs(g_a).max(), name


@pytest.mark.parametrize("engine", ["fast", "plain"])
@pytest.mark.parametrize("variant", ["classic", "modern"])
@pytest.mark.parametrize("n, processes", [(64, 2), (37, 2), (50, 3)])
def test_same_loss_and_gradients_as_the_model_alone(variant, engine, n, processes):
    x, y = _batch(n)
    serial, split = lc.lenet5(variant, seed=1, engine=engine), lc.lenet5(variant, seed=1, engine=engine)
    loss_a, correct_a = _serial(serial, x, y)
    runner = DataParallel(split, processes)
    assert runner.plan(n) is not None, "this batch should be split"
    loss_b, correct_b = runner.train_step(x, y)
    assert loss_b == pytest.approx(loss_a, rel=1e-6) and correct_b == correct_a
    _assert_same_gradients(serial, split, 1e-5)


def test_float64_matches_to_rounding():
    x, y = _batch(40)
    x = x.astype(np.float64)
    serial, split = lc.lenet5("classic", seed=2, dtype=np.float64), lc.lenet5("classic", seed=2, dtype=np.float64)
    _serial(serial, x, y)
    DataParallel(split, 2).train_step(x, y)
    _assert_same_gradients(serial, split, 1e-11)


def test_one_shard_step_is_the_batch_step_for_the_whole_batch():
    x, y = _batch(16)
    a, b = lc.lenet5(seed=3), lc.lenet5(seed=3)
    loss, correct = _serial(a, x, y)
    total, correct_b = shard_step(b, x, y, len(x))
    assert total == pytest.approx(loss * len(x), rel=1e-6) and correct_b == correct
    _assert_same_gradients(a, b, 1e-6)


def test_the_workers_see_every_update_of_the_weights():
    """The optimizer changes the model's arrays in place; the next batch must use the new values."""
    x, y = _batch(32)
    serial, split = lc.lenet5("modern", seed=5), lc.lenet5("modern", seed=5)
    runner = DataParallel(split, 2)
    opt_a, opt_b = lc.SGD(serial, lr=0.1, momentum=0.9), lc.SGD(split, lr=0.1, momentum=0.9)
    for _ in range(3):
        _serial(serial, x, y)
        opt_a.step()
        runner.train_step(x, y)
        opt_b.step()
    np.testing.assert_allclose(runner.infer(x), serial.infer(x), rtol=1e-4, atol=1e-5)


def test_small_batches_one_process_dropout_and_own_layers_run_in_this_process():
    model = lc.lenet5("classic", seed=0)
    assert DataParallel(model, 2).plan(2 * parallel.MIN_SHARD - 1) is None
    assert DataParallel(model, 1).plan(1000) is None
    dropout = lc.lenet5("modern", seed=0, dropout=0.5)
    assert DataParallel(dropout.train(), 2).plan(64) is None   # one random stream for the masks
    assert DataParallel(dropout.eval(), 2).plan(64) is not None

    class LoopConv(L.Conv2D):                                   # a class the workers cannot rebuild
        pass

    own = Sequential([LoopConv(1, 2, 3), L.Flatten(), L.Linear(2 * 30 * 30, 10)])
    runner = DataParallel(own, 2)
    assert runner.plan(64) is None
    x, y = _batch(64)
    runner.train_step(x, y)
    assert own.layers[0].grads["W"].any()


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


@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_infer_matches_the_model(variant):
    x, _ = _batch(120, seed=4)
    model = lc.lenet5(variant, seed=2).eval()
    expected = model.forward(x)
    np.testing.assert_allclose(DataParallel(model, 2).infer(x), expected, rtol=1e-5, atol=1e-6)


def test_errors_in_a_shard_reach_the_caller_and_the_workers_survive():
    runner = DataParallel(lc.lenet5("classic", seed=0), 2)
    with pytest.raises(ValueError, match="channel"):
        runner.train_step(np.zeros((32, 3, 32, 32), np.float32), np.zeros(32, int))
    with pytest.raises(ValueError, match="4-D input"):
        runner.infer(np.zeros((32, 32, 32), np.float32))      # the layer's own message
    with pytest.raises(ValueError, match="labels"):
        runner.train_step(*_batch(32)[:1], np.full(32, 10))
    x, y = _batch(32)
    assert runner.infer(x).shape == (32, 10)                   # the next batch works


def test_a_dead_worker_is_replaced_before_the_next_batch():
    runner = DataParallel(lc.lenet5("classic", seed=0), 2)
    x, _ = _batch(32)
    expected = runner.infer(x)
    process, _ = parallel._workers.running[0]
    process.kill()
    process.wait()
    np.testing.assert_array_equal(runner.infer(x), expected)


def test_a_worker_dying_during_a_batch_gives_a_clear_error_then_recovers(monkeypatch):
    model = lc.lenet5("classic", seed=0)
    runner = DataParallel(model, 2)
    x, y = _batch(32)
    runner.train_step(x, y)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    process, _ = parallel._workers.running[0]
    process.kill()
    process.wait()
    monkeypatch.setattr(process, "poll", lambda: None)        # it dies after the check, mid-batch
    with pytest.raises(RuntimeError, match="stopped unexpectedly"):
        runner.train_step(x, y)
    monkeypatch.undo()
    for k, v in model.state_dict().items():                    # nothing was updated
        np.testing.assert_array_equal(v, before[k])
    assert runner.train_step(x, y)[0] > 0                      # a fresh worker took over


def test_no_shared_memory_files_are_left_behind():
    folder = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    before = set(glob.glob(os.path.join(folder, "lenet-core-*")))
    runner = DataParallel(lc.lenet5("classic", seed=0), 2)
    runner.train_step(*_batch(64))
    runner.train_step(*_batch(256))                            # a bigger batch: new, larger blocks
    runner.infer(_batch(1000)[0])
    assert set(glob.glob(os.path.join(folder, "lenet-core-*"))) <= before


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


def test_worker_stats():
    DataParallel(lc.lenet5("classic", seed=0), 2).infer(_batch(32)[0])
    stats = DataParallel.worker_stats()
    assert stats and all(s["peak_rss_mb"] > 0 and s["cpu_seconds"] >= 0 for s in stats)


def test_a_script_without_a_main_guard_can_train(tmp_path):
    """Workers are plain subprocesses, so a reader's top-level script is never re-run in them,
    and a diverging run's overflow warnings never reach the reader's terminal from a worker."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import numpy as np, lenet_core as lc
        print("script body runs")
        rng = np.random.default_rng(0)
        x, y = rng.random((64, 1, 32, 32), dtype=np.float32), rng.integers(0, 10, 64)
        model = lc.lenet5("classic", seed=0)
        lc.fit(model, lc.SGD(model, lr=0.01), x, y, epochs=1, batch_size=32, progress=False, processes=2)
        big = lc.DataParallel(model, 2)
        for layer in model.layers:
            for p in layer.params.values():
                p *= 1e30                                      # overflows everywhere
        with np.errstate(all="ignore"):                        # this process's share stays quiet
            big.train_step(x * 1e30, y)
        print("trained")
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["script", "body", "runs", "trained"]
    assert "Warning" not in out.stderr, out.stderr


def test_which_process_computes_a_shard_changes_no_bit(monkeypatch):
    """Shards go to whichever process takes them first: make this process late, so that the
    worker takes every shard, and the gradients are still bit-identical."""
    x, y = _batch(128, seed=9)
    runs = []
    for late in (False, True, False):
        model = lc.lenet5("classic", seed=0)
        runner = DataParallel(model, 2)
        runner.train_step(x[:16], y[:16])                      # the workers are up and the blocks made
        if late:
            tokens, taken = parallel._workers.tokens, []
            take = tokens.take

            def late_take(step):
                time.sleep(0.5)                                # meanwhile the worker takes every shard
                k = take(step)
                taken.append(k)
                return k

            monkeypatch.setattr(tokens, "take", late_take)
        loss, correct = runner.train_step(x, y)
        monkeypatch.undo()
        runs.append((loss, correct, {k: g.copy() for k, g in model.named_grads().items()}))
        if late:
            assert taken == [None], "the worker should have taken both shards"
    for loss, correct, grads in runs[1:]:
        assert (loss, correct) == runs[0][:2]
        for k in grads:
            np.testing.assert_array_equal(grads[k], runs[0][2][k], err_msg=k)
