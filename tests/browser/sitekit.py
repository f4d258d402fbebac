"""Where the built book is and how to treat its absence (shared by the tests here).

See conftest.py for the environment variables.
"""
from __future__ import annotations

import os
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
