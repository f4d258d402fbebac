"""Downloading MNIST from mirrors, against real HTTP servers on 127.0.0.1.

The servers serve the byte-exact published files from <shared>/data/mnist-canonical
(t10k images/labels, train labels) or modified copies built in tmp_path.
"""
from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from lenet_core import download, progress
from lenet_core.download import DEFAULT_MIRRORS, MNIST_FILES, MNISTDownloadError, download_file, resolve_mirrors
from lenet_core.mnist import load_mnist
from lenet_core.idx import IDXFormatError

pytestmark = pytest.mark.usefixtures("clean_mnist_env")

TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
FAST = dict(retries=0, backoff=0.0, timeout=5.0, quiet=True)
SERVER_LIFETIME = 60.0  # seconds; a forgotten server shuts itself down


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``server.directory``; records requests; can cut or fail responses on demand."""

    def __init__(self, request, client_address, server):
        super().__init__(request, client_address, server, directory=str(server.directory))

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        self.server.requests.append(name)
        if self.server.fail_first.get(name, 0) > 0:
            self.server.fail_first[name] -= 1
            self.send_error(503, "try again")
            return
        if name in self.server.cut_after:
            body = (self.server.directory / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: self.server.cut_after[name]])
            self.wfile.flush()
            self.close_connection = True
            return
        self.path = "/" + name  # the mirror's base path (/mnist/) maps to the directory
        super().do_GET()


class Mirror:
    """A threaded HTTP server on an ephemeral 127.0.0.1 port serving one directory."""

    def __init__(self, directory: Path):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.directory = Path(directory)
        self.httpd.requests = []
        self.httpd.cut_after = {}
        self.httpd.fail_first = {}
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mnist/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._watchdog = threading.Timer(SERVER_LIFETIME, self.httpd.shutdown)
        self._watchdog.daemon = True

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def cut(self, name: str, after: int) -> None:
        """Announce the full Content-Length for ``name`` but close after ``after`` bytes."""
        self.httpd.cut_after[name] = after

    def fail_first(self, name: str, times: int) -> None:
        """Answer the first ``times`` requests for ``name`` with HTTP 503."""
        self.httpd.fail_first[name] = times

    def start(self) -> "Mirror":
        self._thread.start()
        self._watchdog.start()
        return self

    def stop(self) -> None:
        self._watchdog.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def serve():
    """``serve(directory) -> Mirror``: start a server; all are stopped after the test."""
    started = []

    def start(directory) -> Mirror:
        mirror = Mirror(directory).start()
        started.append(mirror)
        return mirror

    yield start
    for mirror in started:
        mirror.stop()


@pytest.fixture
def canonical(serve, mnist_canonical_dir) -> Mirror:
    """A good mirror of the published files (train images excepted)."""
    return serve(mnist_canonical_dir)


@pytest.fixture
def modified(tmp_path, mnist_canonical_dir):
    """A writable copy of the canonical files to damage; returns its directory."""
    directory = tmp_path / "served"
    shutil.copytree(mnist_canonical_dir, directory)
    for path in directory.iterdir():
        path.chmod(0o644)
    return directory


@pytest.fixture
def refused_url() -> str:
    """A URL on a port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@pytest.fixture
def silent_url():
    """A URL whose server accepts connections but never answers (timeout)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/mnist/"
    sock.close()


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def assert_clean(cache: Path, name: str) -> None:
    """Nothing invalid left behind: no file under the canonical name, no temporary file."""
    leftovers = sorted(p.name for p in cache.iterdir()) if cache.exists() else []
    assert name not in leftovers
    assert name.removesuffix(".gz") not in leftovers
    assert not [n for n in leftovers if n.endswith(".part") or n.startswith(".")], leftovers


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- success ------------------------------------------------------------------------------

def test_downloads_test_split_and_verifies(canonical, cache, mnist_canonical_dir):
    images, labels = load_mnist("test", root=cache, mirrors=[canonical.url], **FAST)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known start of the MNIST test set
    assert sorted(canonical.requests) == [TEST_IMAGES, TEST_LABELS]
    for name in (TEST_IMAGES, TEST_LABELS):
        assert md5(cache / name) == MNIST_FILES[name][0]
        assert (cache / name).stat().st_mode & 0o444 == 0o444  # readable by all, like any download
    assert sorted(p.name for p in cache.iterdir()) == [TEST_IMAGES, TEST_LABELS]  # no temp files

    load_mnist("test", root=cache, mirrors=[canonical.url], **FAST)
    assert len(canonical.requests) == 2  # second load uses the cache


def test_downloads_only_missing_files_of_the_split(canonical, cache, mnist_10k_dir):
    """Train images already present (the 10k subset): only train labels are fetched.

    The published labels file has 60,000 labels, so the pair is then inconsistent,
    which the loader must report rather than silently truncate.
    """
    cache.mkdir()
    shutil.copyfile(mnist_10k_dir / TRAIN_IMAGES, cache / TRAIN_IMAGES)
    with pytest.raises(IDXFormatError, match="10000 images but .* 60000 labels"):
        load_mnist("train", root=cache, mirrors=[canonical.url], **FAST)
    assert canonical.requests == [TRAIN_LABELS]
    assert md5(cache / TRAIN_LABELS) == MNIST_FILES[TRAIN_LABELS][0]


def test_first_mirror_refused_second_serves(refused_url, canonical, cache):
    path = download_file(TEST_LABELS, cache, mirrors=[refused_url, canonical.url], **FAST)
    assert path == cache / TEST_LABELS
    assert md5(path) == MNIST_FILES[TEST_LABELS][0]


def test_mirrors_from_environment(monkeypatch, refused_url, canonical, cache):
    monkeypatch.setenv("LENET_MNIST_MIRRORS", f"{refused_url}, {canonical.url.rstrip('/')}")
    download_file(TEST_LABELS, cache, **FAST)
    assert canonical.requests == [TEST_LABELS]


def test_file_url_mirror(mnist_canonical_dir, cache):
    """A local directory works as a mirror too, through a file:// URL."""
    mirror = mnist_canonical_dir.as_uri()
    download_file(TEST_LABELS, cache, mirrors=mirror, **FAST)
    assert md5(cache / TEST_LABELS) == MNIST_FILES[TEST_LABELS][0]
    error = fail(TRAIN_IMAGES, cache, [mirror])
    assert error.failures == [(mirror + "/" + TRAIN_IMAGES, "file not found")]


def test_transient_error_is_retried(canonical, cache):
    canonical.fail_first(TEST_LABELS, 2)
    download_file(TEST_LABELS, cache, mirrors=[canonical.url], retries=2, backoff=0.0, quiet=True)
    assert canonical.requests == [TEST_LABELS] * 3
    assert md5(cache / TEST_LABELS) == MNIST_FILES[TEST_LABELS][0]


def test_not_found_is_not_retried(serve, modified, cache):
    (modified / TEST_LABELS).unlink()
    mirror = serve(modified)
    with pytest.raises(MNISTDownloadError):
        download_file(TEST_LABELS, cache, mirrors=[mirror.url], retries=3, backoff=0.0, quiet=True)
    assert mirror.requests == [TEST_LABELS]


def test_progress_bar_on_stderr_in_a_terminal(canonical, cache, capfd, monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda stream=None: True)   # as if stderr were a terminal
    download_file(TEST_LABELS, cache, mirrors=[canonical.url], retries=0, quiet=False)
    out, err = capfd.readouterr()
    assert out == ""
    assert TEST_LABELS in err


def test_no_progress_bar_in_a_log(canonical, cache, capfd):
    """stderr captured (not a terminal), as in a CI log: no carriage-return bars."""
    download_file(TEST_LABELS, cache, mirrors=[canonical.url], retries=0, quiet=False)
    assert capfd.readouterr() == ("", "")


def test_quiet_prints_nothing(canonical, cache, capfd):
    download_file(TEST_LABELS, cache, mirrors=[canonical.url], **FAST)
    assert capfd.readouterr() == ("", "")


# --- failures: every mirror's reason, nothing invalid left behind ------------------------

def fail(name, cache, mirrors, **kwargs) -> MNISTDownloadError:
    options = {**FAST, **kwargs}
    with pytest.raises(MNISTDownloadError) as info:
        download_file(name, cache, mirrors=mirrors, **options)
    assert_clean(cache, name)
    return info.value


def test_connection_refused(refused_url, cache):
    error = fail(TEST_LABELS, cache, [refused_url])
    assert error.failures == [(refused_url + TEST_LABELS, "connection refused")]


def test_missing_file_404(serve, modified, cache):
    (modified / TEST_LABELS).unlink()
    mirror = serve(modified)
    error = fail(TEST_LABELS, cache, [mirror.url])
    assert error.failures[0][1].startswith("HTTP 404")


def test_truncated_file(serve, modified, cache):
    path = modified / TEST_LABELS
    path.write_bytes(path.read_bytes()[:1000])
    mirror = serve(modified)
    (url, reason), = fail(TEST_LABELS, cache, [mirror.url]).failures
    expected = MNIST_FILES[TEST_LABELS][0]
    assert reason.startswith(f"checksum mismatch (expected md5 {expected}, got {md5(path)}")
    assert "received 1000 bytes, expected 4542" in reason


def test_corrupted_file(serve, modified, cache):
    path = modified / TEST_IMAGES
    blob = bytearray(path.read_bytes())
    blob[5000:5004] = bytes(b ^ 0xFF for b in blob[5000:5004])
    path.write_bytes(bytes(blob))
    mirror = serve(modified)
    (url, reason), = fail(TEST_IMAGES, cache, [mirror.url]).failures
    assert reason == f"checksum mismatch (expected md5 {MNIST_FILES[TEST_IMAGES][0]}, got {md5(path)})"


def test_connection_cut_midway(canonical, cache):
    canonical.cut(TEST_IMAGES, after=100_000)
    (url, reason), = fail(TEST_IMAGES, cache, [canonical.url]).failures
    assert reason == "connection closed after 100000 of 1648877 bytes"


def test_connection_cut_is_retried_then_reported(canonical, cache):
    canonical.cut(TEST_LABELS, after=10)
    error = fail(TEST_LABELS, cache, [canonical.url], retries=2)
    assert canonical.requests == [TEST_LABELS] * 3
    assert error.failures[0][1] == "connection closed after 10 of 4542 bytes"


def test_timeout(silent_url, cache):
    (url, reason), = fail(TEST_LABELS, cache, [silent_url], timeout=0.2).failures
    assert reason.startswith("timed out")


def test_load_mnist_all_mirrors_fail(serve, tmp_path, refused_url, cache):
    """load_mnist raises one error naming every mirror and every file the split still needs."""
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = serve(empty)
    mirrors = [refused_url, missing.url]
    with pytest.raises(MNISTDownloadError) as info:
        load_mnist("test", root=cache, mirrors=mirrors, **FAST)
    error = info.value
    assert error.filename == TEST_IMAGES  # the first file tried
    assert error.failures[0] == (refused_url + TEST_IMAGES, "connection refused")
    assert error.failures[1][0] == missing.url + TEST_IMAGES
    assert error.failures[1][1].startswith("HTTP 404")
    message = str(error)
    assert TEST_IMAGES in message and TEST_LABELS in message  # both files to place by hand
    assert str(cache) in message and "LENET_DATA_DIR" in message
    assert_clean(cache, TEST_IMAGES)
    assert_clean(cache, TEST_LABELS)


def test_all_fail_reasons_are_specific(serve, modified, refused_url, silent_url, cache):
    """One file, five mirrors, five different failures, each named in the single error."""
    missing_dir = modified.parent / "missing"
    missing_dir.mkdir()
    corrupt_dir = modified.parent / "corrupt"
    corrupt_dir.mkdir()
    (corrupt_dir / TEST_LABELS).write_bytes(b"not mnist")
    missing, corrupt, cut = serve(missing_dir), serve(corrupt_dir), serve(modified)
    cut.cut(TEST_LABELS, after=7)
    mirrors = [refused_url, missing.url, corrupt.url, cut.url, silent_url]

    error = fail(TEST_LABELS, cache, mirrors, timeout=0.3)
    reasons = [reason for _, reason in error.failures]
    assert reasons[0] == "connection refused"
    assert reasons[1].startswith("HTTP 404")
    assert reasons[2].startswith(f"checksum mismatch (expected md5 {MNIST_FILES[TEST_LABELS][0]}, got ")
    assert reasons[3] == "connection closed after 7 of 4542 bytes"
    assert reasons[4].startswith("timed out")
    message = str(error)
    assert message.startswith(f"Could not download {TEST_LABELS} from any of 5 mirror(s):")
    for url, reason in error.failures:
        assert f"{url}: {reason}" in message
    assert "LENET_DATA_DIR" in message and str(cache) in message
    assert isinstance(error, RuntimeError)


def test_failed_download_keeps_existing_good_files(refused_url, canonical, cache):
    download_file(TEST_LABELS, cache, mirrors=[canonical.url], **FAST)
    with pytest.raises(MNISTDownloadError):
        load_mnist("test", root=cache, mirrors=[refused_url], **FAST)
    assert sorted(p.name for p in cache.iterdir()) == [TEST_LABELS]


def test_interrupted_download_leaves_nothing(canonical, cache, monkeypatch):
    """A KeyboardInterrupt in the middle of the transfer removes the temporary file."""
    def interrupted(url, dest, *args, **kwargs):
        dest.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_fetch_once", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download_file(TEST_LABELS, cache, mirrors=[canonical.url], **FAST)
    assert_clean(cache, TEST_LABELS)


def test_unknown_file_name(cache):
    with pytest.raises(KeyError):
        download_file("train-images.npy", cache, mirrors=["http://127.0.0.1:9/"], **FAST)


def test_resolve_mirrors(monkeypatch):
    assert resolve_mirrors() == list(DEFAULT_MIRRORS)
    assert all(m.endswith("/") for m in DEFAULT_MIRRORS)
    monkeypatch.setenv("LENET_MNIST_MIRRORS", "http://a/x, http://b/y/\n  http://c/")
    assert resolve_mirrors() == ["http://a/x/", "http://b/y/", "http://c/"]
    assert resolve_mirrors(["http://d"]) == ["http://d/"]  # argument beats environment
    assert resolve_mirrors("http://e/ http://f/") == ["http://e/", "http://f/"]
    with pytest.raises(ValueError):
        resolve_mirrors([])


def test_leftovers_of_killed_downloads_are_cleaned_up_and_nothing_else(canonical, cache):
    """Item 7: a SIGKILL mid-download leaves a .part file; the next download of that file deletes the
    ones of our naming whose writer is gone, and nothing else."""
    import os
    import subprocess
    import sys

    from lenet_core import files
    cache.mkdir()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    old = files.STARTED - 3600
    ours = [cache / f".{TEST_LABELS}.{dead}.0123abcd.part", cache / f".{TEST_LABELS}.a1b2c3d4.part"]
    others = [cache / f".{TEST_LABELS}.{os.getpid()}.89abcdef.part",   # a live writer
              cache / f".{TEST_IMAGES}.q1w2e3r4.part", cache / "mine.part", cache / f"{TEST_LABELS}.part"]
    for path in ours + others:
        path.write_bytes(b"partial")
        os.utime(path, (old, old))
    download_file(TEST_LABELS, cache, mirrors=[canonical.url], **FAST)
    assert not any(p.exists() for p in ours) and all(p.exists() for p in others)
    assert md5(cache / TEST_LABELS) == MNIST_FILES[TEST_LABELS][0]
