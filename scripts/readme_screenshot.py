"""Take the README's screenshot of the page "Draw a digit" from the built book (no kernel running).

    jupyter-book build .                       # first build the site (LENET_QUICK=1 is fine)
    python scripts/readme_screenshot.py        # writes book/images/screenshot.png

Serves ``_build/html`` on 127.0.0.1, opens the page in headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright), waits for the in-page network, draws a
digit on its pad with the mouse (so the picture shows a reader's own digit read by the
network in the browser), scrolls the widget to the top of the window and saves one
viewport-sized PNG.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))
from sitekit import CHROMIUM_ARGS, chromium_executable, serve_site  # noqa: E402

# A 2, as fractions of the pad: the arc, the diagonal and the base.
STROKE = [(0.28, 0.32), (0.36, 0.2), (0.52, 0.15), (0.66, 0.22), (0.68, 0.36), (0.58, 0.52),
          (0.42, 0.66), (0.28, 0.8), (0.5, 0.79), (0.74, 0.8)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", default="notebooks/12_draw_a_digit.html")
    ap.add_argument("--site", default=str(REPO / "_build" / "html"))
    ap.add_argument("--output", default=str(REPO / "book" / "images" / "screenshot.png"))
    ap.add_argument("--size", default="1280x1000", help="viewport WIDTHxHEIGHT")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    site = Path(args.site)
    if not (site / args.page).is_file():
        print(f"{site / args.page} not found: build the book first (jupyter-book build .)", file=sys.stderr)
        return 1
    width, height = (int(v) for v in args.size.split("x"))
    with serve_site(site) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
        page.goto(base + args.page, wait_until="networkidle")
        page.wait_for_function("() => window.lenetLive && window.lenetLive.ready", timeout=60_000)
        page.get_by_role("button", name="Clear").click()
        widget = page.locator(".lenet-live").first
        widget.evaluate("(el) => window.scrollTo(0, el.getBoundingClientRect().top + window.scrollY - 64)")
        box = page.locator(".lenet-live .ll-pad").first.bounding_box()
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in STROKE]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=8)
        page.mouse.up()
        page.wait_for_timeout(300)
        page.screenshot(path=args.output)
        prediction = page.evaluate("() => window.lenetLive.state().prediction")
        browser.close()
    print(f"wrote {args.output} (the network read the drawing as a {prediction})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
