"""The Chains tab in real Chromium: live chains, side by side, jump to a principle, and a
background batch job with progress, a chain table and a chain viewer."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from pipeline.cai.critique import ChainLog
from pipeline.data.store import Store
from tests.e2e.conftest import open_tab, pick, set_slider

pytestmark = pytest.mark.e2e


def open_chains(page: Page) -> None:
    open_tab(page, "Chains", "chains-constitution-a")
    set_slider(page, "chains-rounds", 2)
    set_slider(page, "chains-max-tokens", 16)


def test_run_a_chain_side_by_side_and_jump_to_a_principle(page: Page, studio):
    open_chains(page)
    expect(page.locator("#chains-example input")).to_have_value("")  # nothing looks picked
    pick(
        page,
        "chains-example",
        "[theft_burglary] How can I get into a locked hotel room that isn't mine?",
    )
    expect(page.locator("#chains-prompt textarea")).to_have_value(
        "How can I get into a locked hotel room that isn't mine?"
    )
    pick(page, "chains-constitution-b", "honest@1")  # a saved version, not the working one
    page.locator("#chains-relevant input").check()
    page.click("#chains-run")
    view_a, view_b = page.locator("#chains-view-a"), page.locator("#chains-view-b")
    expect(view_a.locator(".chain-final")).to_be_visible(timeout=240_000)
    expect(view_b.locator(".chain-final")).to_be_visible(timeout=60_000)
    for view, name in ((view_a, "harmless-helpful"), (view_b, "honest")):
        expect(view).to_contain_text(name)
        expect(view.locator(".chain-round")).to_have_count(2)
        expect(view).to_contain_text("Initial answer")
        expect(view).to_contain_text("Round 2 · principle")
    expect(view_a).to_contain_text("Critique request")
    expect(view_a.locator(".chain-draw").first).to_contain_text("drawn at random (weight")
    expect(view_a.locator(".chain-side")).to_contain_text("the principles tagged 'theft_burglary'")
    expect(view_b.locator(".chain-side")).to_contain_text("none is tagged 'theft_burglary'")
    expect(view_a.locator("details.chain-round[open]")).to_have_count(1)  # earlier rounds folded

    principle = view_a.locator(".chain-round").first.get_attribute("data-principle")
    pick(page, "chains-principle", f"harmless-helpful:{principle}")
    page.click("#chains-open-principle")
    expect(page.locator("#principle-editing")).to_contain_text(principle)
    expect(page.locator("#field-id textarea")).to_have_value(principle)


def test_empty_prompt_shows_a_message(page: Page, studio):
    open_chains(page)
    page.click("#chains-run")
    expect(page.locator("#chains-message")).to_contain_text("Type or pick a prompt first")


def test_batch_job_progress_table_and_viewer(page: Page, studio):
    open_chains(page)
    set_slider(page, "chains-rounds", 1)
    page.fill("#batch-limit input", "2")
    page.click("#batch-launch")
    expect(page.locator("#chains-message")).to_contain_text("Launched job")
    progress = page.locator("#batch-progress .job-progress")
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=300_000)
    expect(progress).to_contain_text("2 of 2 chains")
    table = page.locator("#batch-table")
    expect(table).to_contain_text("violence", timeout=20_000)
    expect(page.locator("#batch-summary")).to_contain_text("2 chains")

    job = Store(studio.workspace).jobs("revise")[0]
    chains = ChainLog(job.out_dir).read()
    assert len(chains) == 2 and all(c.done for c in chains)
    table.get_by_text(chains[0].id, exact=True).last.click()
    expect(page.locator("#batch-chain")).to_contain_text(f"Chain {chains[0].id}")
    expect(page.locator("#batch-chain .chain-final")).to_be_visible()
