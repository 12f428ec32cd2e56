"""The job panel every job-running tab shares."""

import sys
import time

import gradio as gr
import pytest

from pipeline.core import job_folder
from pipeline.runner import jobs
from studio.components import job_panel as panel


@pytest.mark.integration
def test_buttons_bar_cancel_and_resume(store, tmp_path):
    with gr.Blocks():
        cancel, resume = panel.job_buttons("batch", "job")
    assert (cancel.value, cancel.elem_id, resume.value, resume.elem_id) == (
        "Cancel job",
        "batch-cancel",
        "Resume job",
        "batch-resume",
    )
    assert panel.job_bar(None, "chains") == "" and panel.latest_job(store, ("revise",)) is None
    assert "Nothing runs" in panel.cancel_notice(store, None, "Nothing runs.", "kept")["message"]
    assert "Only a cancelled or failed job" in panel.resume_notice(store, None, "kept")[0]
    job = jobs.launch(
        store,
        "revise",
        ["revise", "--constitution", "no-such", "--out", str(tmp_path / "run")],
        tmp_path / "run",
    )
    ended = jobs.wait(store, job.id, timeout=300)
    assert ended.status == "failed" and panel.latest_job(store, ("revise",)).id == job.id
    bar = panel.job_bar(ended, "chains")
    assert "failed" in bar and "elapsed" in bar and "estimating" not in bar
    text, again = panel.resume_notice(store, ended, "done chains are skipped.")
    assert f"Job {again.id} resumes job {job.id}" in text
    jobs.wait(store, again.id, timeout=300)


@pytest.mark.integration
def test_cancelling_a_pipeline_stage_asks_first_and_resume_continues_the_pipeline(store, tmp_path):
    parent, _ = store.add_job(
        "run-all", ["run-all"], str(tmp_path / "run"), [sys.executable, "-c", "pass"]
    )
    child, _ = store.add_job("sft", ["sft"], str(tmp_path / "run" / "sft"), [], parent=parent.id)
    assert panel.cancel_label(child) == "Cancel pipeline (stops at this stage)"
    first = panel.cancel_notice(store, child, "idle", "kept")
    text, armed = first["message"], first["armed"]
    assert armed == child.id and "Really cancel?" in text and "stops the pipeline" in text
    assert f"the sft stage of pipeline job {parent.id}" in text
    assert store.job(child.id).status == "queued"  # nothing cancelled yet
    confirmed = panel.cancel_notice(store, child, "idle", "kept", confirmed=child.id)
    assert confirmed["armed"] is None
    assert "Resume continues it from this stage" in confirmed["message"]
    assert store.job(child.id).status == "cancelled"
    store.set_job_status(parent.id, "cancelled")
    text, again = panel.resume_notice(store, store.job(child.id), "kept")
    assert (
        again.kind == "run-all" and f"resumes pipeline job {parent.id} from its stage sft" in text
    )
    jobs.wait(store, again.id, timeout=120)


def test_progress_says_what_the_job_does_and_estimates_only_when_it_can(store, tmp_path):
    job, _ = store.add_job("label", ["label"], str(tmp_path / "l"), [])
    store.start_job(job.id, 999999)
    running = store.job(job.id)
    text = panel.progress_html(running, {"done": 0, "total": 74, "stage": "labelling"}, "pairs")
    assert "labelling" in text and "0 of 74 pairs" in text and "estimating…" in text
    assert "remaining 0 s" not in text
    text = panel.progress_html(running, None, "pairs")
    assert "starting" in text and "estimating…" in text
    assert (
        "remaining"
        not in panel.progress_html(store.job(job.id), None, "pairs").split("estimating")[1]
    )


def test_a_resumed_runs_estimate_comes_from_its_own_pace_not_the_work_it_found(store, tmp_path):
    """A resume starts at 6 of 12 done; 1 more took 60 s: 5 left at that pace is ~5 min, not
    the 1 min that elapsed time over all done work would say."""
    job, _ = store.add_job("revise", ["revise"], str(tmp_path / "r"), [])
    store.start_job(job.id, 999999)
    now = time.time()
    progress = {
        "done": 7,
        "total": 12,
        "stage": "chains",
        "time": now,
        "since_done": 6,
        "since_time": now - 60,
    }
    text = panel.progress_html(store.job(job.id), progress, "chains")
    assert "remaining about 5.0 min" in text
    out = tmp_path / "w"
    out.mkdir()
    job_folder.write_progress(out, 6, 12, "chains")  # the first write of this process: its baseline
    job_folder.write_progress(out, 7, 12, "chains")
    written = job_folder.read_progress(out)
    assert written["since_done"] == 6 and written["done"] == 7


def test_a_batch_counts_only_finished_chains_and_estimates_from_its_steps(store, tmp_path):
    """Chains of one batch finish together: the count stays at what is finished (0 of 8)
    while the text names the step, and the estimate paces on the steps: 2 of 5 in 60 s."""
    job, _ = store.add_job("revise", ["revise"], str(tmp_path / "r"), [])
    store.start_job(job.id, 999999)
    out = tmp_path / "w"
    out.mkdir()
    job_folder.write_progress(out, 0, 8, "initial answers", (0, 5))
    job_folder.write_progress(out, 0, 8, "round 1 of 2: critiques", (1, 5))  # a new step
    written = job_folder.read_progress(out)
    assert (written["done"], written["work_done"], written["since_done"]) == (0, 1, 0)
    now = time.time()
    progress = {**written, "work_done": 2, "time": now, "since_time": now - 60}
    text = panel.progress_html(store.job(job.id), progress, "chains")
    assert "round 1 of 2: critiques" in text and "0 of 8 chains" in text
    assert "remaining about 90 s" in text  # 3 steps left at 30 s a step


def test_a_cancel_without_its_own_words_counts_what_the_run_folder_keeps(store, tmp_path):
    queued, _ = store.add_job("revise", ["revise"], str(tmp_path / "chains"), [])
    (tmp_path / "chains").mkdir()
    (tmp_path / "chains" / "chains.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    message = panel.cancel_notice(store, queued, "idle")["message"]
    assert f"Cancelling job {queued.id}; 2 finished chains are kept" in message
    assert store.job(queued.id).status == "cancelled"
