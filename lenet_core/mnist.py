"""Find the MNIST files, download the missing ones, and read a split as arrays.

``load_mnist(split)`` returns uint8 images ``(N, 28, 28)`` and uint8 labels
``(N,)`` from a *root* directory holding the four canonical IDX files (gzipped
or not)::

    train-images-idx3-ubyte.gz   train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz    t10k-labels-idx1-ubyte.gz

The root is, in order of preference: the ``root`` argument, the environment
variable ``LENET_DATA_DIR``, or ``$XDG_CACHE_HOME/lenet_core/mnist``
(``~/.cache/lenet_core/mnist`` when ``XDG_CACHE_HOME`` is unset). Files already
on disk are used as they are, of any size, after structural checks only (see
:mod:`lenet_core.idx`), so any MNIST-format dataset works, e.g. Debian's
Fashion-MNIST in ``/usr/share/datasets/fashion-mnist``. Missing files are
downloaded by :mod:`lenet_core.download`, after checking that the root can be
written; ``ensure_mnist`` does that for several splits at once, so that one error
lists every file that is missing. Turning the arrays into network input is
:mod:`lenet_core.preprocess`'s job.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from .download import POINT_AT_ROOT, MNISTDownloadError, check_writable, download_file, manual_instructions
from .idx import IMAGES_MAGIC, LABELS_MAGIC, IDXFormatError, read_idx, read_idx_header

__all__ = ["SPLITS", "IMAGE_SHAPE", "NUM_CLASSES", "MNISTNotFoundError", "default_root", "missing_files",
           "ensure_mnist", "load_mnist"]

SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


IMAGE_SHAPE = (28, 28)


NUM_CLASSES = 10


def default_root() -> Path:
    """Directory where MNIST is looked for and downloaded to when no root is given.

    ``$LENET_DATA_DIR`` if set, otherwise ``$XDG_CACHE_HOME/lenet_core/mnist``,
    otherwise ``~/.cache/lenet_core/mnist``. The directory may not exist yet.
    """
    override = os.environ.get("LENET_DATA_DIR", "").strip()
    if override:
        return Path(override).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "lenet_core" / "mnist"


class MNISTNotFoundError(FileNotFoundError):
    """MNIST files are missing and downloading was not allowed.

    Attributes: ``root`` (where they were looked for) and ``missing`` (every missing canonical name).
    """

    def __init__(self, root: Path, missing, point_at: str = POINT_AT_ROOT,
                 allow_download: str = "Or call load_mnist with download=True."):
        self.root, self.missing = Path(root), list(missing)
        what = ", ".join(self.missing)
        super().__init__(f"MNIST files not found in {root}: {what}.\n"
                         + manual_instructions(root, self.missing, point_at) + f"\n{allow_download}")

    def __str__(self):
        return self.args[0]


def _find_on_disk(root: Path, name: str) -> Path | None:
    """The existing file for canonical ``name`` in ``root``: un-gzipped copy first, then ``.gz``."""
    for candidate in (root / name.removesuffix(".gz"), root / name):
        if candidate.is_file():
            return candidate
    return None


def load_mnist(
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = True,
    mirrors: str | Iterable[str] | None = None,
    *,
    retries: int = 2,
    backoff: float = 0.5,
    timeout: float = 30.0,
    quiet: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one MNIST split, downloading the files it needs if they are missing.

    Parameters
    ----------
    split : {"train", "test"}
        Which split; the test split lives in the ``t10k-*`` files.
    root : str or path-like, optional
        Directory with the IDX files; default ``default_root()``. Any directory
        with the four canonical names (gzipped or not) works, for instance
        Fashion-MNIST. Files found there are checked structurally, not by MD5,
        so smaller or different datasets in the same format load fine.
    download : bool
        If True, missing files of this split are downloaded (see
        ``download_file``); if False, a missing file is an error.
    mirrors : str or iterable of str, optional
        Mirror base URLs, replacing ``$LENET_MNIST_MIRRORS`` / ``DEFAULT_MIRRORS``.
    retries, backoff, timeout, quiet
        Passed to ``download_file``.

    Returns
    -------
    images : numpy.ndarray
        uint8, shape ``(N, 28, 28)``, pixel values 0 (background) to 255.
    labels : numpy.ndarray
        uint8, shape ``(N,)``, digits 0 to 9.

    Raises
    ------
    ValueError
        If ``split`` is not "train" or "test".
    FileNotFoundError
        If files are missing and ``download`` is False (a :class:`MNISTNotFoundError`);
        the message says which files are needed and where to put them.
    PermissionError
        If files are missing and ``root`` cannot be written (a
        :class:`~lenet_core.download.DataDirNotWritable`), before anything is downloaded.
    MNISTDownloadError
        If a missing file could not be downloaded from any mirror.
    IDXFormatError
        If a file is malformed, the images are not 28x28, labels fall outside
        0-9, or the images and labels counts differ (the shapes are checked from
        the headers before any data is read).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    paths = ensure_mnist(root, [split], download, mirrors, retries=retries, backoff=backoff, timeout=timeout,
                         quiet=quiet)
    images_path, labels_path = (paths[name] for name in SPLITS[split])
    _check_headers(images_path, labels_path)          # the shapes, before any pixel is read
    images = read_idx(images_path, expected_magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=LABELS_MAGIC)
    _check_pair(images, labels, images_path, labels_path)
    return images, labels


def missing_files(root=None, splits=tuple(SPLITS)) -> list[str]:
    """The canonical names of the files of ``splits`` that are not in ``root`` (gzipped or not)."""
    root = Path(root).expanduser() if root is not None else default_root()
    return [name for split in splits for name in SPLITS[split] if _find_on_disk(root, name) is None]


def ensure_mnist(root=None, splits=tuple(SPLITS), download: bool = True, mirrors=None, *, retries: int = 2,
                 backoff: float = 0.5, timeout: float = 30.0, quiet: bool = False, point_at: str = POINT_AT_ROOT,
                 allow_download: str = "Or call load_mnist with download=True.") -> dict:
    """Make sure the files of every split in ``splits`` are in ``root``; ``{name: path}``.

    Missing files are downloaded (after checking that ``root`` can be written) unless
    ``download`` is False. Every error names *all* the missing files of all the splits,
    so one message tells the whole story. ``point_at`` and ``allow_download`` word the
    advice for the caller (the command line names its ``--data-dir`` and
    ``--no-download`` flags).

    Raises :class:`MNISTNotFoundError` (files missing, ``download=False``),
    :class:`~lenet_core.download.DataDirNotWritable` or
    :class:`~lenet_core.download.MNISTDownloadError`.
    """
    root = Path(root).expanduser() if root is not None else default_root()
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    names = [name for split in splits for name in SPLITS[split]]
    paths = {name: _find_on_disk(root, name) for name in names}
    missing = [name for name, path in paths.items() if path is None]
    if missing and not download:
        raise MNISTNotFoundError(root, missing, point_at, allow_download)
    if missing:
        check_writable(root, missing, point_at)
    for i, name in enumerate(missing):
        try:
            paths[name] = download_file(name, root, mirrors, retries=retries, backoff=backoff, timeout=timeout,
                                        quiet=quiet)
        except MNISTDownloadError as exc:
            raise MNISTDownloadError(name, exc.failures, root, missing[i:], point_at) from None
    return paths


def _check_headers(images_path: Path, labels_path: Path) -> None:
    """IDXFormatError unless the two headers describe a consistent split of 28x28 images."""
    images = read_idx_header(images_path, expected_magic=IMAGES_MAGIC)
    labels = read_idx_header(labels_path, expected_magic=LABELS_MAGIC)
    if images[1:] != IMAGE_SHAPE:
        raise IDXFormatError(f"{images_path}: images are {images[1:]}, expected {IMAGE_SHAPE}")
    if images[0] != labels[0]:
        raise IDXFormatError(f"{images_path} holds {images[0]} images but {labels_path} holds {labels[0]} labels")


def _check_pair(images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path) -> None:
    """Raise IDXFormatError unless images and labels form a consistent MNIST split."""
    if images.shape[1:] != IMAGE_SHAPE:
        raise IDXFormatError(f"{images_path}: images are {images.shape[1:]}, expected {IMAGE_SHAPE}")
    if len(images) != len(labels):
        raise IDXFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        raise IDXFormatError(f"{labels_path}: label {labels.max()} is outside 0-{NUM_CLASSES - 1}")

