"""Find every widget control on a built page and move it, as a reader would, with no kernel.

Used by ``test_site.py``. What counts as a widget: every view the ipywidgets embed
manager rendered (one ``.widget-subarea`` per ``widget-view+json`` script of the page).
What counts as a control, found generically in each of them:

==================  ======================================================  =================
kind                DOM (ipywidgets 8)                                      how it is moved
==================  ======================================================  =================
slider              ``.widget-slider`` (selection, int and float sliders)   arrow keys
dropdown            ``.widget-dropdown`` (a ``<select>``)                   select an option
select              ``.widget-select`` (a list box)                         select an option
toggle buttons      ``.widget-toggle-buttons``                              click a button
radio buttons       ``.widget-radio``                                       click an input
toggle button       a standalone ``.widget-toggle-button``                  click it
checkbox            ``.widget-checkbox``                                    click it
==================  ======================================================  =================

Disabled and hidden controls are left alone. Every move must change what the widget
*shows* (its pictures, its text, any SVG; the controls' own labels and read-outs do not
count) within ``CHANGE_TIMEOUT``; when the controls are put back where they started, the
first picture must come back.

A widget with at most ``FULL_GRID`` combinations of control positions (every
``lenet_core.widgets`` explorer) is walked through *every* combination, one control one
step at a time (a snake through the grid); a larger one has each control swept through
all its positions (at most ``MAX_POSITIONS`` steps of a slider) with the others fixed.

Not for us: a page may hold interactive elements that are not precomputed explorers --
something that needs a kernel, or a canvas driven by the page's own script (the "draw a
digit" page). Put them inside an element with the CSS class ``lenet-live``
(:data:`LIVE_CLASS`): in a notebook ``widget.add_class("lenet-live")`` on the outermost
widget, in HTML ``<div class="lenet-live">``. Everything inside it is skipped here (the
page's own test file must cover it), and a ``<canvas>`` inside it counts as the page's
figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: CSS class of a container whose interactive content the generic widget test skips.
LIVE_CLASS = "lenet-live"   # the same as lenet_core.widgets.LIVE_CLASS

#: Widgets with at most this many combinations of control positions are walked through all of them.
FULL_GRID = 64
#: A slider is moved through at most this many positions.
MAX_POSITIONS = 40
#: How long a move may take to change the picture (ms). Generous: CI machines are small.
CHANGE_TIMEOUT = 10_000

# The controls of one widget area, in document order; each is tagged with
# data-lenet-test-control="<area>.<k>" so that Playwright can address it.
_KINDS_JS = f"""
(area) => {{
  const live = '.{LIVE_CLASS}';
  const kinds = [
    ['slider', '.widget-slider'], ['dropdown', '.widget-dropdown'], ['select', '.widget-select'],
    ['toggle buttons', '.widget-toggle-buttons'], ['radio buttons', '.widget-radio'],
    ['toggle button', '.widget-toggle-button'], ['checkbox', '.widget-checkbox'],
  ];
  const selector = kinds.map((k) => k[1]).join(', ');
  const found = [];
  for (const el of area.querySelectorAll(selector)) {{
    // a button of a toggle-buttons group is part of that control, not a control of its own
    if (el.parentElement && el.parentElement.closest(selector)) continue;
    if (el.closest(live) || el.offsetParent === null) continue;
    const kind = kinds.find((k) => el.matches(k[1]))[0];
    const disabled = !!el.querySelector(':disabled') || el.matches(':disabled')
                     || !!el.querySelector('[disabled]') || el.hasAttribute('disabled');
    if (disabled) continue;
    const labelEl = el.querySelector('.widget-label');
    let options = [];
    let index = 0;
    if (kind === 'dropdown' || kind === 'select') {{
      const s = el.querySelector('select');
      options = Array.from(s.options).map((o) => o.text);
      index = s.selectedIndex;
    }} else if (kind === 'toggle buttons') {{
      const b = Array.from(el.querySelectorAll('button'));
      options = b.map((x) => x.innerText.trim() || x.title);
      index = Math.max(0, b.findIndex((x) => x.classList.contains('mod-active')));
    }} else if (kind === 'radio buttons') {{
      const r = Array.from(el.querySelectorAll('input[type=radio]'));
      options = r.map((x) => (x.parentElement.innerText || x.value).trim());
      index = Math.max(0, r.findIndex((x) => x.checked));
    }} else if (kind === 'checkbox') {{
      options = ['off', 'on'];
      index = el.querySelector('input[type=checkbox]').checked ? 1 : 0;
    }} else if (kind === 'toggle button') {{
      options = ['off', 'on'];
      index = el.classList.contains('mod-active') ? 1 : 0;
    }} else {{
      const h = el.querySelector('.noUi-handle');
      const lo = parseFloat(h.getAttribute('aria-valuemin')), hi = parseFloat(h.getAttribute('aria-valuemax'));
      const now = parseFloat(h.getAttribute('aria-valuenow'));
      const integral = Number.isInteger(lo) && Number.isInteger(hi) && Number.isInteger(now);
      const n = integral ? hi - lo + 1 : {MAX_POSITIONS};
      options = Array.from({{length: Math.min(n, {MAX_POSITIONS})}}, (_, i) => String(integral ? lo + i : i));
      index = integral ? Math.min(now - lo, options.length - 1) : 0;
    }}
    el.setAttribute('data-lenet-test-control', area.dataset.lenetTestArea + '.' + found.length);
    found.push({{kind, label: labelEl ? labelEl.innerText.trim() : '', options, index}});
  }}
  return found;
}}
"""

# What a widget shows, ignoring its controls: a short description of every visible
# picture (a hash of its full source), text and SVG inside the widget's area.
_FINGERPRINT_JS = """
(area) => {
  const controls = '.widget-slider, .widget-dropdown, .widget-select, .widget-toggle-buttons, .widget-radio, '
                   + '.widget-toggle-button, .widget-checkbox';
  const hash = (s) => { let h = 2166136261; for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i);
                        h = Math.imul(h, 16777619) >>> 0; } return s.length + ':' + h.toString(16); };
  const parts = [];
  const walk = (node) => {
    if (node.nodeType === Node.TEXT_NODE) { const t = node.textContent.trim(); if (t) parts.push(t); return; }
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    if (node.matches(controls) || node.matches('.LIVE')) return;
    if (node.offsetParent === null && getComputedStyle(node).position !== 'fixed') return;   // hidden
    if (node.tagName === 'IMG') { parts.push('img ' + hash(node.currentSrc || node.src)); return; }
    if (node.tagName.toLowerCase() === 'svg') { parts.push('svg ' + hash(node.outerHTML)); return; }
    for (const child of node.childNodes) walk(child);
  };
  walk(area);
  return parts.join('\\n');
}
""".replace(".LIVE", "." + LIVE_CLASS)

_AREAS_JS = f"""
() => Array.from(document.querySelectorAll('.widget-subarea')).map((area, i) => {{
  area.setAttribute('data-lenet-test-area', String(i));
  const section = area.closest('section');
  const heading = section && section.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4');
  return {{live: !!area.closest('.{LIVE_CLASS}'), hasLive: !!area.querySelector('.{LIVE_CLASS}'),
           heading: heading ? heading.innerText.replace(/[#¶]/g, '').trim() : ''}};
}})
"""


@dataclass
class Control:
    kind: str
    label: str
    options: list
    index: int

    def name(self) -> str:
        return f"{self.label or 'unlabeled'!r} ({self.kind})"


@dataclass
class WidgetReport:
    """What happened to one widget of a page."""

    number: int                 # 1-based position on the page
    heading: str
    controls: list = field(default_factory=list)
    moves: int = 0
    combinations: int = 0       # combinations of control positions visited
    problem: str | None = None
    skipped: str | None = None

    def where(self, n_widgets: int) -> str:
        names = ", ".join(c.name() for c in self.controls) or "no controls"
        return f"widget {self.number} of {n_widgets} (section {self.heading!r}; controls: {names})"


def _snake(sizes: list[int]) -> list[tuple[int, ...]]:
    """Every combination of positions, ordered so that neighbours differ by one step of one control."""
    if not sizes:
        return [()]
    rest = _snake(sizes[1:])
    out = []
    for i in range(sizes[0]):
        out += [(i,) + r for r in (rest if i % 2 == 0 else rest[::-1])]
    return out


def _sweeps(sizes: list[int], start: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Each control in turn through all its positions and back, the others at their start."""
    path, now = [], list(start)
    for k, n in enumerate(sizes):
        s = start[k]
        for i in list(range(s + 1, n)) + list(range(n - 2, -1, -1)) + list(range(1, s + 1)):
            now[k] = i
            path.append(tuple(now))
    return path


def _set(page, area_id: int, k: int, control: Control, target: int):
    """Move control ``k`` of widget ``area_id`` from ``control.index`` to position ``target``."""
    loc = page.locator(f'[data-lenet-test-control="{area_id}.{k}"]')
    kind = control.kind
    if kind in ("dropdown", "select"):
        loc.locator("select").select_option(index=target)
    elif kind == "toggle buttons":
        loc.locator("button").nth(target).click()
    elif kind == "radio buttons":
        loc.locator("input[type=radio]").nth(target).check()
    elif kind in ("checkbox", "toggle button"):
        if target != control.index:
            (loc.locator("input[type=checkbox]") if kind == "checkbox" else loc).click()
    else:
        handle = loc.locator(".noUi-handle").first
        handle.focus()
        step = 1 if target > control.index else -1
        for _ in range(abs(target - control.index)):
            handle.press("ArrowRight" if step > 0 else "ArrowLeft")
    control.index = target


def _fingerprint(page, area_id: int) -> str:
    return page.evaluate(f"(a) => ({_FINGERPRINT_JS})(document.querySelector(`[data-lenet-test-area=\"${{a}}\"]`))",
                         area_id)


def _wait_until(page, area_id: int, expr: str, value: str, timeout: float) -> bool:
    """Wait until the widget's fingerprint compares to ``value`` as ``expr`` ('!==' or '===') says."""
    try:
        page.wait_for_function(
            f"([a, v]) => ({_FINGERPRINT_JS})(document.querySelector(`[data-lenet-test-area=\"${{a}}\"]`)) {expr} v",
            arg=[area_id, value], timeout=timeout)
        return True
    except Exception:  # playwright's TimeoutError
        return False


def _describe_state(controls: list[Control]) -> str:
    return ", ".join(f"{c.label or c.kind} = {c.options[c.index]!r}" for c in controls)


def exercise_widget(page, area_id: int, report: WidgetReport, timeout: float = CHANGE_TIMEOUT) -> None:
    """Walk one widget through its control positions; fill in ``report``."""
    controls = [Control(**c) for c in page.evaluate(
        f"(a) => ({_KINDS_JS})(document.querySelector(`[data-lenet-test-area=\"${{a}}\"]`))", area_id)]
    report.controls = controls
    controls = [c for c in controls if len(c.options) > 1]
    if not controls:
        report.skipped = "no control with more than one position"
        return
    sizes = [len(c.options) for c in controls]
    start = tuple(c.index for c in controls)
    first = _fingerprint(page, area_id)
    if not first:
        report.problem = "shows nothing at all (no picture, no text) before any control is moved"
        return
    n_combinations = 1
    for n in sizes:
        n_combinations *= n
    if n_combinations <= FULL_GRID:
        # from the start position to the grid's corner, then the snake through every combination
        path = []
        now = list(start)
        for k in range(len(sizes)):
            while now[k] > 0:
                now[k] -= 1
                path.append(tuple(now))
        path += _snake(sizes)[1:]
    else:
        path = _sweeps(sizes, start)
    previous = first
    visited = {start}
    ids = [i for i, c in enumerate(report.controls) if len(c.options) > 1]   # their data-lenet-test-control numbers
    for state in path:
        k = next(i for i, (a, b) in enumerate(zip(state, (c.index for c in controls))) if a != b)
        before = _describe_state(controls)
        old = controls[k].options[controls[k].index]
        _set(page, area_id, ids[k], controls[k], state[k])
        report.moves += 1
        if not _wait_until(page, area_id, "!==", previous, timeout):
            report.problem = (f"moving {controls[k].name()} from {old!r} to {controls[k].options[state[k]]!r} "
                              f"(with {before}) did not change what the widget shows within "
                              f"{timeout / 1000:g} s -- a kernel-only widget? build it with "
                              "lenet_core.widgets (precomputed states) or mark it lenet-live")
            return
        previous = _fingerprint(page, area_id)
        visited.add(state)
    report.combinations = len(visited)
    # back to where we started: the first picture must come back
    for k, s in enumerate(start):
        if controls[k].index != s:
            _set(page, area_id, ids[k], controls[k], s)
    if not _wait_until(page, area_id, "===", first, timeout):
        report.problem = (f"after putting the controls back ({_describe_state(controls)}) the widget does not "
                          "show what it showed at first: its pictures do not follow its controls")


def exercise_page(page, timeout: float = CHANGE_TIMEOUT) -> tuple[list[WidgetReport], int]:
    """Exercise every widget of the page; returns the reports and the number of widgets.

    ``timeout`` (ms) is how long one move may take to change what its widget shows."""
    areas = page.evaluate(_AREAS_JS)
    reports = []
    for i, area in enumerate(areas):
        report = WidgetReport(number=i + 1, heading=area["heading"])
        if area["live"]:
            report.skipped = f"inside .{LIVE_CLASS}"
        else:
            exercise_widget(page, i, report, timeout)   # skips the controls inside a .lenet-live part
            if area["hasLive"] and not report.moves and not report.problem:
                report.skipped = f"its interactive part is inside .{LIVE_CLASS}"
        reports.append(report)
    return reports, len(areas)


def live_elements(page) -> int:
    """How many ``.lenet-live`` containers the page has."""
    return page.locator(f".{LIVE_CLASS}").count()

