"""A first-time user in real Chromium: the Start-here panel leads to the tabs, is dismissed
(and stays so after a reload) and comes back from the header; an edit typed and not applied
survives clicking another principle."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e


def test_the_start_here_panel_leads_the_way_and_can_be_dismissed(page: Page, studio):
    panel = page.locator("#start-here")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("SL-CAI")
    expect(panel.locator(".flow-box")).to_have_count(7)
    page.click("#start-chain")
    expect(page.locator("#chains-run")).to_be_visible()
    page.click("#start-score")
    expect(page.locator("#pref-score")).to_be_visible()
    page.click("#start-edit")
    expect(page.locator("#principle-apply")).to_be_visible()

    page.click("#start-dismiss")
    expect(panel).to_be_hidden()
    page.reload()
    expect(page.locator("#principle-table")).to_contain_text("physical-harm")
    page.wait_for_timeout(1000)  # the page-load handler has had its chance to show it
    expect(panel).to_be_hidden()
    page.click("#start-here-open")
    expect(panel).to_be_visible()


def test_an_unapplied_edit_is_applied_before_another_principle_opens(page: Page, studio):
    table = page.locator("#principle-table")
    table.get_by_text("privacy", exact=True).first.click()
    expect(page.locator("#principle-editing")).to_contain_text("privacy")
    page.fill("#field-title textarea", "Guard everyone's privacy")
    table.get_by_text("physical-harm", exact=True).first.click()
    expect(page.locator("#constitution-message")).to_contain_text("Applied your edits to 'privacy'")
    expect(page.locator("#principle-editing")).to_contain_text("physical-harm")
    expect(table).to_contain_text("Guard everyone's privacy")

    page.fill("#field-weight input", "-3")
    table.get_by_text("privacy", exact=True).first.click()
    expect(page.locator("#constitution-message")).to_contain_text("not applied")
    expect(page.locator("#error-weight")).to_contain_text("greater than 0")
    expect(page.locator("#field-weight input")).to_have_value("-3")  # what was typed stays
    page.click("#principle-revert")
    expect(page.locator("#field-weight input")).not_to_have_value("-3")


def test_the_one_click_pipeline_lands_on_its_own_view_and_its_banner_ends_with_it(
    page: Page, studio
):
    from pipeline.data.store import Store
    from pipeline.runner import jobs

    page.click("#start-pipeline")
    banner = page.locator("#start-message")
    expect(banner).to_contain_text("(run-all) launched")
    expect(page.locator("#train-description")).to_contain_text("whole pipeline", ignore_case=True)
    expect(page.locator("#train-command")).not_to_contain_text("not ready to launch")
    expect(page.locator("#train-command")).to_contain_text("python -m pipeline run-all")
    stages = page.locator("#train-progress .pipeline-stages")
    expect(stages).to_be_visible(timeout=90_000)  # the pipeline's stage table, unasked
    expect(stages).to_contain_text("sft")
    store = Store(studio.workspace)
    job = store.jobs("run-all")[0]
    jobs.cancel(store, job.id)
    jobs.wait(store, job.id, timeout=120)
    expect(banner).not_to_contain_text("launched", timeout=30_000)  # not left on every tab
