"""Loading MNIST roots from disk, and the preprocessing helpers."""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from lenet_core.data import (
    DEFAULT_MIRRORS,
    default_root,
    iterate_minibatches,
    load_mnist,
    one_hot,
    pad_to_32,
    prepare_lenet_input,
    resolve_mirrors,
    scale,
    to_nchw,
    train_val_split,
)
from lenet_core.idx import IDXFormatError, write_idx

pytestmark = pytest.mark.usefixtures("clean_mnist_env")

NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


def make_root(directory: Path, split="train", n=6, m=None, size=28, max_label=9, gz=True) -> Path:
    """Write a small synthetic MNIST-format split into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    labels = rng.integers(0, max_label + 1, size=n if m is None else m, dtype=np.uint8)
    labels[0] = max_label
    suffix = ".gz" if gz else ""
    write_idx(directory / (NAMES[split][0] + suffix), images)
    write_idx(directory / (NAMES[split][1] + suffix), labels)
    return directory


@pytest.fixture(scope="module")
def mnist_10k(mnist_10k_dir):
    """Both splits of the offline 10k root, loaded once."""
    return {split: load_mnist(split, root=mnist_10k_dir, download=False) for split in ("train", "test")}


# --- the offline MNIST root ----------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_10k_shapes_and_dtypes(mnist_10k, split):
    images, labels = mnist_10k[split]
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and images.min() == 0


def test_mnist_10k_content_is_mnist(mnist_10k):
    """Well-known facts about MNIST: first labels of each split; digits are centred."""
    assert mnist_10k["train"][1][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist_10k["test"][1][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    images = mnist_10k["train"][0]
    assert images[:, :2, :].mean() < 1 and images[:, :, -2:].mean() < 1  # empty borders
    assert images[:, 10:18, 10:18].mean() > 2 * images.mean()  # ink in the middle


def test_lenet_data_dir_is_honoured(monkeypatch, mnist_10k_dir, mnist_10k):
    monkeypatch.setenv("LENET_DATA_DIR", str(mnist_10k_dir))
    images, labels = load_mnist("test", download=False)
    np.testing.assert_array_equal(labels, mnist_10k["test"][1])


def test_uncompressed_root(tmp_path, mnist_10k_dir, mnist_10k):
    for name in NAMES["test"]:
        (tmp_path / name).write_bytes(gzip.decompress((mnist_10k_dir / f"{name}.gz").read_bytes()))
    images, labels = load_mnist("test", root=tmp_path, download=False)
    np.testing.assert_array_equal(images, mnist_10k["test"][0])
    np.testing.assert_array_equal(labels, mnist_10k["test"][1])


def test_mixed_gz_and_plain_root(tmp_path, mnist_10k_dir, mnist_10k):
    images_name, labels_name = NAMES["train"]
    shutil.copyfile(mnist_10k_dir / f"{images_name}.gz", tmp_path / f"{images_name}.gz")
    (tmp_path / labels_name).write_bytes(gzip.decompress((mnist_10k_dir / f"{labels_name}.gz").read_bytes()))
    images, labels = load_mnist("train", root=str(tmp_path), download=False)
    assert images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(labels, mnist_10k["train"][1])


@pytest.mark.skipif(not FASHION_ROOT.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_root():
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = load_mnist(split, root=FASHION_ROOT, download=False)
        assert images.shape == (n, 28, 28) and labels.shape == (n,)


# --- roots, synthetic ---------------------------------------------------------------------

def test_any_size_root(tmp_path):
    images, labels = load_mnist("train", root=make_root(tmp_path, n=3), download=False)
    assert images.shape == (3, 28, 28) and labels.shape == (3,)


def test_missing_files_without_download(tmp_path):
    make_root(tmp_path, split="train")
    with pytest.raises(FileNotFoundError) as info:
        load_mnist("test", root=tmp_path, download=False)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path) in message and "LENET_DATA_DIR" in message and "download=True" in message
    assert "train-" not in message


def test_missing_files_never_touch_the_network_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("LENET_MNIST_MIRRORS", "http://127.0.0.1:9/")
    with pytest.raises(FileNotFoundError):
        load_mnist("train", root=tmp_path / "nothing-here", download=False)
    assert not (tmp_path / "nothing-here").exists()


def test_count_mismatch(tmp_path):
    make_root(tmp_path, n=5, m=4)
    with pytest.raises(IDXFormatError, match="5 images but .* 4 labels"):
        load_mnist("train", root=tmp_path, download=False)


def test_images_not_28x28(tmp_path):
    make_root(tmp_path, size=32)
    with pytest.raises(IDXFormatError, match=r"\(32, 32\), expected \(28, 28\)"):
        load_mnist("train", root=tmp_path, download=False)


def test_labels_out_of_range(tmp_path):
    make_root(tmp_path, max_label=10)
    with pytest.raises(IDXFormatError, match="label 10 is outside 0-9"):
        load_mnist("train", root=tmp_path, download=False)


def test_swapped_files_are_detected(tmp_path):
    make_root(tmp_path, gz=False)
    images_name, labels_name = NAMES["train"]
    os.rename(tmp_path / images_name, tmp_path / "tmp")
    os.rename(tmp_path / labels_name, tmp_path / images_name)
    os.rename(tmp_path / "tmp", tmp_path / labels_name)
    with pytest.raises(IDXFormatError, match="labels file"):
        load_mnist("train", root=tmp_path, download=False)


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation", download=False)


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_root() == tmp_path / ".cache" / "lenet_core" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "lenet_core" / "mnist"
    monkeypatch.setenv("LENET_DATA_DIR", str(tmp_path / "mine"))
    assert default_root() == tmp_path / "mine"


def test_resolve_mirrors(monkeypatch):
    assert resolve_mirrors() == list(DEFAULT_MIRRORS)
    assert all(m.endswith("/") for m in DEFAULT_MIRRORS)
    monkeypatch.setenv("LENET_MNIST_MIRRORS", "http://a/x, http://b/y/\n  http://c/")
    assert resolve_mirrors() == ["http://a/x/", "http://b/y/", "http://c/"]
    assert resolve_mirrors(["http://d"]) == ["http://d/"]  # argument beats environment
    assert resolve_mirrors("http://e/ http://f/") == ["http://e/", "http://f/"]
    with pytest.raises(ValueError):
        resolve_mirrors([])


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
