"""The published pages show nothing of the machine that built them (no browser needed).

Every page of the built book: no stderr output box (a warning printed while the
notebook ran, e.g. a RuntimeWarning with the path of the file that raised it), and no
absolute path of the build machine: the repository's folder, the builder's home folder
or a temporary folder. Print such paths relative to a known folder, or only their name.
Skipped when the book has not been built (see conftest.py).
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from sitekit import REPO, site_pages

PAGES = site_pages() or ["<book not built>"]

_STDERR = re.compile(r'<div class="output stderr[^"]*">(.*?)</div>', re.S)
_TAGS = re.compile(r"<[^>]+>")


def _machine_paths() -> list[str]:
    paths = {str(REPO.resolve()), str(Path.home().resolve()), str(Path(tempfile.gettempdir()).resolve())}
    return sorted(p for p in paths if len(p) > 1)          # never "/" itself


def leaks(html: str) -> list[str]:
    """What a page shows of the build machine (empty list: nothing)."""
    found = []
    for box in _STDERR.findall(html):
        text = " ".join(_TAGS.sub("", box).split())
        found.append(f"a stderr output box: {text[:160]!r}")
    for path in _machine_paths():
        for m in re.finditer(re.escape(path) + r"(?=[/\"'<\s:]|$)", html):
            context = " ".join(_TAGS.sub("", html[max(0, m.start() - 60):m.end() + 60]).split())
            found.append(f"the build machine's path {path}: ...{context}...")
            break
    return found


@pytest.mark.parametrize("path", PAGES)
def test_page_leaks_nothing_of_the_build_machine(site, path):
    problems = leaks((site / path).read_text(encoding="utf-8", errors="replace"))
    assert not problems, f"{path}:\n  " + "\n  ".join(problems)


def test_leaks_finds_a_warning_box_and_a_path():
    html = ('<p>ok</p><div class="output stderr highlight-myst-ansi notranslate"><div class="highlight">'
            f'<pre>{REPO.resolve()}/lenet_core/layers.py:710: RuntimeWarning: overflow</pre></div></div>')
    found = leaks(html)
    assert any("stderr output box" in f and "RuntimeWarning" in f for f in found)
    assert any("build machine's path" in f for f in found)
    assert leaks("<p>data root: a folder named 'mnist-10k'</p>") == []
