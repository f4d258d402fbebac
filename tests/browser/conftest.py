"""Fixtures for tests of the built book (``jupyter-book build .`` -> ``_build/html``).

Environment:

``LENET_SITE_DIR``
    the built site to test (default: ``_build/html`` at the repository root);
``LENET_REQUIRE_SITE=1``
    a missing site, Playwright or Chromium is a failure, not a skip (CI sets it
    after building the book);
``LENET_CHROMIUM``
    the Chromium executable (default ``/usr/bin/chromium``, Debian's package);
``LENET_SCREENSHOT_DIR``
    where page screenshots go (default: ``screenshots/`` beside the site, i.e.
    ``_build/screenshots``).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from sitekit import CHROMIUM_ARGS, chromium_executable, missing, serve_site, site_dir

@pytest.fixture(scope="session")
def site() -> Path:
    root = site_dir()
    if not (root / "index.html").is_file():
        missing(f"no built book at {root}: run `jupyter-book build .` first, or set LENET_SITE_DIR")
    return root


@pytest.fixture(scope="session")
def server(site):
    """Serve the site on 127.0.0.1 (a free port); yields the base URL ending in '/'."""
    with serve_site(site) as url:
        yield url


@pytest.fixture(scope="session")
def browser(site):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python is not installed (pip install playwright)")
    executable = chromium_executable()
    if not Path(executable).is_file():
        missing(f"Chromium not found at {executable} (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def screenshot_dir(site) -> Path:
    out = Path(os.environ.get("LENET_SCREENSHOT_DIR") or site.parent / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out
