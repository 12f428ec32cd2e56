"""A page kept open through round after round of every tab and a job (issue: the page grew
sluggish after half an hour of use): what it holds stops growing once each tab has been seen,
and a click still reaches the server and comes back. bench/soak.py times the clicks."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from pipeline.data.store import Store
from pipeline.runner import jobs
from tests.e2e.conftest import open_principle

pytestmark = pytest.mark.e2e

TABS = ("Playground", "Chains", "Preferences", "Values", "Train", "Evaluate", "Runs")
NODES = "() => document.getElementsByTagName('*').length"


def cycle(page: Page) -> None:
    """Every tab once, then two principles opened in the Constitution tab."""
    for name in TABS:
        page.get_by_role("tab", name=name).click()
        expect(page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")
    page.get_by_role("tab", name="Constitution").click()
    open_principle(page, "privacy")
    open_principle(page, "physical-harm")


def test_a_page_kept_open_through_every_tab_and_a_job_stops_growing(
    page: Page, studio, tiny_folder, tmp_path
):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hello.\nSay goodbye.\n")
    store = Store(studio.workspace)
    out = store.new_run_folder("chains")
    args = ["revise", "--constitution", "harmless-helpful", "--prompts", str(prompts)]
    args += ["--model", str(tiny_folder), "--rounds", "1", "--max-new-tokens", "6", "--no-few-shot"]
    job = jobs.launch(store, "revise", [*args, "--out", str(out)], out)
    cycle(page)  # every tab rendered once, while the job runs
    ended = jobs.wait(store, job.id, timeout=300)
    assert ended.status == "succeeded", ended.error
    page.get_by_role("tab", name="Runs").click()
    expect(page.locator("#runs-table")).to_contain_text("chains · harmless-helpful")
    # the Train tab's job list takes a job queued outside the page at its next beat (the
    # pace is slow with nothing running): the rounds counted start once it has
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-jobs")).to_contain_text("succeeded", timeout=60_000)
    cycle(page)  # counted where every round ends: a tab's elements are there while it shows
    settled = page.evaluate(NODES)
    for _ in range(4):
        cycle(page)
    grown = page.evaluate(NODES) - settled
    assert grown <= settled // 50, f"the page grew by {grown} elements in 4 rounds"
    open_principle(page, "privacy")  # still answering
