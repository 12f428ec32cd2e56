"""Latent values in real Chromium: a values report comparing two constitutions on the gold
pairs shows its curves and flags the adversarial one; a judge fitted from labels a person
gave in the Preferences tab scores a pair."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from pipeline.data.store import Store
from studio.tabs.preferences import gold_by_label
from tests.e2e.conftest import open_tab, pick

pytestmark = pytest.mark.e2e


def test_a_values_report_compares_constitutions_and_flags_the_adversarial_one(page: Page, studio):
    page.get_by_role("tab", name="Values").click()
    expect(page.locator("#values-constitutions")).to_contain_text("harmless-helpful")
    expect(page.locator("#values-banner")).to_contain_text("No values report shown yet")
    expect(page.locator("#values-curves")).to_be_hidden()  # no empty plot before a report
    pick(page, "values-constitutions", "adversarial")
    page.fill("#values-layers textarea", "8,13,18")
    page.fill("#values-judge input", "-1")  # the log-prob judge's part is tested without a browser
    page.click("#values-launch")
    expect(page.locator("#values-message")).to_contain_text("Launched job")
    expect(page.locator("#values-progress .job-progress")).to_contain_text("values-report")
    banner = page.locator("#values-banner")
    expect(banner).to_contain_text("Adversarial constitution: adversarial", timeout=600_000)
    expect(banner).to_contain_text(
        "harmless-helpful: not adversarial — mean cos(w_c, w*) over layers"
    )
    expect(banner).to_contain_text("95% interval")
    expect(page.locator("#values-summary")).to_contain_text("always-longer")
    expect(page.locator("#values-curves")).to_be_visible()
    expect(page.locator("#values-heatmap .values-heatmap")).to_have_count(2)


def test_a_judge_fitted_from_my_labels_scores_a_pair(page: Page, studio):
    open_tab(page, "Preferences", "pref-constitution")
    for label, pair in list(gold_by_label().items())[:6]:
        pick(page, "pref-example", label)
        expect(page.locator("#pref-prompt textarea")).to_have_value(pair.prompt)
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.keyboard.press("1")
        expect(page.locator("#pref-message")).to_contain_text(
            f"Recorded your label A for pair {pair.id}"
        )
    assert len(Store(studio.workspace).human_labels()) == 6
    page.click("#pref-fit")
    expect(page.locator("#pref-message")).to_contain_text("(values-fit)")
    progress = page.locator("#pref-batch-progress .job-progress")
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=300_000)
    page.locator("#pref-judge input").click()  # the list is refreshed as it opens
    page.locator("#pref-judge").get_by_role(
        "option", name=re.compile("probe fitted from your labels")
    ).click()
    page.click("#pref-score")
    expect(page.locator("#pref-bars")).to_contain_text(
        "Probe fitted from your labels", timeout=120_000
    )
    expect(page.locator("#pref-bars .pref-overall")).to_be_visible()
