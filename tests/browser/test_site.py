"""Open every page of the built book in headless Chromium, as a reader would.

For every page: it loads with no failed request, no request to another host and
no console error, and a full-page screenshot is saved. For every chapter
(``notebooks/*``): its figures are loaded, its equations are typeset by MathJax,
and every widget control, moved with no kernel running, changes what the widget
shows. Skipped when the book has not been built (see conftest.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from sitekit import site_pages

PAGES = site_pages() or ["<book not built>"]
CHAPTERS = [p for p in PAGES if p.startswith("notebooks/")] or ["<book not built>"]

# Playwright waits (ms). Generous: CI machines are small.
LOAD_TIMEOUT = 60_000
CHANGE_TIMEOUT = 10_000

# JS helpers --------------------------------------------------------------------

# A description of what a widget currently shows, ignoring its controls: the
# pictures and text of the Output widgets inside the top-level widget element.
_FINGERPRINT_JS = """
(area) => Array.from(area.querySelectorAll('.widget-output, .widget-html-content'))
  .filter((el) => el.offsetParent !== null)
  .map((el) => Array.from(el.querySelectorAll('img')).map((i) => i.src.slice(-200)).join('|')
               + '::' + el.innerText)
  .join('\\n##\\n')
"""

_MATH_STATUS_JS = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const nodes = Array.from(document.querySelectorAll('span.math, div.math'));
  return {
    total: nodes.length,
    typeset: nodes.filter((n) => n.querySelector('mjx-container')).length,
    containers: document.querySelectorAll('mjx-container').length,
  };
}
"""

_IMAGES_JS = """
async () => {
  const imgs = Array.from(document.querySelectorAll('main img, article img'));
  await Promise.all(imgs.map((i) => i.decode().catch(() => null)));
  return imgs.map((i) => ({src: i.getAttribute('src').slice(0, 120), w: i.naturalWidth, h: i.naturalHeight,
                           inWidget: !!i.closest('.widget-subarea')}));
}
"""

# Load every font face the page declares (the theme's and the widgets' icon
# fonts), not only those the visible text happens to use: a font URL that does
# not resolve then shows up as a failed request on every page, not just on the
# pages whose widgets draw an icon.
_LOAD_FONTS_JS = """
async () => {
  const faces = Array.from(document.fonts);
  await Promise.all(faces.map((f) => f.load().catch(() => null)));
  return faces.map((f) => f.family + ':' + f.status);
}
"""


class PageWatch:
    """Records failed and foreign requests, HTTP errors and console errors of a page."""

    def __init__(self, page, base_url: str):
        self.base = urlsplit(base_url).netloc
        self.foreign: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        page.route("**/*", self._route)
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        page.on("response", self._response)
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def _route(self, route):
        parts = urlsplit(route.request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != self.base:
            self.foreign.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    def _response(self, response):
        if response.status >= 400:
            self.failed.append(f"{response.url} (HTTP {response.status})")

    def check(self):
        assert not self.foreign, f"requests to other hosts: {self.foreign}"
        assert not self.failed, f"failed requests: {self.failed}"
        assert not self.errors, f"console errors: {self.errors}"


def open_page(browser, server, path, viewport=(1280, 900)):
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    watch = PageWatch(page, server)
    page.goto(server + path, wait_until="networkidle", timeout=LOAD_TIMEOUT)
    return page, watch


WIDGET_VIEW = 'type="application/vnd.jupyter.widget-view+json"'


def count_widget_views(html: str) -> int:
    """Widget views the built page declares, counted in its HTML file: the live DOM is no
    good for this, since the embed manager may already have replaced those script tags."""
    return html.count(f"<script {WIDGET_VIEW}")


def wait_for_widgets(page, n_views: int):
    """Wait until each of the page's ``n_views`` widget views has been rendered by the embed manager."""
    if n_views:
        page.wait_for_function(
            "(n) => document.querySelectorAll('.widget-subarea > .jupyter-widgets').length >= n",
            arg=n_views,
            timeout=LOAD_TIMEOUT,
        )
    return n_views


def _shot_name(path: str) -> str:
    return path.replace("/", "__").removesuffix(".html") + ".png"


def _move(control):
    """Move a slider, dropdown or toggle-buttons control one step; return its kind."""
    cls = control.get_attribute("class") or ""
    if "widget-dropdown" in cls:
        select = control.locator("select")
        n = select.locator("option").count()
        current = select.evaluate("(s) => s.selectedIndex")
        select.select_option(index=(current + 1) % n)
        return "dropdown"
    if "widget-toggle-buttons" in cls:
        buttons = control.locator("button")
        n = buttons.count()
        pressed = [i for i in range(n) if "mod-active" in (buttons.nth(i).get_attribute("class") or "")]
        buttons.nth(((pressed[0] if pressed else 0) + 1) % n).click()
        return "toggle buttons"
    handle = control.locator(".noUi-handle").first
    now = float(handle.get_attribute("aria-valuenow") or 0)
    top = float(handle.get_attribute("aria-valuemax") or 0)
    handle.focus()
    handle.press("ArrowLeft" if now >= top else "ArrowRight")
    return "slider"


CONTROLS = ".widget-slider, .widget-dropdown, .widget-toggle-buttons"


def _exercise_widgets(page) -> tuple[int, list[str]]:
    """Move every control of every widget; return (moves, problems)."""
    areas = page.locator(".widget-subarea")
    moved, problems = 0, []
    for a in range(areas.count()):
        area = areas.nth(a)
        controls = area.locator(CONTROLS)
        for c in range(controls.count()):
            before = area.evaluate(_FINGERPRINT_JS)
            kind = _move(controls.nth(c))
            try:
                page.wait_for_function(
                    f"([before, a]) => ({_FINGERPRINT_JS})("
                    "document.querySelectorAll('.widget-subarea')[a]) !== before",
                    arg=[before, a],
                    timeout=CHANGE_TIMEOUT,
                )
                moved += 1
            except Exception:  # playwright's TimeoutError
                problems.append(
                    f"moving {kind} #{c} of widget #{a} did not change what the widget shows "
                    "(a kernel-only widget? use lenet_core.widgets.precomputed_explorer)"
                )
    return moved, problems


@dataclass
class Visit:
    """What one visit of a page found (each page is opened once per test session)."""

    watch: PageWatch
    has_h1: bool
    math: dict
    images: list
    widgets: int
    moved: int = 0
    widget_problems: list = field(default_factory=list)
    error: str | None = None


_VISITS: dict[str, Visit] = {}


@pytest.fixture
def visit(site, server, browser, screenshot_dir):
    def run(path: str) -> Visit:
        if path not in _VISITS:
            page, watch = open_page(browser, server, path)
            try:
                n_widgets = wait_for_widgets(page, count_widget_views((site / path).read_text(encoding="utf-8")))
                page.evaluate(_LOAD_FONTS_JS)
                math = page.evaluate(_MATH_STATUS_JS)
                images = page.evaluate(_IMAGES_JS)
                page.screenshot(path=str(screenshot_dir / _shot_name(path)), full_page=True)
                result = Visit(watch, page.locator("h1").count() >= 1, math, images, n_widgets)
                if n_widgets:
                    result.moved, result.widget_problems = _exercise_widgets(page)
                page.wait_for_load_state("networkidle")
            finally:
                page.close()
            _VISITS[path] = result
        return _VISITS[path]

    return run


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_cleanly(site, visit, path):
    """No failed or foreign request, no console error; a screenshot is saved."""
    v = visit(path)
    assert v.has_h1, "page has no title (h1)"
    v.watch.check()


@pytest.mark.parametrize("path", CHAPTERS)
def test_chapter_shows_figures_and_math(site, visit, path):
    v = visit(path)
    source = (site / path).read_text(encoding="utf-8")
    if 'class="math' in source:
        assert v.math["total"] > 0
        assert v.math["typeset"] == v.math["total"], f"equations not typeset by MathJax: {v.math}"
        assert v.math["containers"] > 0
    figures = [i for i in v.images if not i["inWidget"]] or v.images
    assert figures, "the chapter shows no figure"
    broken = [i for i in v.images if not (i["w"] > 0 and i["h"] > 0)]
    assert not broken, f"images that did not load: {broken}"


@pytest.mark.parametrize("path", CHAPTERS)
def test_widgets_respond_without_kernel(site, visit, path):
    """Moving each control changes the widget's output, with no kernel running."""
    v = visit(path)
    if not v.widgets:
        assert path.startswith("notebooks/01"), f"{path}: every chapter from 2 on must have a widget"
        pytest.skip(f"{path} has no widget")
    assert not v.widget_problems, "\n".join(v.widget_problems)
    assert v.moved, "the page has widgets but none with a slider, dropdown or toggle buttons"
