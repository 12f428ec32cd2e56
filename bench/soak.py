"""A studio page kept open and used (issue: after 30 minutes of use a click took 20–80 s until
a reload): click-to-update latency on a fresh page, then again after rounds of every tab with
a short job running in the same workspace, and the page's element count and JS heap between.

`--minutes M` keeps using the page for M minutes instead of a number of rounds: a reading
every `--every` minutes, a short job every ten. The JS heap is read after a forced garbage
collection (what the page still holds, not garbage not yet collected). Before the first
reading and after the last, the CPU the server (this process) and Chromium use per second
over 15 idle seconds with the page open.

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


def page_state(page, cdp) -> tuple[int, float]:
    """(elements in the page, JS heap MB after a garbage collection)."""
    nodes = page.evaluate("() => document.getElementsByTagName('*').length")
    cdp.send("HeapProfiler.collectGarbage")
    return nodes, cdp.send("Runtime.getHeapUsage")["usedSize"] / 2**20


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (those gone count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def chromium_pids() -> list[int]:
    return [
        int(d.name)
        for d in Path("/proc").iterdir()
        if d.name.isdigit() and "chrom" in _read(d / "comm")
    ]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def idle_cpu(seconds: float = 15.0) -> tuple[float, float]:
    """(server, Chromium) CPU seconds per second while the page sits open and untouched."""
    server, browser = [os.getpid()], chromium_pids()
    before = cpu_seconds(server), cpu_seconds(browser)
    time.sleep(seconds)
    return (
        (cpu_seconds(server) - before[0]) / seconds,
        (cpu_seconds(browser) - before[1]) / seconds,
    )


def reading(page, cdp, clicks: int, label: str) -> tuple[str, float, int, float]:
    """A labelled row: median click seconds, elements, JS heap MB."""
    click = latency(page, clicks)
    return (label, click, *page_state(page, cdp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds of every tab")
    parser.add_argument("--minutes", type=float, default=0, help="use the page this long instead")
    parser.add_argument("--every", type=float, default=10, help="minutes between readings")
    parser.add_argument("--clicks", type=int, default=6, help="clicks per latency reading")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    url = serve(root / "ws")
    rows, jobs = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
        cdp = page.context.new_cdp_session(page)
        page.goto(url)
        page.wait_for_selector("#principle-table")
        fresh = latency(page, args.clicks)
        tab_round(page)  # every tab rendered once
        latency(page, 1)  # counted on the Constitution tab, as at the end
        idle_first = idle_cpu()
        rows.append(("fresh page", fresh, *page_state(page, cdp)))
        started = time.perf_counter()
        rounds, next_job, next_reading = 0, 0.0, args.every
        while (
            (time.perf_counter() - started) / 60 < args.minutes
            if args.minutes
            else rounds < args.rounds
        ):
            minutes = (time.perf_counter() - started) / 60
            if minutes >= next_job and all(job.poll() is not None for job in jobs):
                jobs.append(short_job(root / "ws", root / f"chains-{len(jobs)}"))
                next_job = minutes + 10 if args.minutes else float("inf")
            if args.minutes and minutes >= next_reading:
                rows.append(reading(page, cdp, args.clicks, f"after {minutes:.0f} min"))
                next_reading += args.every
            tab_round(page)
            latency(page, 2)
            rounds += 1
        for job in jobs:
            job.wait()
        used = time.perf_counter() - started
        rows.append(reading(page, cdp, args.clicks, f"after {rounds} rounds ({used / 60:.1f} min)"))
        idle_last = idle_cpu()
        browser.close()
    print(f"{'reading':<34} {'click s':>8} {'elements':>9} {'JS heap MB':>11}")
    for label, click, nodes, heap in rows:
        print(f"{label:<34} {click:>8.2f} {nodes:>9} {heap:>11.1f}")
    print("idle, page open (CPU s per s): server, Chromium")
    print(f"  fresh: {idle_first[0]:.3f}, {idle_first[1]:.3f}")
    print(f"  after: {idle_last[0]:.3f}, {idle_last[1]:.3f}")
    print(f"job exit codes {[job.returncode for job in jobs]}")
    print(f"ratio={fresh / rows[-1][1]:.2f}")


if __name__ == "__main__":
    main()
