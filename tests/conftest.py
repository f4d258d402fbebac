"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent

# Property-based tests explore new random examples on every run on a laptop. CI sets
# HYPOTHESIS_PROFILE=ci: the same examples every run (derandomized), so that a landing
# decision never hinges on a lucky draw; a failure still prints the example to reproduce.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# --- Offline MNIST inputs (read-only; see <shared>/data/README.md) -------------------------

@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only shared inputs: ``$LENET_SHARED_DIR`` or ``<repo>/../shared``; skip if absent."""
    path = Path(os.environ.get("LENET_SHARED_DIR") or REPO.parent / "shared")
    if not (path / "data").is_dir():
        pytest.skip(f"shared data directory not found at {path} (set LENET_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def mnist_10k_dir(shared_dir) -> Path:
    """Complete MNIST root (gz): 10,000 training and 10,000 test images."""
    return shared_dir / "data" / "mnist-10k"


@pytest.fixture(scope="session")
def mnist_canonical_dir(shared_dir) -> Path:
    """Byte-exact published files: t10k images/labels and train labels (no train images)."""
    return shared_dir / "data" / "mnist-canonical"


@pytest.fixture
def clean_mnist_env(monkeypatch, tmp_path):
    """Isolate data tests from the user's environment and cache.

    Clears ``LENET_DATA_DIR`` and ``LENET_MNIST_MIRRORS`` and points
    ``XDG_CACHE_HOME`` at a temporary directory, so nothing reads or writes
    the real ``~/.cache``.
    """
    monkeypatch.delenv("LENET_DATA_DIR", raising=False)
    monkeypatch.delenv("LENET_MNIST_MIRRORS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
