"""The job panel every job-running tab shares."""
import gradio as gr

from pipeline import jobs
from studio import job_panel as panel


def test_buttons_bar_cancel_and_resume(store, tmp_path):
    with gr.Blocks():
        cancel, resume = panel.job_buttons("batch", "job")
    assert (cancel.value, cancel.elem_id, resume.value, resume.elem_id) == \
        ("Cancel job", "batch-cancel", "Resume job", "batch-resume")
    assert panel.job_bar(None, "chains") == "" and panel.latest_job(store, ("revise",)) is None
    assert "Nothing runs" in panel.cancel_notice(store, None, "Nothing runs.", "kept")
    assert "Only a cancelled or failed job" in panel.resume_notice(store, None, "kept")[0]
    job = jobs.launch(store, "revise", ["revise", "--constitution", "no-such", "--out",
                                        str(tmp_path / "run")], tmp_path / "run")
    ended = jobs.wait(store, job.id, timeout=300)
    assert ended.status == "failed" and panel.latest_job(store, ("revise",)).id == job.id
    bar = panel.job_bar(ended, "chains")
    assert "failed" in bar and "chains" in bar
    text, again = panel.resume_notice(store, ended, "done chains are skipped.")
    assert f"Job {again.id} resumes job {job.id}" in text
    jobs.wait(store, again.id, timeout=300)
