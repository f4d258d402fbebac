"""Where the built book is and how to treat its absence (shared by the tests here).

See conftest.py for the environment variables.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_executable() -> str:
    """``$LENET_CHROMIUM``, else ``chromium`` on PATH, else Debian's ``/usr/bin/chromium``."""
    return os.environ.get("LENET_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        pass


@contextlib.contextmanager
def serve_site(root: Path):
    """Serve ``root`` on 127.0.0.1 (a free port); yields the base URL ending in '/'."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def require_site() -> bool:
    return os.environ.get("LENET_REQUIRE_SITE", "").strip() not in ("", "0")


def site_dir() -> Path:
    return Path(os.environ.get("LENET_SITE_DIR") or REPO / "_build" / "html").resolve()


def site_pages() -> list[str]:
    """Every HTML page of the built site, as paths relative to its root."""
    root = site_dir()
    if not (root / "index.html").is_file():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.html")
        if not any(part.startswith("_") for part in p.relative_to(root).parts)
    )


def missing(reason: str):
    """Skip, or fail under LENET_REQUIRE_SITE=1."""
    if require_site():
        pytest.fail(f"{reason} (LENET_REQUIRE_SITE=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)
