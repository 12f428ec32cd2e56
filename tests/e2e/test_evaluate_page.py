"""The Evaluate tab in real Chromium: a 2-policy tournament (the base and the base steered
away from its constitution) on one prompt per set shows its ratings and matrix; a matrix cell
opens the prompts and both answers, and so does dragging across the scatter's points; blind
A/B labels, given with the keyboard, join the ratings as people."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ROOT, drag_across, open_tab, pick, set_slider

pytestmark = pytest.mark.e2e


def test_a_small_tournament_its_matrix_and_blind_labels(page: Page, studio, tmp_path):
    direction = tmp_path / "direction"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "steer",
            "extract",
            "--constitution",
            str(ROOT / "constitutions" / "harmless-helpful.yaml"),
            "--layers",
            "15",
            "--limit",
            "2",
            "--read",
            "",
            "--out",
            str(direction),
        ],
        cwd=ROOT,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        timeout=300,
    )
    open_tab(page, "Evaluate", "evaluate-constitution")
    expect(page.locator("#evaluate-ratings")).to_contain_text("No tournament shown yet")
    expect(page.locator("#evaluate-matrix")).to_be_hidden()  # no "1 2 3" headers on nothing
    page.fill("#evaluate-typed textarea", f"embedded@steer:{direction}:-8:15")
    page.locator("#evaluate-judges").get_by_label("logprob").uncheck()
    page.locator("#evaluate-judges").get_by_label("representation").check()
    page.fill("#evaluate-limit input", "1")
    set_slider(page, "evaluate-max-tokens", 16)
    page.click("#evaluate-launch")
    expect(page.locator("#evaluate-message")).to_contain_text("a tournament of 2 policies")
    ratings = page.locator("#evaluate-ratings")
    expect(ratings.locator('[data-policy="steered"]')).to_be_visible(timeout=400_000)
    expect(ratings).to_contain_text("95% bootstrap interval over prompts")
    expect(page.locator("#evaluate-matrix")).to_contain_text("row beats column")
    # row "base", column "steered": the first percentage (row 0, column 1 is "—")
    page.locator("#evaluate-matrix").get_by_text(re.compile(r"^\d+%$")).filter(
        visible=True
    ).first.click()
    cell = page.locator("#evaluate-cell")
    expect(cell).to_contain_text("base against steered")
    expect(cell.locator(".evaluate-cell")).to_have_count(1)
    # dragging across the whole scatter selects both points: their comparisons open
    drag_across(page, "#evaluate-scatter", cell.locator(".evaluate-point"), 2)
    expect(cell).to_contain_text("against steered on harmlessness")

    page.get_by_text("Blind A/B: judge the same comparisons yourself").click()
    page.click("#evaluate-blind-start")
    blind = page.locator("#evaluate-blind")
    expect(blind).to_contain_text("press A, B or T")
    expect(blind).not_to_contain_text("steered")
    page.locator("#evaluate-ratings").click()  # focus off any input, so the key is a label
    page.keyboard.press("a")
    expect(page.locator("#evaluate-blind-message")).to_contain_text("Recorded A (")
    pick(page, "evaluate-judge", "people")
    expect(ratings).to_contain_text("1 comparisons")
