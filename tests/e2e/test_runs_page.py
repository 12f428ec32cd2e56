"""The Runs tab in real Chromium: two SFT runs compared (curves overlaid, the differing
setting marked) and one exported as a merged model that loads in plain transformers."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from pipeline.data.store import Store
from tests.pipeline.runner.test_compare import trained_run

pytestmark = pytest.mark.e2e


def test_two_runs_compared_and_one_exported(page: Page, studio, tiny_folder):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    store = Store(studio.workspace)
    runs = studio.workspace / "runs"
    a = trained_run(store, runs / "sft-a", 2e-4, [2.0, 1.6, 1.3])
    b = trained_run(store, runs / "sft-b", 1e-3, [2.0, 1.2, 0.8])
    base = AutoModelForCausalLM.from_pretrained(tiny_folder)
    get_peft_model(base, LoraConfig(target_modules=["q_proj"])).save_pretrained(
        runs / "sft-b" / "adapter"
    )
    page.get_by_role("tab", name="Runs").click()
    table = page.locator("#runs-table")
    expect(table).to_contain_text("SFT")

    page.locator("#runs-compare").get_by_text("Compare runs").click()
    for job in (a, b):
        page.locator("#runs-compare-pick input").click()
        page.get_by_role("option", name=f"job {job.id}", exact=False).click()
    page.click("#runs-compare-button")
    view = page.locator("#runs-compare-view")
    expect(view).to_contain_text("1 settings differ")
    expect(view.locator("tr.differs")).to_contain_text("learning_rate")
    expect(page.locator("#runs-compare-plot-0")).to_be_visible()
    expect(page.locator("#runs-compare-plot-0")).to_contain_text("loss")

    table.get_by_role("gridcell", name=str(b.id), exact=True).click()
    expect(page.locator("#runs-export")).to_be_visible()
    expect(page.locator("#runs-export-name textarea, #runs-export-name input").first).to_have_value(
        "sft-b"
    )
    page.click("#runs-export-button")
    message = page.locator("#runs-export-message")
    expect(message).to_contain_text("Exported into", timeout=120_000)
    folder = studio.workspace / "models" / "sft-b"
    assert AutoModelForCausalLM.from_pretrained(folder).config.num_hidden_layers == 2
    page.click("#runs-export-button")  # the same name again: refused, the export kept
    expect(message).to_contain_text("exists and is not empty")
