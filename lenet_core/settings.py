"""Run-wide switches read from the environment.

``LENET_QUICK=1`` is the small-data switch: notebooks and examples train on a
few thousand images for an epoch or two so that the whole book executes in a
couple of minutes (CI, a first classroom run). Unset or ``0`` means the real
thing: all the data and full training runs, as in the published book.
"""
import html
import os

__all__ = ["quick_mode", "quick_mode_notice"]


def quick_mode() -> bool:
    """True when the environment asks for the fast, small-data run (``LENET_QUICK=1``)."""
    return os.environ.get("LENET_QUICK", "0").strip().lower() not in ("", "0", "false", "no")


class _Notice:
    """A warning box for the top of a page, shown as HTML in Jupyter and in the built book."""

    def __init__(self, title: str, text: str):
        self.title, self.text = title, text

    def _repr_html_(self):
        return (f'<div class="admonition warning lenet-quick-notice" role="note">'
                f'<p class="admonition-title">{html.escape(self.title)}</p>'
                f'<p>{html.escape(self.text)}</p></div>')

    def __repr__(self):
        return f"{self.title}: {self.text}"


def quick_mode_notice():
    """What the first cell of every chapter shows: in quick mode a visible warning that the
    page's numbers come from small data and short runs; otherwise nothing (None)."""
    if not quick_mode():
        return None
    return _Notice("Built with the small-data switch (LENET_QUICK=1)",
                   "Every number, figure and accuracy on this page comes from a few thousand images "
                   "and short runs, so it is not the chapter's real result. Run the notebook with "
                   "LENET_QUICK=0 (the default) to see the real numbers.")
