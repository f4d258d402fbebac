"""Open every page of the built book in headless Chromium, as a reader would.

For every page: it loads with no failed request, no request to another host or to a
kernel and no console error; a full-page screenshot is saved; no code cell or printed
output is cut at the edge of the column, on a desktop or on a phone; and every widget
on it -- found generically, every slider, dropdown and toggle the embed manager
rendered, see ``widgetkit.py`` -- is moved through its positions with no kernel running
and must change what it shows at every step. For every chapter (``notebooks/*``): its
figures are loaded, its equations are typeset by MathJax, and from chapter 2 on it has
a widget. Interactive elements that are not precomputed explorers (a page's own script,
a canvas) go inside an element of class ``lenet-live``; this file leaves them to that
page's own test. Skipped when the book has not been built (see conftest.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from sitekit import site_pages
from widgetkit import LIVE_CLASS, exercise_page, live_elements

PAGES = site_pages() or ["<book not built>"]
CHAPTERS = [p for p in PAGES if p.startswith("notebooks/")] or ["<book not built>"]

# Playwright waits (ms). Generous: CI machines are small.
LOAD_TIMEOUT = 60_000

#: Viewport widths the layout is checked at: a phone and a desktop.
PHONE, DESKTOP = (375, 740), (1280, 900)

# JS helpers --------------------------------------------------------------------

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

# Canvases a page draws itself (a live page's drawing area) count as its figures.
_LIVE_CANVAS_JS = f"() => document.querySelectorAll('.{LIVE_CLASS} canvas').length"

# Code blocks (cell input, printed output, code in the text) whose content is wider than
# the block: on a phone the scroll bar is hidden, so the reader sees the line cut off.
_CUT_CODE_JS = """
() => Array.from(document.querySelectorAll('main pre, article pre'))
  .filter((p) => p.offsetParent !== null && p.scrollWidth > p.clientWidth + 1)
  .map((p) => ({text: p.innerText.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), '').slice(0, 90),
                content: p.scrollWidth, box: p.clientWidth}))
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
        self.kernel: list[str] = []
        page.route("**/*", self._route)
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        page.on("response", self._response)
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def _route(self, route):
        parts = urlsplit(route.request.url)
        if parts.scheme in ("ws", "wss") or parts.path.startswith(("/api/kernels", "/api/sessions")):
            self.kernel.append(route.request.url)      # the static book must never look for a kernel
            route.abort()
        elif parts.scheme in ("http", "https") and parts.netloc != self.base:
            self.foreign.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    def _response(self, response):
        if response.status >= 400:
            self.failed.append(f"{response.url} (HTTP {response.status})")

    def check(self):
        assert not self.foreign, f"requests to other hosts: {self.foreign}"
        assert not self.kernel, f"requests for a kernel: {self.kernel}"
        assert not self.failed, f"failed requests: {self.failed}"
        assert not self.errors, f"console errors: {self.errors}"


def open_page(browser, server, path, viewport=DESKTOP, wait_until="networkidle"):
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    watch = PageWatch(page, server)
    page.goto(server + path, wait_until=wait_until, timeout=LOAD_TIMEOUT)
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


@dataclass
class Visit:
    """What one visit of a page found (each page is opened once per test session)."""

    watch: PageWatch
    has_h1: bool
    math: dict
    images: list
    widgets: int                    # widget views declared in the page's HTML
    live: int = 0                   # .lenet-live containers
    live_canvases: int = 0
    cut_code: list = field(default_factory=list)          # at desktop width
    cut_code_phone: list = field(default_factory=list)    # the same page resized to a phone's width
    reports: list = field(default_factory=list)   # one widgetkit.WidgetReport per rendered widget
    rendered: int = 0


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
                result = Visit(watch, page.locator("h1").count() >= 1, math, images, n_widgets,
                               live=live_elements(page), live_canvases=page.evaluate(_LIVE_CANVAS_JS),
                               cut_code=page.evaluate(_CUT_CODE_JS))
                if n_widgets:
                    result.reports, result.rendered = exercise_page(page)
                page.wait_for_load_state("networkidle")
                # the same page at a phone's width: the layout reflows, no second load needed
                page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
                page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
                result.cut_code_phone = page.evaluate(_CUT_CODE_JS)
            finally:
                page.close()
            _VISITS[path] = result
        return _VISITS[path]

    return run


def _cut_message(path, width, cut) -> str:
    lines = [f"{path} at {width} px: {len(cut)} code block(s) wider than the column (cut off on screen):"]
    lines += [f"  {c['content']} px of content in a {c['box']} px box: {c['text']!r}" for c in cut[:5]]
    return "\n".join(lines + ["Let long lines wrap (book/static/lenet/book.css) or shorten them."])


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_cleanly(site, visit, path):
    """No failed or foreign request, no kernel, no console error; a screenshot is saved."""
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
    assert figures or v.live_canvases, "the chapter shows no figure"
    broken = [i for i in v.images if not (i["w"] > 0 and i["h"] > 0)]
    assert not broken, f"images that did not load: {broken}"


@pytest.mark.parametrize("path", PAGES)
def test_widgets_respond_without_kernel(site, visit, path):
    """Every control of every widget on the page, moved with no kernel, changes what its widget shows."""
    v = visit(path)
    if not v.widgets:
        if path.startswith("notebooks/") and not path.startswith("notebooks/01") and not v.live:
            pytest.fail(f"{path}: every chapter from 2 on must have a widget", pytrace=False)
        pytest.skip(f"{path} has no widget" + (f" (its .{LIVE_CLASS} parts have their own test)" if v.live else ""))
    assert v.rendered == v.widgets, f"{path}: {v.widgets} widget views declared, {v.rendered} rendered"
    problems = [f"{path}, {r.where(v.rendered)}: {r.problem}" for r in v.reports if r.problem]
    assert not problems, "\n".join(problems)
    tested = [r for r in v.reports if not r.skipped]
    if not tested:
        if v.live:
            pytest.skip(f"{path}: all its widgets are inside .{LIVE_CLASS} (covered by that page's own test)")
        pytest.fail(f"{path} has widgets but none with a slider, dropdown or toggle: "
                    + "; ".join(f"{r.where(v.rendered)}: {r.skipped}" for r in v.reports), pytrace=False)


@pytest.mark.parametrize("path", PAGES)
def test_code_is_not_cut_on_a_desktop(site, visit, path):
    v = visit(path)
    assert not v.cut_code, _cut_message(path, DESKTOP[0], v.cut_code)


@pytest.mark.parametrize("path", PAGES)
def test_code_is_not_cut_on_a_phone(site, visit, path):
    v = visit(path)
    assert not v.cut_code_phone, _cut_message(path, PHONE[0], v.cut_code_phone)


# The widget test itself: it must notice a widget that does not respond, and leave .lenet-live alone.

_FREEZE_OUTPUT_JS = """
(area) => {
  // Replace what the widget shows by a frozen copy: the controls still move the real
  // stack, now detached, so the visible picture no longer follows them (a dead widget).
  const controls = area.querySelectorAll('.widget-slider, .widget-dropdown, .widget-toggle-buttons');
  const box = area.querySelector('.lenet-explorer') || area.firstElementChild;
  const shown = Array.from(box.children).filter((c) => !Array.from(controls).includes(c));
  for (const el of shown) {
    const copy = el.cloneNode(true);
    el.replaceWith(copy);
  }
  return shown.length;
}
"""


def _first_page_with_widgets(site):
    for path in CHAPTERS:
        if count_widget_views((site / path).read_text(encoding="utf-8")):
            return path
    pytest.skip("no page of the built book has a widget")


def test_widget_test_reports_a_widget_that_does_not_respond(site, server, browser):
    path = _first_page_with_widgets(site)
    page, _ = open_page(browser, server, path)
    try:
        wait_for_widgets(page, 1)
        page.evaluate("() => document.querySelectorAll('.widget-subarea')"
                      ".forEach((a, i) => a.setAttribute('data-lenet-test-area', String(i)))")
        assert page.evaluate(f"(a) => ({_FREEZE_OUTPUT_JS})(a)", page.query_selector(".widget-subarea")) > 0
        reports, n = exercise_page(page, timeout=1500)
    finally:
        page.close()
    assert n >= 1
    problem = reports[0].problem or ""
    assert "did not change what the widget shows" in problem, reports[0]
    assert f"widget 1 of {n}" in reports[0].where(n)


def test_widget_test_leaves_lenet_live_containers_alone(site, server, browser):
    path = _first_page_with_widgets(site)
    page, _ = open_page(browser, server, path)
    try:
        wait_for_widgets(page, 1)
        page.evaluate(f"() => document.querySelectorAll('.widget-subarea')"
                      f".forEach((a) => a.parentElement.classList.add('{LIVE_CLASS}'))")
        reports, _ = exercise_page(page)
    finally:
        page.close()
    assert reports and all(r.skipped == f"inside .{LIVE_CLASS}" and r.moves == 0 for r in reports)


def test_widget_test_skips_a_lenet_live_part_inside_a_widget(site, server, browser):
    path = _first_page_with_widgets(site)
    page, _ = open_page(browser, server, path)
    try:
        wait_for_widgets(page, 1)
        page.evaluate(f"() => document.querySelectorAll('.widget-subarea > .jupyter-widgets')"
                      f".forEach((w) => w.classList.add('{LIVE_CLASS}'))")
        reports, _ = exercise_page(page)
    finally:
        page.close()
    assert reports and all(r.moves == 0 and r.skipped and LIVE_CLASS in r.skipped for r in reports), reports
