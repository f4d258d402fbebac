"""Loading MNIST roots from disk (lenet_core.mnist)."""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from lenet_core.idx import IDXFormatError, write_idx
from lenet_core.mnist import default_root, load_mnist

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
    """Well-known facts about MNIST: first labels of each split; digits are centered."""
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


# --- everything checked before any work: all missing files at once, a writable root, the headers ---

def test_ensure_mnist_names_every_missing_file_of_every_split(tmp_path):
    from lenet_core.mnist import MNISTNotFoundError, ensure_mnist
    make_root(tmp_path, split="test")
    with pytest.raises(MNISTNotFoundError) as info:
        ensure_mnist(tmp_path, ["train", "test"], download=False, point_at="--data-dir",
                     allow_download="Or drop --no-download.")
    error = info.value
    assert error.missing == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    message = str(error)
    assert all(name in message for name in error.missing) and "t10k" not in message
    assert "--data-dir" in message and "Or drop --no-download." in message and "`root`" not in message
    with pytest.raises(MNISTNotFoundError) as info:
        ensure_mnist(tmp_path / "empty", ["train", "test"], download=False)
    assert len(info.value.missing) == 4 and all(n + ".gz" in str(info.value) for split in NAMES.values()
                                                 for n in split)


def _refuse_writes_in(monkeypatch, directory: Path):
    """As if ``directory`` were read-only (the tests run as root, who may write anywhere)."""
    real_open = os.open

    def guarded(path, flags, *args, **kwargs):
        if Path(path).parent == directory and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)


def test_read_only_root_is_reported_before_any_download(tmp_path, monkeypatch):
    """Item 6: the missing files would be downloaded into a directory that cannot be written; say
    which directory and what to do, instead of a bare errno after connecting to a mirror."""
    from lenet_core.download import DataDirNotWritable
    root = tmp_path / "readonly"
    root.mkdir()
    _refuse_writes_in(monkeypatch, root)
    tried = []
    monkeypatch.setattr("lenet_core.download._fetch_once", lambda *a, **k: tried.append(a))
    with pytest.raises(PermissionError) as info:
        load_mnist("test", root=root, mirrors=["http://127.0.0.1:9/"], retries=0, quiet=True)
    assert isinstance(info.value, DataDirNotWritable) and tried == []
    message = str(info.value)
    assert message.startswith(f"Cannot download MNIST into {root}: permission denied")
    assert "LENET_DATA_DIR" in message and "t10k-images-idx3-ubyte.gz" in message


def test_split_shapes_come_from_the_headers_before_any_pixel_is_read(tmp_path):
    """A count mismatch is found from the two headers; the 78 MB of images are never inflated."""
    import struct
    import tracemalloc
    with gzip.GzipFile(tmp_path / "train-images-idx3-ubyte.gz", "wb", mtime=0) as f:
        f.write(struct.pack(">HBB3I", 0, 8, 3, 100_000, 28, 28))
        for _ in range(75):
            f.write(bytes(1 << 20))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    tracemalloc.start()
    try:
        with pytest.raises(IDXFormatError, match="100000 images but .* 4 labels"):
            load_mnist("train", root=tmp_path, download=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
