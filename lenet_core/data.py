"""MNIST: find it, download it if needed, load it, and prepare it for LeNet-5.

Loading
-------
``load_mnist(split)`` returns uint8 images ``(N, 28, 28)`` and uint8 labels
``(N,)`` from a *root* directory holding the four canonical IDX files (gzipped
or not)::

    train-images-idx3-ubyte.gz   train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz    t10k-labels-idx1-ubyte.gz

The root is, in order of preference: the ``root`` argument, the environment
variable ``LENET_DATA_DIR``, or ``$XDG_CACHE_HOME/lenet_core/mnist``
(``~/.cache/lenet_core/mnist`` when ``XDG_CACHE_HOME`` is unset). Files already
on disk are used as they are, of any size, after structural checks only (see
``lenet_core.idx``), so any MNIST-format dataset works, e.g. Debian's
Fashion-MNIST in ``/usr/share/datasets/fashion-mnist``.

Files that are missing are downloaded from a list of mirrors, each verified
against its published MD5 before it is given its canonical name.

Preprocessing
-------------
``prepare_lenet_input`` turns uint8 ``(N, 28, 28)`` images into the classic
LeNet-5 input, float32 ``(N, 1, 32, 32)`` in [0, 1]; the smaller helpers it is
built from (``scale``, ``pad_to_32``, ``to_nchw``), plus ``one_hot``,
``iterate_minibatches`` and ``train_val_split``, are public too. Everything
stays float32.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .idx import IMAGES_MAGIC, LABELS_MAGIC, IDXFormatError, read_idx

__all__ = [
    "MNIST_FILES",
    "DEFAULT_MIRRORS",
    "MNISTDownloadError",
    "IDXFormatError",
    "default_root",
    "resolve_mirrors",
    "download_file",
    "load_mnist",
    "scale",
    "pad_to_32",
    "to_nchw",
    "one_hot",
    "iterate_minibatches",
    "train_val_split",
    "prepare_lenet_input",
]

# ---------------------------------------------------------------------------
# Where the files are
# ---------------------------------------------------------------------------

#: Canonical file name -> (published MD5, size in bytes) of the gzipped file.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28_881),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1_648_877),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4_542),
}

#: Split name -> (images file, labels file).
SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: Base URLs tried in order; a file's URL is the base plus its canonical name.
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

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


def resolve_mirrors(mirrors: str | Iterable[str] | None = None) -> list[str]:
    """The list of mirror base URLs to try, each ending in ``/``.

    ``mirrors`` (a sequence, or one string separated by commas or whitespace)
    wins; otherwise ``$LENET_MNIST_MIRRORS`` (same string format); otherwise
    ``DEFAULT_MIRRORS``. A missing trailing ``/`` is added. Any URL scheme
    urllib understands works, including ``file:///some/dir/``.

    Raises
    ------
    ValueError
        If the resulting list is empty.
    """
    if mirrors is None:
        mirrors = os.environ.get("LENET_MNIST_MIRRORS") or DEFAULT_MIRRORS
    if isinstance(mirrors, str):
        mirrors = mirrors.replace(",", " ").split()
    result = [m if m.endswith("/") else m + "/" for m in (m.strip() for m in mirrors) if m]
    if not result:
        raise ValueError("no MNIST mirrors given (empty `mirrors` argument or LENET_MNIST_MIRRORS)")
    return result


def _find_on_disk(root: Path, name: str) -> Path | None:
    """The existing file for canonical ``name`` in ``root``: un-gzipped copy first, then ``.gz``."""
    for candidate in (root / name.removesuffix(".gz"), root / name):
        if candidate.is_file():
            return candidate
    return None


def _manual_instructions(root: Path, names: Sequence[str]) -> str:
    """Text telling the reader how to put the MNIST files in place by hand."""
    listing = "\n".join(f"    {n}  (md5 {MNIST_FILES[n][0]})" for n in names)
    return (
        f"To install them by hand, get these files (gzipped as published, or un-gzipped "
        f"without the .gz suffix):\n{listing}\n"
        f"and put them in\n    {root}\n"
        "or in a directory of your choice and point the LENET_DATA_DIR environment "
        "variable (or the `root` argument) at it."
    )


# ---------------------------------------------------------------------------
# Downloading
# ---------------------------------------------------------------------------


class MNISTDownloadError(RuntimeError):
    """No mirror delivered a verified copy of an MNIST file.

    Attributes
    ----------
    filename : str
        The canonical file name that could not be downloaded.
    failures : list of (url, reason)
        Every mirror tried, with why it failed (after retries, the last reason).
    """

    def __init__(self, filename: str, failures: list[tuple[str, str]], root: Path, needed: Sequence[str]):
        self.filename = filename
        self.failures = list(failures)
        lines = [f"Could not download {filename} from any of {len(failures)} mirror(s):"]
        lines += [f"  - {url}: {reason}" for url, reason in failures]
        lines.append(_manual_instructions(root, needed))
        super().__init__("\n".join(lines))


class _MirrorFailure(Exception):
    """One attempt at one URL failed; ``reason`` is the text for the final error."""

    def __init__(self, reason: str, transient: bool):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient  # worth retrying the same URL


def _progress_bar(total: int | None, desc: str, quiet: bool):
    """A tqdm bar on stderr, or ``None`` when quiet or tqdm is not installed."""
    if quiet:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, leave=False)


def _explain(exc: BaseException, timeout: float) -> _MirrorFailure:
    """Translate a network exception into a short reason and whether to retry."""
    if isinstance(exc, urllib.error.HTTPError):
        transient = exc.code >= 500 or exc.code in (408, 429)
        return _MirrorFailure(f"HTTP {exc.code} ({exc.reason})", transient)
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, FileNotFoundError):  # file:// mirrors
        return _MirrorFailure("file not found", transient=False)
    if isinstance(exc, ConnectionRefusedError):
        return _MirrorFailure("connection refused", transient=False)
    if isinstance(exc, TimeoutError):
        return _MirrorFailure(f"timed out (no data for {timeout:g} s)", transient=True)
    if isinstance(exc, (ConnectionError, http.client.HTTPException)):
        return _MirrorFailure(f"connection error ({type(exc).__name__}: {exc})", transient=True)
    if isinstance(exc, urllib.error.URLError):
        return _MirrorFailure(f"cannot reach server ({exc.reason})", transient=False)  # e.g. unknown host
    if isinstance(exc, ValueError):  # e.g. "unknown url type"
        return _MirrorFailure(f"invalid URL ({exc})", transient=False)
    return _MirrorFailure(f"{type(exc).__name__}: {exc}", transient=False)


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ValueError)


def _fetch_once(url: str, dest, expected_md5: str, expected_size: int | None, timeout: float, quiet: bool) -> None:
    """Stream ``url`` into the open binary file ``dest`` and verify its MD5.

    Raises ``_MirrorFailure`` for any network problem, an early end of the
    stream, or a checksum mismatch. Local I/O errors propagate unchanged.
    """
    dest.seek(0)
    dest.truncate()
    md5 = hashlib.md5()
    received = 0
    declared = None
    request = urllib.request.Request(url, headers={"User-Agent": "lenet_core"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            declared = int(length) if length.isdigit() else None
            bar = _progress_bar(declared or expected_size, url.rsplit("/", 1)[-1], quiet)
            try:
                while chunk := response.read(1 << 16):
                    md5.update(chunk)
                    dest.write(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
    except (http.client.IncompleteRead, ConnectionResetError, ConnectionAbortedError) as exc:
        if received or declared is not None:  # the transfer had started
            raise _MirrorFailure(_closed_early(received, declared), transient=True) from exc
        raise _explain(exc, timeout) from exc
    except _NETWORK_ERRORS as exc:
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()  # an HTTPError holds the open response
        raise _explain(exc, timeout) from exc
    if declared is not None and received != declared:
        raise _MirrorFailure(_closed_early(received, declared), transient=True)
    digest = md5.hexdigest()
    if digest != expected_md5:
        size_note = ""
        if expected_size is not None and received != expected_size:
            size_note = f"; received {received} bytes, expected {expected_size}"
        raise _MirrorFailure(f"checksum mismatch (expected md5 {expected_md5}, got {digest}{size_note})", transient=False)


def _closed_early(received: int, declared: int | None) -> str:
    """Reason text for a transfer that stopped before its end."""
    of = f" of {declared}" if declared is not None else ""
    return f"connection closed after {received}{of} bytes"


def download_file(
    name: str,
    root: str | os.PathLike,
    mirrors: str | Iterable[str] | None = None,
    *,
    retries: int = 2,
    backoff: float = 0.5,
    timeout: float = 30.0,
    quiet: bool = False,
) -> Path:
    """Download one canonical MNIST file into ``root``, verified by MD5.

    Each mirror (see ``resolve_mirrors``) is tried in turn. A transient
    failure (timeout, connection dropped, HTTP 5xx) is retried up to
    ``retries`` times on the same mirror, sleeping ``backoff * 2**k`` seconds
    before retry ``k``; a refused connection, an HTTP 4xx error or a checksum
    mismatch moves straight on to the next mirror.

    The data is written to a hidden temporary file in ``root`` and renamed to
    ``root / name`` only once its MD5 matches ``MNIST_FILES``; on any failure,
    including KeyboardInterrupt, the temporary file is deleted, so an invalid
    file never appears under the canonical name.

    Parameters
    ----------
    name : str
        A key of ``MNIST_FILES``, e.g. ``"t10k-images-idx3-ubyte.gz"``.
    root : str or path-like
        Destination directory; created if missing.
    mirrors : str or iterable of str, optional
        Mirror base URLs; default from ``$LENET_MNIST_MIRRORS`` or ``DEFAULT_MIRRORS``.
    retries, backoff, timeout : int, float, float
        Retry count per mirror, base backoff in seconds, socket timeout in seconds.
    quiet : bool
        If False, show a tqdm progress bar on stderr (when tqdm is installed).

    Returns
    -------
    pathlib.Path
        The path of the verified file, ``root / name``.

    Raises
    ------
    MNISTDownloadError
        If every mirror failed; the message lists each URL with its reason.
    KeyError
        If ``name`` is not a canonical MNIST file name.
    """
    expected_md5, expected_size = MNIST_FILES[name]
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    failures: list[tuple[str, str]] = []
    fd, tmp_name = tempfile.mkstemp(dir=root, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w+b") as tmp:
            for base in resolve_mirrors(mirrors):
                url = base + name
                for attempt in range(retries + 1):
                    if attempt:
                        time.sleep(backoff * 2 ** (attempt - 1))
                    try:
                        _fetch_once(url, tmp, expected_md5, expected_size, timeout, quiet)
                    except _MirrorFailure as failure:
                        if failure.transient and attempt < retries:
                            continue
                        failures.append((url, failure.reason))
                        break
                    else:
                        tmp.flush()
                        os.fsync(tmp.fileno())
                        tmp.close()
                        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; the data is not
                        target = root / name
                        os.replace(tmp_name, target)
                        return target
        raise MNISTDownloadError(name, failures, root, [name])
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


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
        If files are missing and ``download`` is False; the message says
        which files are needed and where to put them.
    MNISTDownloadError
        If a missing file could not be downloaded from any mirror.
    IDXFormatError
        If a file is malformed, the images are not 28x28, labels fall outside
        0-9, or the images and labels counts differ.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    root = Path(root).expanduser() if root is not None else default_root()
    names = SPLITS[split]
    paths = {name: _find_on_disk(root, name) for name in names}
    missing = [name for name, path in paths.items() if path is None]
    if missing and not download:
        raise FileNotFoundError(
            f"MNIST {split} split: {', '.join(missing)} not found in {root} (download=False).\n"
            + _manual_instructions(root, missing)
            + "\nOr call load_mnist with download=True."
        )
    for name in missing:
        try:
            paths[name] = download_file(
                name, root, mirrors, retries=retries, backoff=backoff, timeout=timeout, quiet=quiet
            )
        except MNISTDownloadError as exc:
            raise MNISTDownloadError(name, exc.failures, root, missing) from None
    images_path, labels_path = (paths[name] for name in names)
    images = read_idx(images_path, expected_magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=LABELS_MAGIC)
    _check_pair(images, labels, images_path, labels_path)
    return images, labels


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


# ---------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------


def scale(images, mean: float | None = None, std: float | None = None) -> np.ndarray:
    """Pixel values 0-255 -> float32 in [0, 1], optionally standardized.

    Parameters
    ----------
    images : array_like
        Any shape, values 0-255 (normally uint8).
    mean, std : float, optional
        Give both to return ``(images / 255 - mean) / std`` instead; they are
        statistics of the *scaled* [0, 1] pixels.

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``images``; a new array.

    Raises
    ------
    ValueError
        If only one of ``mean``/``std`` is given, or ``std`` is not positive.
    """
    x = np.array(images, dtype=np.float32)  # always a copy, safe to modify in place
    x /= np.float32(255)
    if mean is None and std is None:
        return x
    if mean is None or std is None:
        raise ValueError("give both mean and std to standardize, or neither")
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    x -= np.float32(mean)
    x /= np.float32(std)
    return x


def to_nchw(images) -> np.ndarray:
    """Add the channel axis LeNet-5 expects: ``(N, H, W) -> (N, 1, H, W)``.

    A single image ``(H, W)`` becomes ``(1, 1, H, W)``; a 4-D array is taken
    to be ``(N, C, H, W)`` already and returned unchanged. The result is a
    view when possible; dtype is kept.

    Raises
    ------
    ValueError
        For arrays with fewer than 2 or more than 4 dimensions.
    """
    images = np.asarray(images)
    if images.ndim == 2:
        return images[np.newaxis, np.newaxis]
    if images.ndim == 3:
        return images[:, np.newaxis]
    if images.ndim == 4:
        return images
    raise ValueError(f"expected (H, W), (N, H, W) or (N, C, H, W) images, got shape {images.shape}")


def pad_to_32(images) -> np.ndarray:
    """Zero-pad 28x28 images by 2 pixels on every side to 32x32.

    LeNet-5 was designed for 32x32 inputs, so that strokes near the border of
    a 28x28 digit still reach the centre of the first layer's 5x5 receptive
    fields.

    Parameters
    ----------
    images : array_like
        Shape ``(..., 28, 28)``, e.g. ``(N, 28, 28)`` or ``(N, 1, 28, 28)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., 32, 32)``, same dtype; the border is 0.

    Raises
    ------
    ValueError
        If the last two dimensions are not 28x28.
    """
    images = np.asarray(images)
    if images.shape[-2:] != IMAGE_SHAPE or images.ndim < 2:
        raise ValueError(f"expected images of shape (..., 28, 28), got {images.shape}")
    pad = [(0, 0)] * (images.ndim - 2) + [(2, 2), (2, 2)]
    return np.pad(images, pad, mode="constant", constant_values=0)


def prepare_lenet_input(images) -> np.ndarray:
    """The classic LeNet-5 input: ``scale`` + ``pad_to_32`` + ``to_nchw``.

    Parameters
    ----------
    images : array_like
        uint8 ``(N, 28, 28)``, ``(N, 1, 28, 28)`` or one image ``(28, 28)``.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, 1, 32, 32)`` with values in [0, 1] and a zero border.
        Every model variant in the book uses exactly this input.
    """
    return to_nchw(pad_to_32(scale(images)))


MNIST_MEAN = 0.1307
"""Mean of the MNIST training pixels scaled to [0, 1]."""
MNIST_STD = 0.3081
"""Standard deviation of the MNIST training pixels scaled to [0, 1]."""


def standardize(x, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> np.ndarray:
    """``(x - mean) / std`` in float32: zero mean and unit spread for inputs in [0, 1].

    Applied after :func:`prepare_lenet_input`, the zero border becomes ``-mean/std``
    (about -0.42), as when padding comes before normalizing. The CLI trains on
    standardized inputs by default (``--no-normalize`` turns it off).
    """
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    x = np.array(x, dtype=np.float32)
    x -= np.float32(mean)
    x /= np.float32(std)
    return x


def one_hot(labels, num_classes: int = NUM_CLASSES, dtype=np.float32) -> np.ndarray:
    """Class indices ``(N,)`` -> one-hot rows ``(N, num_classes)``.

    Raises
    ------
    ValueError
        If labels are not integers or fall outside ``0 .. num_classes - 1``.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    out = np.zeros(labels.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, labels[..., np.newaxis].astype(np.intp), 1, axis=-1)
    return out


def _rng(seed) -> np.random.Generator:
    """A Generator from None, an int seed, or an existing Generator (used as is)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_same_length(x, y) -> None:
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")


def iterate_minibatches(
    x, y, batch_size: int, shuffle: bool = True, seed=None, drop_last: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x_batch, y_batch)`` pairs covering one epoch.

    Every index appears exactly once per epoch (once at most with
    ``drop_last``, which skips a final batch smaller than ``batch_size``).

    Parameters
    ----------
    x, y : numpy.ndarray
        Arrays with the same first dimension N, e.g. images ``(N, 1, 32, 32)``
        and labels ``(N,)``.
    batch_size : int
        Positive.
    shuffle : bool
        Visit the samples in random order (otherwise in order 0..N-1).
    seed : None, int or numpy.random.Generator
        An int gives the same order every time it is used; pass one Generator
        for all epochs to get a different, still reproducible, order each epoch.

    Yields
    ------
    x_batch, y_batch : numpy.ndarray
        ``x[idx]``, ``y[idx]`` for the batch's indices (copies, same dtypes).
    """
    _check_same_length(x, y)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(x)
    order = _rng(seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def train_val_split(
    x, y, val_fraction: float | None = None, val_size: int | None = None, seed=0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Randomly split ``(x, y)`` into disjoint training and validation parts.

    Parameters
    ----------
    x, y : numpy.ndarray
        Same first dimension N.
    val_fraction : float, optional
        Fraction in (0, 1) to hold out (rounded to a whole number of samples).
    val_size : int, optional
        Number of samples to hold out, in 1..N-1. Give at most one of
        ``val_fraction``/``val_size``; with neither, 10 % are held out.
    seed : None, int or numpy.random.Generator
        Seeds the shuffle; the default 0 makes the split reproducible.

    Returns
    -------
    (x_train, y_train), (x_val, y_val)
        Copies; together they hold every sample exactly once.

    Raises
    ------
    ValueError
        If both sizes are given, or the validation part would be empty or
        everything.
    """
    _check_same_length(x, y)
    n = len(x)
    if val_fraction is not None and val_size is not None:
        raise ValueError("give val_fraction or val_size, not both")
    if val_size is None:
        fraction = 0.1 if val_fraction is None else val_fraction
        if not 0 < fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
        val_size = int(round(fraction * n))
    if not 0 < val_size < n:
        raise ValueError(f"validation size must be between 1 and {n - 1} for {n} samples, got {val_size}")
    order = _rng(seed).permutation(n)
    val_idx, train_idx = order[:val_size], order[val_size:]
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])
