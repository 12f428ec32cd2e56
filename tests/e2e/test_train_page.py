"""The Train tab in real Chromium: a bad config is refused with its reason; a tiny SFT job
is launched from the form on the chains a real `revise` run wrote, its progress says what it
does, its loss plot appears while it runs, it finishes, and its adapter is offered as a model
in the Playground. The jobs run on the tiny model: what is tested is the page's wiring to
real jobs, which the model's size does not change (the embedded model's runs are tested in
tests/pipeline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from pipeline.data.store import Store
from pipeline.runner import jobs
from pipeline.runner.run_list import run_name
from tests.e2e.conftest import pick

pytestmark = pytest.mark.e2e


def fill(page: Page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input").first
    box.fill(value)
    box.press("Enter")


def test_sft_on_a_chain_run_from_the_train_tab(page: Page, studio, tiny_folder):
    store = Store(studio.workspace)
    chains = store.new_run_folder("chains")  # a Chains-tab batch run, as a user starts it
    job = jobs.launch(
        store,
        "revise",
        [
            "revise",
            "--constitution",
            "constitutions/harmless-helpful.yaml",
            "--split",
            "train",
            "--limit",
            "3",
            "--rounds",
            "1",
            "--max-new-tokens",
            "24",
            "--model",
            str(tiny_folder),
            "--no-few-shot",
            "--out",
            str(chains),
        ],
        chains,
    )
    assert jobs.wait(store, job.id, timeout=300).status == "succeeded"
    page.reload()
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-command")).to_contain_text("max_steps: 24")  # the tiny preset
    named = f"{run_name(store.job(job.id))} · job {job.id}"  # by its name, not its folder
    pick(page, "train-sft-data", named)  # a chain run is offered as SFT data
    expect(page.locator("#train-command")).to_contain_text(f"data: {chains}")  # reads the folder
    fill(page, "train-sft-model", str(tiny_folder))
    fill(page, "train-sft-max-steps", "6")
    fill(page, "train-sft-max-length", "64")
    fill(page, "train-sft-batch-size", "2")
    fill(page, "train-sft-max-steps", "999999999999")
    expect(page.locator("#train-checks")).to_contain_text("would run about")  # absurd: warned
    # enough steps that the page, looking every 2 s, sees the run before it ends (6 steps of
    # this tiny model ended 2 s after their start)
    fill(page, "train-sft-max-steps", "60")
    fill(page, "train-sft-learning-rate", "-1")
    fill(page, "train-sft-batch-size", "0")
    checks = page.locator("#train-checks")
    expect(checks).to_contain_text("learning_rate must be > 0 (got -1.0)")
    expect(checks).to_contain_text("batch_size must be at least 1 (got 0)")
    expect(checks).not_to_contain_text("save_every")  # only the wrong fields are named
    marked = "e => getComputedStyle(e).boxShadow.includes('0px 0px 0px 2px')"
    assert page.locator("#train-sft-learning-rate input").first.evaluate(marked)
    assert not page.locator("#train-sft-save-every input").first.evaluate(marked)
    page.click("#train-launch-sft")
    expect(page.locator("#train-message")).to_contain_text("learning_rate must be > 0")
    fill(page, "train-sft-batch-size", "2")

    fill(page, "train-sft-learning-rate", "0.001")
    expect(page.locator("#train-command")).to_contain_text("python -m pipeline sft --config")
    expect(page.locator("#train-command")).to_contain_text("max_steps: 60")
    previewed = re.search(r"--out (\S+)", page.locator("#train-command").inner_text()).group(1)
    page.click("#train-launch-sft")
    expect(page.locator("#train-message")).to_contain_text("(sft) launched")
    expect(page.locator("#train-message")).to_contain_text(previewed)  # the preview is what runs
    progress = page.locator("#train-progress .job-progress")
    expect(progress).to_contain_text(re.compile(r"loading the model|training · \d+ of 60"))
    expect(page.locator("#train-cancel")).to_have_text("Cancel job")
    expect(page.locator("#train-plot-0")).to_be_visible(timeout=240_000)
    expect(page.locator("#train-plot-0")).to_contain_text("loss")
    expect(progress).to_contain_text(" of 60 steps")
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=300_000)
    expect(progress).to_contain_text("60 of 60 steps")
    expect(page.locator("#train-artifacts")).to_contain_text("can be picked as the model")
    expect(page.locator("#train-jobs")).to_contain_text("succeeded")
    expect(page.locator("#train-log")).to_contain_text("wrote")

    page.get_by_role("tab", name="Runs").click()  # every run, by readable name
    runs = page.locator("#runs-table")
    expect(runs).to_contain_text("SFT · ")
    expect(runs).to_contain_text("chains · harmless-helpful")
    expect(runs).to_contain_text("loss ")
    runs.get_by_text(re.compile("^chains · harmless-helpful")).last.click()
    expect(page.locator("#runs-open")).to_have_text("Open in the Chains tab")
    page.click("#runs-open")
    expect(page.locator("#batch-run input")).to_have_value(str(chains))
    expect(page.locator("#batch-summary")).to_contain_text("3 chains")

    page.get_by_role("tab", name="Playground").click()
    page.locator("#playground-model input").click()
    expect(page.get_by_role("option", name="adapter", exact=False)).to_have_count(1)


def open_form(page: Page, number: str, stage: str, values: dict[str, str]) -> None:
    """The Train tab on stage `number` (its menu entry's start, as "7c"), its form's fields
    (by id suffix) filled with `values`."""
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-stage input").click()
    title = stage.upper()
    page.get_by_role("option", name=re.compile(f"^{number}. {title}")).click()
    expect(page.locator("#train-description")).to_contain_text(title)
    for field, value in values.items():
        fill(page, f"train-{stage}-{field}", value)
        if field == "model":  # a picked model's preview lands before the next field is typed
            expect(page.locator("#train-command")).to_contain_text(f"model: {value}")
    for field, value in values.items():  # the picker's second `input` resets nothing typed
        expect(page.locator(f"#train-{stage}-{field} input").first).to_have_value(value)


def test_a_tiny_rahf_job_from_the_train_tab_plots_its_loss(page: Page, studio, tiny_folder):
    open_form(
        page,
        "7c",
        "rahf",
        {
            "model": str(tiny_folder),
            "max-steps": "3",
            # long enough for the page's 2 s beat to show phase 1 (a warm job of 2 pattern
            # steps on the tiny model ended in 2 s, before the page saw it running)
            "pattern-steps": "40",
            "max-length": "64",
            "batch-size": "2",
            "target-layers": "1",
        },
    )
    expect(page.locator("#train-command")).to_contain_text("python -m pipeline rahf --config")
    # each typed field queues a preview, answered one at a time in order: on two busy cores
    # (the suite's other worker, its studio and Chromium) the last can land after 15 s
    expect(page.locator("#train-command")).to_contain_text("target_layers: '1'", timeout=60_000)
    pick(page, "train-rahf-data", "gold")  # human-labelled pairs are offered beside label runs
    command = page.locator("#train-command")
    expect(command).to_contain_text("data: gold")
    # the stage picker fires again when the form takes the focus: what was typed stays
    for kept in (f"model: {tiny_folder}", "max_steps: 3", "pattern_steps: 40"):
        expect(command).to_contain_text(kept)
    expect(page.locator("#train-rahf-model input")).to_have_value(str(tiny_folder))
    page.click("#train-launch-rahf")
    expect(page.locator("#train-message")).to_contain_text("(rahf) launched")
    progress = page.locator("#train-progress .job-progress")
    expect(progress).to_contain_text(re.compile("phase 1 of 2|loading the model"), timeout=120_000)
    expect(page.locator("#train-plot-0")).to_be_visible(timeout=300_000)
    expect(page.locator("#train-plot-0")).to_contain_text("loss")
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=300_000)
    expect(page.locator("#train-artifacts")).to_contain_text("can be picked as the model")
    ran = (Path(Store(studio.workspace).jobs("rahf")[0].out_dir) / "job.yaml").read_text()
    assert f"model: {tiny_folder}" in ran and "max_steps: 3" in ran


def test_a_grpo_run_from_the_train_tab_reports_to_tensorboard(page: Page, studio, tmp_path):
    from tests.pipeline.train.test_tracking import scalars
    from tests.tiny import small_vocab_stages

    base, sft, pm = small_vocab_stages(tmp_path)
    open_form(
        page,
        "7d",
        "grpo",
        {
            "model": str(base),
            "policy-adapter": str(sft),
            "reward-adapter": str(pm),
            "steps": "2",
            "rollouts": "4",
            "generations": "2",
            "max-new-tokens": "6",
        },
    )
    pick(page, "train-grpo-report-to", "tensorboard")  # a tracker is a menu
    expect(page.locator("#train-command")).to_contain_text("report_to: tensorboard")
    page.click("#train-launch-grpo")
    expect(page.locator("#train-message")).to_contain_text("(grpo) launched")
    progress = page.locator("#train-progress .job-progress")
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=300_000)
    expect(page.locator("#train-plot-0")).to_be_visible()
    run = Store(studio.workspace).jobs("grpo")[0].out_dir
    assert f"model: {base}" in (Path(run) / "job.yaml").read_text()  # the typed model ran
    assert {"reward", "kl", "loss"} <= scalars(Path(run)).keys()  # the run is in TensorBoard
