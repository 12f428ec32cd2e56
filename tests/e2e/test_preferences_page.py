"""The Preferences tab in real Chromium: score a pair, swap it, label it with the keyboard,
watch the agreement update; a background labelling job with its table and queue."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from pipeline.data.preferences import gold_pairs
from pipeline.data.store import Store
from tests.e2e.conftest import open_tab, pick

pytestmark = pytest.mark.e2e

EGG = "[cooking] How long should I boil an egg for a runny yolk?"
# The next request that joins the server's queue waits a second before it is sent.
HOLD_NEXT_JOIN = """() => {
  const send = window.fetch;
  let held = false;
  window.fetch = function (input, init) {
    const url = typeof input === "string" ? input : (input && input.url) || "";
    if (held || !url.includes("/queue/join")) return send.apply(this, arguments);
    held = true;
    return new Promise((wait) => setTimeout(wait, 1000)).then(() => send.call(this, input, init));
  };
}"""


def open_preferences(page: Page) -> None:
    open_tab(page, "Preferences", "pref-constitution")


def test_score_swap_label_and_see_the_agreement_update(page: Page, studio):
    open_preferences(page)
    pick(page, "pref-example", EGG)
    expect(page.locator("#pref-prompt textarea")).to_have_value(re.compile("boil an egg"))
    a_before = page.locator("#pref-a textarea").input_value()
    b_before = page.locator("#pref-b textarea").input_value()
    page.click("#pref-score")  # the default ensemble of 1: one principle drawn for the pair
    bars = page.locator("#pref-bars")
    expect(bars.locator(".pref-overall")).to_be_visible(timeout=120_000)
    expect(bars.locator(".pref-principle")).to_have_count(1)
    expect(bars).to_contain_text("A shown first")
    expect(bars).to_contain_text("B shown first")
    expect(bars.locator(".pref-legend")).to_contain_text("position decided")
    overall = bars.locator(".pref-overall")
    assert overall.get_attribute("data-verdict") in ("ok", "warn", "bad")
    expect(overall.locator(".verdict")).to_contain_text(
        re.compile("position-decided|no preference|prefers [AB] in both orders")
    )
    p_a = float(overall.get_attribute("data-p-a"))
    assert 0 < p_a < 1
    judge = bars.locator(".pref-principle").get_attribute("data-principle")

    page.click("#pref-swap")  # the same principle judges the swapped pair
    expect(page.locator("#pref-a textarea")).to_have_value(b_before)
    expect(page.locator("#pref-b textarea")).to_have_value(a_before)
    expect(bars).to_contain_text(
        f"Before the swap P(A) was {p_a:.3f} with the same principles", timeout=120_000
    )
    expect(bars.locator(".pref-principle")).to_have_attribute("data-principle", judge)

    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("1")  # A is better (the keyboard shortcut)
    expect(page.locator("#pref-message")).to_contain_text("Recorded your label A")
    expect(page.locator("#pref-human-state")).to_contain_text("Your label for this pair: A")
    expect(page.locator("#pref-human-state")).to_contain_text("1 of 1 pairs in these labels")
    expect(page.locator("#pref-guideline")).to_contain_text(
        "Labelling guideline (harmless-helpful)"
    )
    expect(page.locator("#pref-report")).to_contain_text("too few pairs to say: 1 compared")
    labels = Store(studio.workspace).human_labels()
    assert list(labels.values()) == ["A"]
    page.keyboard.press("u")  # undo the last label
    expect(page.locator("#pref-message")).to_contain_text("took back label A")
    expect(page.locator("#pref-human-state")).to_contain_text("0 of 1 pairs")
    assert Store(studio.workspace).human_labels() == {}
    # B, and at once undo it: the two act in the order pressed, even when the label's
    # request is slow to reach the server (held back a second here, as on a busy machine)
    page.evaluate(HOLD_NEXT_JOIN)
    page.keyboard.press("2")
    page.keyboard.press("u")
    # the message names the label taken back: B (the first undo's message named A)
    expect(page.locator("#pref-message")).to_contain_text("took back label B")
    expect(page.locator("#pref-human-state")).to_contain_text("0 of 1 pairs")
    assert Store(studio.workspace).human_labels() == {}


def test_an_empty_answer_shows_a_message(page: Page, studio):
    open_preferences(page)
    page.fill("#pref-prompt textarea", "What is 2 + 2?")
    page.fill("#pref-a textarea", "4")
    page.click("#pref-score")
    expect(page.locator("#pref-message")).to_contain_text("Answer B is empty")


def test_batch_labelling_job_table_and_queue(page: Page, studio):
    open_preferences(page)
    page.fill("#pref-batch-limit input", "3")
    page.click("#pref-batch-launch")
    expect(page.locator("#pref-message")).to_contain_text("Launched job")
    progress = page.locator("#pref-batch-progress .job-progress")
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=300_000)
    expect(progress).to_contain_text("3 of 3 pairs")
    table = page.locator("#pref-table")
    first = gold_pairs()[0]
    expect(table).to_contain_text(first.id, timeout=20_000)
    # the gold pairs come with human labels, so agreement is measured at once
    report = page.locator("#pref-report")
    expect(report).to_contain_text("too few pairs to say: 3 compared")
    expect(report.locator("[data-muted]")).to_contain_text("calibration error not meaningful")
    expect(report).to_contain_text("always-longer")
    # the default judge is auto; with no labels of yours it is the log-prob judge, and says so
    expect(report.locator(".notice-warn")).to_contain_text("labels unverified")
    pick(page, "pref-view", "AI vs human disagreements")
    pick(page, "pref-view", "all")
    table.get_by_text(first.id, exact=True).last.click()
    expect(page.locator("#pref-prompt textarea")).to_have_value(first.prompt)
    # the gold pairs' shipped labels are not yours: the queue serves them, most uncertain first
    page.click("#pref-next")
    expect(page.locator("#pref-message")).to_contain_text("0 of 3 labelled")
    expect(page.locator("#pref-message")).to_contain_text("the AI label is least sure of it")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("1")
    expect(page.locator("#pref-message")).to_contain_text("Recorded your label A")
    page.click("#pref-next")
    expect(page.locator("#pref-message")).to_contain_text("1 of 3 labelled")
