"""The first-run panel's handlers, without a browser."""

import pytest

from pipeline.runner import jobs
from studio import start_here
from studio.tabs import train as train_tab


def test_the_panel_shows_the_flow_and_is_dismissed_and_reopened():
    intro = start_here.intro_html()
    assert "SL-CAI" in intro and intro.count("flow-box") == len(start_here.FLOW)
    assert start_here.on_page_load(None)["visible"] is True
    assert start_here.on_page_load(True)["visible"] is False
    hidden = start_here.on_dismiss()
    assert hidden["panel"]["visible"] is False and hidden["dismissed"] is True
    shown = start_here.on_show()
    assert shown["panel"]["visible"] is True and shown["dismissed"] is False


@pytest.mark.integration
def test_one_click_launches_the_tiny_pipeline_on_the_constitution_being_edited(store):
    opened = start_here.on_pipeline(store)
    message, tabs, watched = opened["message"], opened["tabs"], opened["watched"]
    announced = opened["launched"]
    job = store.jobs("run-all")[0]
    assert f"Job {job.id} (run-all)" in message and tabs.selected == "train"
    assert watched == job.id  # the Train tab watches the pipeline, not its first stage
    shown = train_tab.on_show_stage(store, "run-all", None)
    assert shown["stage"]["value"] == "run-all"
    assert shown["description"]["value"] == train_tab.FORMS["run-all"].__doc__
    assert shown["launch-run-all"]["visible"] and "run-all --config" in shown["command"]
    assert "constitution: " in (jobs.Path(job.out_dir) / "job.yaml").read_text()
    assert "preset: tiny" in (jobs.Path(job.out_dir) / "job.yaml").read_text()
    assert announced == job.id and start_here.on_banner_tick(store, job.id) == {}  # it stays
    jobs.cancel(store, job.id)
    assert jobs.wait(store, job.id, timeout=120).status in ("cancelled", "failed")
    cleared = start_here.on_banner_tick(store, job.id)
    assert cleared == {"message": "", "launched": None}  # a stale banner is cleared
