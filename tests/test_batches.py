"""Mini-batches and the train/validation split (lenet_core.batches)."""
from __future__ import annotations

import numpy as np
import pytest

from lenet_core.batches import iterate_minibatches, train_val_split


def batches(n=103, batch_size=10, **kwargs):
    x = np.arange(n, dtype=np.float32).reshape(n, 1) * np.ones((1, 3), dtype=np.float32)
    y = np.arange(n)
    return list(iterate_minibatches(x, y, batch_size, **kwargs))


@pytest.mark.parametrize("shuffle", [True, False])
def test_minibatches_cover_each_index_once(shuffle):
    result = batches(seed=1, shuffle=shuffle)
    assert [len(yb) for _, yb in result] == [10] * 10 + [3]
    seen = np.concatenate([yb for _, yb in result])
    assert sorted(seen.tolist()) == list(range(103))
    for xb, yb in result:  # x and y stay paired
        assert xb.dtype == np.float32 and xb.shape == (len(yb), 3)
        np.testing.assert_array_equal(xb[:, 0], yb)
    assert (seen == np.arange(103)).all() != shuffle


def test_minibatches_drop_last():
    result = batches(seed=1, drop_last=True)
    assert [len(yb) for _, yb in result] == [10] * 10
    assert len(set(np.concatenate([yb for _, yb in result]).tolist())) == 100


def test_minibatches_reproducible():
    order = lambda result: np.concatenate([yb for _, yb in result]).tolist()
    assert order(batches(seed=7)) == order(batches(seed=7))
    assert order(batches(seed=7)) != order(batches(seed=8))
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    epochs_a = [order(batches(seed=rng_a)) for _ in range(2)]
    epochs_b = [order(batches(seed=rng_b)) for _ in range(2)]
    assert epochs_a == epochs_b  # same generator seed, same sequence of epochs
    assert epochs_a[0] != epochs_a[1]  # but each epoch is shuffled afresh


def test_minibatches_validate_arguments():
    with pytest.raises(ValueError):
        batches(batch_size=0)
    with pytest.raises(ValueError):
        list(iterate_minibatches(np.zeros(3), np.zeros(4), 2))


def test_train_val_split():
    x = np.arange(100, dtype=np.float32)
    y = np.arange(100)
    (x_tr, y_tr), (x_val, y_val) = train_val_split(x, y, val_fraction=0.2, seed=0)
    assert len(x_val) == 20 and len(x_tr) == 80
    assert set(y_tr.tolist()).isdisjoint(y_val.tolist())
    assert sorted(np.concatenate([y_tr, y_val]).tolist()) == list(range(100))
    np.testing.assert_array_equal(x_tr, y_tr.astype(np.float32))  # pairs kept
    assert x_tr.dtype == np.float32
    (_, y_tr2), (_, y_val2) = train_val_split(x, y, val_fraction=0.2, seed=0)
    np.testing.assert_array_equal(y_val, y_val2)
    assert len(train_val_split(x, y, val_size=7)[1][0]) == 7
    assert len(train_val_split(x, y)[1][0]) == 10  # default 10 %
    for bad in (dict(val_fraction=0.0), dict(val_fraction=1.0), dict(val_size=100), dict(val_size=0),
                dict(val_fraction=0.1, val_size=5)):
        with pytest.raises(ValueError):
            train_val_split(x, y, **bad)
