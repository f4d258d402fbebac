"""Link check of the built book, without a browser.

Every internal link (``href``/``src`` of a, link, script, img, iframe, source)
of every page must point at a file of the site, and every ``#anchor`` at an
``id`` or ``name`` on the target page. Resources (scripts, stylesheets, icons,
images) must come from the site itself, never from another host. Links *to*
other sites (e.g. a paper's DOI) are allowed and not fetched. Skipped when
the book has not been built (see conftest.py).
"""
from __future__ import annotations

import posixpath
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from sitekit import site_dir, site_pages

PAGES = site_pages() or ["<book not built>"]

_LINK_ATTRS = {"a": "href", "link": "href", "script": "src", "img": "src", "iframe": "src", "source": "src"}
_IGNORED_SCHEMES = ("mailto", "javascript", "data", "tel", "blob")


class _PageParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.anchors: set[str] = set()
        self.links: list[tuple[str, str, str]] = []  # (tag, rel, url)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key) and (key == "id" or tag == "a"):
                self.anchors.add(attrs[key])
        attr = _LINK_ATTRS.get(tag)
        if attr and attrs.get(attr):
            self.links.append((tag, (attrs.get("rel") or "").lower(), attrs[attr].strip()))


@lru_cache(maxsize=None)
def _parse(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def _is_resource(tag: str, rel: str) -> bool:
    if tag == "a":
        return False
    if tag == "link":
        # rel=stylesheet/icon/preload... are fetched; rel=canonical/alternate are just links
        return not any(r in rel.split() for r in ("canonical", "alternate", "author", "license"))
    return True


def check_page(root: Path, rel_page: str) -> list[str]:
    """Problems with the links of one page (empty list: all good)."""
    page = root / rel_page
    problems = []
    for tag, rel, url in _parse(page).links:
        parts = urlsplit(url)
        if parts.scheme in _IGNORED_SCHEMES:
            continue
        if parts.scheme or parts.netloc:
            if _is_resource(tag, rel):
                problems.append(f"<{tag}> loads {url} from another host")
            continue
        if parts.path:
            target_rel = posixpath.normpath(posixpath.join(posixpath.dirname(rel_page), unquote(parts.path)))
            if target_rel.startswith(".."):
                problems.append(f"<{tag}> {url} points outside the site")
                continue
            target = root / target_rel
            if target.is_dir():
                target = target / "index.html"
        else:
            target = page
        if not target.is_file():
            problems.append(f"<{tag}> {url}: {target.relative_to(root)} does not exist")
            continue
        fragment = unquote(parts.fragment)
        if fragment and target.suffix == ".html" and fragment not in _parse(target).anchors:
            problems.append(f"<{tag}> {url}: no id {fragment!r} in {target.relative_to(root)}")
    return problems


@pytest.mark.parametrize("path", PAGES)
def test_links_and_anchors_resolve(site, path):
    problems = check_page(site, path)
    assert not problems, f"{path}:\n  " + "\n  ".join(problems)


def test_site_has_the_book_pages(site):
    pages = set(site_pages())
    for expected in ("book/intro.html", "book/setup.html", "book/references.html",
                     "book/notation.html", "book/glossary.html"):
        assert expected in pages
    assert len([p for p in pages if p.startswith("notebooks/")]) >= 1
    assert site == site_dir()
