"""A studio page kept open and used (issue: after 30 minutes of use a click took 20–80 s until
a reload): click-to-update latency on a fresh page, then again after rounds of every tab with
a short job running in the same workspace, and the page's element count and JS heap between.

Prints a table and `ratio=` (fresh median latency / latency after the rounds; 1.0 means no
slowdown, larger is better).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from page import serve  # bench/page.py: run as a script, this folder is on the path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
TABS = ("Playground", "Chains", "Preferences", "Values", "Train", "Evaluate", "Runs")


def click_seconds(page, principle_id: str) -> float:
    """Seconds from a click on a principle to the editor showing it (a server round trip)."""
    from playwright.sync_api import expect

    started = time.perf_counter()
    page.locator("#principle-table").get_by_text(principle_id, exact=True).first.click()
    expect(page.locator("#principle-editing")).to_contain_text(principle_id, timeout=300_000)
    return time.perf_counter() - started


def latency(page, clicks: int) -> float:
    """Median seconds of `clicks` principle clicks, alternating two principles."""
    page.get_by_role("tab", name="Constitution").click()
    return statistics.median(
        click_seconds(page, ("privacy", "physical-harm")[n % 2]) for n in range(clicks)
    )


def tab_round(page) -> None:
    from playwright.sync_api import expect

    for name in TABS:
        page.get_by_role("tab", name=name).click()
        expect(page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")


def short_job(workspace: Path, folder: Path) -> subprocess.Popen:
    """A short critique–revision job on the embedded model, as the Chains tab launches one."""
    command = [sys.executable, "-m", "pipeline", "--workspace", str(workspace), "revise"]
    command += ["--constitution", "harmless-helpful", "--limit", "2", "--rounds", "1"]
    command += ["--max-new-tokens", "16", "--out", str(folder)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def page_state(page) -> tuple[int, float]:
    """(elements in the page, JS heap MB)."""
    nodes = page.evaluate("() => document.getElementsByTagName('*').length")
    heap = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : 0")
    return nodes, heap / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds of every tab")
    parser.add_argument("--clicks", type=int, default=6, help="clicks per latency reading")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    url = serve(root / "ws")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
        page.goto(url)
        page.wait_for_selector("#principle-table")
        fresh = latency(page, args.clicks)
        tab_round(page)  # every tab rendered once
        latency(page, 1)  # counted on the Constitution tab, as at the end
        first = page_state(page)
        job = short_job(root / "ws", root / "chains")
        started = time.perf_counter()
        for _ in range(args.rounds):
            tab_round(page)
            latency(page, 2)
        job.wait()
        used = time.perf_counter() - started
        after = latency(page, args.clicks)
        last = page_state(page)
        browser.close()
    print(f"{'reading':<34} {'click s':>8} {'elements':>9} {'JS heap MB':>11}")
    print(f"{'fresh page':<34} {fresh:>8.2f} {first[0]:>9} {first[1]:>11.1f}")
    label = f"after {args.rounds} rounds ({used / 60:.1f} min)"
    print(f"{label:<34} {after:>8.2f} {last[0]:>9} {last[1]:>11.1f}")
    print(f"job exit code {job.returncode}")
    print(f"ratio={fresh / after:.2f}")


if __name__ == "__main__":
    main()
