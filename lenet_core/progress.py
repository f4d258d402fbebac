"""Progress bars only where someone watches them: in a terminal or a notebook, never in a log.

A tqdm bar redraws itself with carriage returns; in a terminal that is one line that
moves, in a CI log or a file it is thousands of lines of noise. :func:`progress_bar`
returns a bar when the output goes to a terminal (or to a Jupyter front end, where
``tqdm.auto`` draws a widget) and a silent stand-in otherwise.
"""
from __future__ import annotations

import sys

from tqdm.auto import tqdm   # a text bar in a terminal, a widget in Jupyter

__all__ = ["progress_bar", "interactive"]


def interactive(stream=None) -> bool:
    """True when ``stream`` (default ``sys.stderr``, where the bars go) is a terminal, or the code
    runs in a Jupyter kernel (``tqdm.auto`` then draws widgets instead of text)."""
    if any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__):   # tqdm.auto chose the widget
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False


def progress_bar(total=None, *, show=True, stream=None, **kwargs):
    """A ``tqdm`` bar writing to ``stream`` (default stderr), disabled unless ``show`` is true
    and :func:`interactive` says someone can watch it. Disabled bars accept every call."""
    stream = sys.stderr if stream is None else stream
    return tqdm(total=total, file=stream, disable=not (show and interactive(stream)), **kwargs)
