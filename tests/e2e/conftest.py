"""A real studio server (python app.py) and a real Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# A page's first load runs every tab's load handler through one queue on 2 cores: give an
# expectation 15 s, not Playwright's 5, before it counts as failed
expect.set_options(timeout=15_000)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Studio:
    """One `python app.py` process on a workspace; can be restarted on the same workspace."""

    def __init__(
        self,
        workspace: Path,
        log: Path,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ):
        self.workspace, self.log = workspace, log
        self.args, self.env = args, env or {}
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        self.launch()
        self.wait()

    def launch(self) -> None:
        """Start the process without waiting for it to serve."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **self.env}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "app.py",
                "--port",
                str(port),
                "--workspace",
                str(self.workspace),
                *self.args,
            ],
            cwd=ROOT,
            env=env,
            stdout=open(self.log, "a"),
            stderr=subprocess.STDOUT,
        )

    def wait(self) -> None:
        """Until the launched process answers HTTP (it fails with the log's tail if not)."""
        assert self.proc is not None, "launch() first"
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"studio exited early:\n{self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"studio did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def restart(self) -> None:
        self.stop()
        self.start()


class Spares:
    """Studios started one test ahead: every test still gets a server of its own on a fresh
    workspace, but the next one's start (about 10 s of imports) overlaps the test before."""

    def __init__(self, root: Path):
        self.root, self.started, self.spare = root, 0, None

    def _launch(self) -> Studio:
        self.started += 1
        folder = self.root / f"studio-{self.started}"
        folder.mkdir()
        server = Studio(folder / "workspace", folder / "studio.log")
        server.launch()
        return server

    def take(self) -> Studio:
        server = self.spare or self._launch()
        server.wait()
        self.spare = self._launch()
        return server

    def close(self) -> None:
        if self.spare:
            self.spare.stop()


@pytest.fixture(scope="session")
def spares(tmp_path_factory):
    pool = Spares(tmp_path_factory.mktemp("studios"))
    yield pool
    pool.close()


@pytest.fixture
def studio(spares):
    server = spares.take()
    yield server
    server.stop()
    assert_no_traceback(server.log)


def assert_no_traceback(log: Path) -> None:
    """A handler that failed inside the server (a timer's answer Gradio refused, say) may
    show nothing a test looks for: its traceback in the log fails the test."""
    text = log.read_text(errors="replace")
    if "Traceback (most recent call last)" in text:
        start = text.index("Traceback (most recent call last)")
        pytest.fail(f"the studio logged an error:\n{text[start : start + 3000]}")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}; install Debian's chromium "
            "(make test does) or set CHROMIUM_PATH."
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, studio):
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(studio.url)
    pg.wait_for_selector("#principle-table")
    # wait for the page-load handler to fill the table, so a first click is not overwritten
    expect(pg.locator("#principle-table")).to_contain_text("physical-harm")
    yield pg
    context.close()


def set_slider(page: Page, elem_id: str, value: int) -> None:
    """Type a slider's value and wait until the slider itself holds it (its range input
    follows the component's state, not the typed box), so the next event sends it.

    Typed again if the slider has not taken it: in CI a value typed into a slider of an
    accordion just opened was once dropped (the range input stayed at 0 for 15 s), which a
    user would see and retype; five drops in a row fail, naming what each box shows."""
    box = page.locator(f"#{elem_id} input[type=number]")
    slider = page.locator(f"#{elem_id} input[type=range]")
    expect(slider).to_be_visible()
    for _ in range(5):
        box.fill(str(value))
        box.press("Enter")
        try:
            expect(slider).to_have_value(str(value), timeout=3_000)
            return
        except AssertionError:
            continue
    pytest.fail(
        f"slider {elem_id} stays at {slider.input_value()!r} (its box shows "
        f"{box.input_value()!r}) after typing {value} five times"
    )


def open_tab(page: Page, name: str, constitution: str) -> None:
    """Open a tab and wait for its page-load handler to fill its constitution dropdown
    (`constitution`: that dropdown's elem_id): a click before it sends none, and the studio
    rightly answers "Pick a constitution first."."""
    page.get_by_role("tab", name=name).click()
    expect(page.locator(f"#{constitution} input")).to_have_value("harmless-helpful")


def drag_across(page: Page, plot: str, shown: Locator, count: int) -> None:
    """Drag across a plot's whole width (its brush selects every point) until `count` of
    `shown` appear. Dragged again if none do: under a full test run's load the plot's
    brush once let a drag pass without a selection (the same test passes alone), which a
    user would see and drag again; three misses in a row fail."""
    frame = page.locator(f"{plot} svg path.background").first  # the plot's frame
    for _ in range(3):
        expect(frame).to_be_visible()
        box = frame.bounding_box()
        assert box is not None
        middle = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + 0.03 * box["width"], middle)
        page.mouse.down()
        page.mouse.move(box["x"] + 0.97 * box["width"], middle, steps=20)
        page.mouse.up()
        try:
            expect(shown).to_have_count(count, timeout=15_000)
            return
        except AssertionError:
            continue
    pytest.fail(f"three drags across {plot} selected {shown.count()} of {count} points")


def pick(page: Page, elem_id: str, option: str) -> None:
    """Open a dropdown and click one of its own options (another dropdown's list may still
    be open in the page)."""
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id}").get_by_role("option", name=option, exact=True).click()


def open_principle(page: Page, principle_id: str) -> None:
    """Open a principle in the Constitution tab's editor (a round trip to the server)."""
    page.locator("#principle-table").get_by_text(principle_id, exact=True).first.click()
    expect(page.locator("#principle-editing")).to_contain_text(principle_id)
