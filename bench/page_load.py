"""The studio's first page load in real Chromium: seconds from opening the page to the
Constitution tab filled by its load handler, ours (page loads, timers and what they chain
register no loading status) against Gradio's default (every event's outputs tracked), both
served from this process on the same workspace, alternating, several loads each.

Prints a table and `ratio=` (default median / ours median; larger is better).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from page import serve  # bench/page.py: run as a script, this folder is on the path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def filled_in(browser, url: str) -> float:
    """Seconds from opening `url` in a fresh context to the principles table filled."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    started = time.perf_counter()
    page.goto(url)
    expect(page.locator("#principle-table")).to_contain_text("physical-harm", timeout=120_000)
    seconds = time.perf_counter() - started
    context.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5, help="page loads per variant")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    workspace = Path(tempfile.mkdtemp()) / "ws"
    urls = {"ours": serve(workspace), "default": serve(workspace, "keep_background_events_quiet")}
    times: dict[str, list[float]] = {name: [] for name in urls}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for name, url in urls.items():  # a first load of each warms the server's caches
            filled_in(browser, url)
        for _ in range(args.loads):
            for name, url in urls.items():
                times[name].append(filled_in(browser, url))
        browser.close()
    print(f"{'variant':<10} {'median s':>9} {'min s':>7} {'max s':>7}  ({args.loads} loads)")
    for name, found in times.items():
        print(f"{name:<10} {statistics.median(found):>9.2f} {min(found):>7.2f} {max(found):>7.2f}")
    print(f"ratio={statistics.median(times['default']) / statistics.median(times['ours']):.2f}")


if __name__ == "__main__":
    main()
