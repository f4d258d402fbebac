"""Take the README's screenshot of a chapter from the built book (no kernel running).

    jupyter-book build .                       # first build the site (LENET_QUICK=1 is fine)
    python scripts/readme_screenshot.py        # writes book/images/screenshot.png

Serves ``_build/html`` on 127.0.0.1, opens a chapter in headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright), waits for its widgets, scrolls to the
section given by ``--anchor`` (code cells hidden, to show prose and widget), moves the widget's first slider a few steps (so the
picture shows a widget working in a static page) and saves one viewport-sized PNG.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))
from sitekit import CHROMIUM_ARGS  # noqa: E402


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", default="notebooks/05_convolution.html")
    ap.add_argument("--anchor", default="explore-choose-a-kernel",
                    help="id of the section to show (default: the kernel explorer)")
    ap.add_argument("--site", default=str(REPO / "_build" / "html"))
    ap.add_argument("--output", default=str(REPO / "book" / "images" / "screenshot.png"))
    ap.add_argument("--size", default="1280x860", help="viewport WIDTHxHEIGHT")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    site = Path(args.site)
    if not (site / args.page).is_file():
        print(f"{site / args.page} not found: build the book first (jupyter-book build .)", file=sys.stderr)
        return 1
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    width, height = (int(v) for v in args.size.split("x"))
    executable = os.environ.get("LENET_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            url = f"http://127.0.0.1:{server.server_address[1]}/{args.page}"
            page.goto(url, wait_until="networkidle")
            page.wait_for_selector(".widget-subarea .jupyter-widgets", timeout=60_000)
            section = page.locator(f"section#{args.anchor}, #{args.anchor}").first
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
    finally:
        server.shutdown()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
