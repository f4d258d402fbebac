"""Take the README's screenshot of a chapter from the built book (no kernel running).

    jupyter-book build .                       # first build the site (LENET_QUICK=1 is fine)
    python scripts/readme_screenshot.py        # writes book/images/screenshot.png

Serves ``_build/html`` on 127.0.0.1, opens a chapter in headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright), waits for its widgets, scrolls to the
section given by ``--anchor`` (code cells hidden, to show prose and widget), moves the
widget's first slider a few steps (so the picture shows a widget working in a static
page) and saves one viewport-sized PNG.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))
from sitekit import CHROMIUM_ARGS, chromium_executable, serve_site  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", default="notebooks/05_convolution.html")
    ap.add_argument("--anchor", default="explore-one-output-pixel-and-the-inputs-it-touches",
                    help="id of the section to show (default: chapter 5's convolution explorer)")
    ap.add_argument("--site", default=str(REPO / "_build" / "html"))
    ap.add_argument("--output", default=str(REPO / "book" / "images" / "screenshot.png"))
    ap.add_argument("--size", default="1280x860", help="viewport WIDTHxHEIGHT")
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
        page.wait_for_selector(".widget-subarea .jupyter-widgets", timeout=60_000)
        section = page.locator(f"#{args.anchor}").first
        if not section.count():
            print(f"no element with id {args.anchor!r} on {args.page}", file=sys.stderr)
            return 1
        # Hide the cells' source code for the picture: a reader sees the prose and the widget.
        page.add_style_tag(content=".cell_input { display: none !important; }")
        section.evaluate("(el) => el.scrollIntoView({block: 'start'})")
        handle = section.locator(".noUi-handle").first
        if handle.count():
            handle.focus()
            for _ in range(3):
                handle.press("ArrowRight")
        page.wait_for_timeout(500)
        page.screenshot(path=args.output)
        browser.close()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
