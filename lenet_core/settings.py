"""Run-wide switches read from the environment.

``LENET_QUICK=1`` is the small-data switch: notebooks and examples train on a
few thousand images for an epoch or two so that the whole book executes in a
couple of minutes (CI, a first classroom run). Unset or ``0`` means the real
thing: all the data and full training runs, as in the published book.
"""
import os

__all__ = ["quick_mode"]


def quick_mode() -> bool:
    """True when the environment asks for the fast, small-data run (``LENET_QUICK=1``)."""
    return os.environ.get("LENET_QUICK", "0").strip().lower() not in ("", "0", "false", "no")
