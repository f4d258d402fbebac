"""Download the MNIST files from public mirrors, each checked against its published MD5.

``download_file(name, root)`` tries every mirror in turn (``resolve_mirrors``:
the argument, ``$LENET_MNIST_MIRRORS`` or ``DEFAULT_MIRRORS``), retries
transient failures with a backoff, writes into a hidden ``.part`` file and gives
the file its canonical name only once its MD5 matches ``MNIST_FILES`` (see
:mod:`lenet_core.files`; ``.part`` files that a killed download left behind are
deleted by the next one). ``check_writable(root)`` says early, and clearly, when
the files could not be saved. Finding and reading the files is
:mod:`lenet_core.mnist`'s job.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Sequence

from .files import atomic_write, remove_stale, temp_name
from .progress import progress_bar

__all__ = ["MNIST_FILES", "DEFAULT_MIRRORS", "MNISTDownloadError", "DataDirNotWritable", "resolve_mirrors",
           "download_file", "manual_instructions", "check_writable", "POINT_AT_ROOT"]

MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28_881),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1_648_877),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4_542),
}


DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


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


#: How the Python API names the place to look for the files (the command line says ``--data-dir DIR``).
POINT_AT_ROOT = "the LENET_DATA_DIR environment variable (or the `root` argument)"


def manual_instructions(root: Path, names: Sequence[str], point_at: str = POINT_AT_ROOT) -> str:
    """Text telling the reader how to put the MNIST files in place by hand."""
    listing = "\n".join(f"    {n}  (md5 {MNIST_FILES[n][0]})" for n in names)
    return (
        f"To install them by hand, get these files (gzipped as published, or un-gzipped "
        f"without the .gz suffix):\n{listing}\n"
        f"and put them in\n    {root}\n"
        f"or in a directory of your choice and point {point_at} at it."
    )


class DataDirNotWritable(PermissionError):
    """Missing MNIST files cannot be downloaded because their directory cannot be written.

    Attributes: ``root`` (the directory), ``reason`` (what the system said) and
    ``needed`` (the files that are missing).
    """

    def __init__(self, root: Path, reason: str, needed: Sequence[str], point_at: str = POINT_AT_ROOT):
        self.root, self.reason, self.needed = Path(root), reason, list(needed)
        super().__init__(
            f"Cannot download MNIST into {root}: {reason}.\nPoint {point_at} at a directory you can "
            f"write to, or make this one writable.\n" + manual_instructions(root, needed, point_at))

    def __str__(self):
        return self.args[0]


def check_writable(root, needed: Sequence[str] = tuple(MNIST_FILES), point_at: str = POINT_AT_ROOT) -> Path:
    """Create ``root`` if needed and check that a file can be written there, before any download.

    Raises :class:`DataDirNotWritable` naming the directory, the reason and what to do.
    """
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / temp_name("write-check", ".part")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except FileExistsError:
        raise DataDirNotWritable(root, "a file of that name exists where the directory should be", needed,
                                 point_at) from None
    except NotADirectoryError:
        raise DataDirNotWritable(root, "part of the path is a file, not a directory", needed, point_at) from None
    except OSError as exc:
        raise DataDirNotWritable(root, (exc.strerror or str(exc)).lower(), needed, point_at) from None
    return root


class MNISTDownloadError(RuntimeError):
    """No mirror delivered a verified copy of an MNIST file.

    Attributes
    ----------
    filename : str
        The canonical file name that could not be downloaded.
    failures : list of (url, reason)
        Every mirror tried, with why it failed (after retries, the last reason).
    """

    def __init__(self, filename: str, failures: list[tuple[str, str]], root: Path, needed: Sequence[str],
                 point_at: str = POINT_AT_ROOT):
        self.filename = filename
        self.failures = list(failures)
        self.root, self.needed = Path(root), list(needed)
        lines = [f"Could not download {filename} from any of {len(failures)} mirror(s):"]
        lines += [f"  - {url}: {reason}" for url, reason in failures]
        lines.append(manual_instructions(root, needed, point_at))
        super().__init__("\n".join(lines))


class _MirrorFailure(Exception):
    """One attempt at one URL failed; ``reason`` is the text for the final error."""

    def __init__(self, reason: str, transient: bool):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient  # worth retrying the same URL


def _progress_bar(total: int | None, desc: str, quiet: bool):
    """A tqdm bar on stderr (in a terminal or notebook), or ``None`` when quiet."""
    if quiet:
        return None
    return progress_bar(total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)


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
    file never appears under the canonical name. Temporary files that killed
    downloads of the same file left behind are deleted first.

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
        If False, show a tqdm progress bar on stderr.

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
    MNIST_FILES[name]   # a KeyError for a name that is not an MNIST file, before anything is written
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale(root, name, ".part")
    failures: list[tuple[str, str]] = []
    target = root / name
    with atomic_write(target, ".part") as tmp:   # renamed to `target` only if the block ends normally
        if not _fetch_from_mirrors(name, tmp, resolve_mirrors(mirrors), failures, retries, backoff, timeout,
                                   quiet):
            raise MNISTDownloadError(name, failures, root, [name])
    return target


def _fetch_from_mirrors(name, tmp, mirrors, failures, retries, backoff, timeout, quiet) -> bool:
    """Try each mirror in turn (retrying transient failures) until one delivers a verified copy
    into ``tmp``; True on success, otherwise False with every mirror's reason in ``failures``."""
    expected_md5, expected_size = MNIST_FILES[name]
    for base in mirrors:
        url = base + name
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(backoff * 2 ** (attempt - 1))
            try:
                _fetch_once(url, tmp, expected_md5, expected_size, timeout, quiet)
                return True
            except _MirrorFailure as failure:
                if not (failure.transient and attempt < retries):
                    failures.append((url, failure.reason))
                    break
    return False
