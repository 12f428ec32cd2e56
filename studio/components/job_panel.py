"""The job panel every tab that runs jobs shows: the newest job's progress bar (with what it
is doing and an estimate), Cancel and Resume — one layout and one set of handlers, so a tab
adds a panel instead of its own copy."""

from __future__ import annotations

import html
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr

from pipeline.core import job_folder
from pipeline.core.errors import StudioError
from pipeline.core.job_folder import stage_names, succeeded
from pipeline.data.store import JobRecord, Store
from pipeline.runner import jobs
from pipeline.runner.run_list import duration_text, kept_note, ran_for
from studio.components.notices import error_notice, notice


def job_buttons(prefix: str, noun: str = "") -> tuple[gr.Button, gr.Button]:
    """Cancel and Resume buttons (elem ids PREFIX-cancel, PREFIX-resume), laid out where
    they are called."""
    cancel = gr.Button(f"Cancel {noun}".strip(), variant="stop", elem_id=f"{prefix}-cancel")
    resume = gr.Button(f"Resume {noun}".strip(), elem_id=f"{prefix}-resume")
    return cancel, resume


def _count(done: float) -> str:
    return f"{done:.0f}" if float(done).is_integer() else f"{done:.1f}"


def progress_html(job: JobRecord, progress: dict | None, unit: str) -> str:
    """A progress bar that says what the job is doing (its stage, item i of n), how long
    it has run and — once one can be made — an estimate of what is left."""
    done, total = (progress or {}).get("done", 0), (progress or {}).get("total", 0)
    fraction = min(done / total, 1.0) if total else 0.0
    elapsed = ran_for(job)
    parts = [f"Job {job.id} ({job.kind})", f"<b>{job.status}</b>"]
    if job.active:
        parts.append(
            html.escape(
                (progress or {}).get("stage")
                or (
                    "waiting for the running job to finish"
                    if job.status == "queued"
                    else "starting"
                )
            )
        )
    if total:
        parts.append(f"{_count(done)} of {total} {unit}")
    if job.started_at:
        parts.append(f"elapsed {duration_text(elapsed)}")
    if job.active and job.status != "queued":
        left = job_folder.remaining_seconds(progress or {}, time.time()) if fraction < 1 else None
        parts.append(
            f"remaining about {duration_text(left)}"
            if left is not None
            else "remaining: estimating…"
        )
    detail = f" · {html.escape(job.error)}" if job.error else ""
    return (
        f'<div class="job-progress" data-status="{job.status}"><div class="job-line">'
        f"{' · '.join(parts)}{detail}</div>"
        f'<div class="job-bar"><div style="width:{fraction:.1%}"></div></div></div>'
    )


STAGE_UNITS = {"revise": "chains", "pairs": "prompts", "label": "pairs", "evaluate": "steps"}


def pipeline_html(job: JobRecord, records: list[JobRecord]) -> str:
    """A pipeline job as its stages: each one's state and time, then the running stage's
    own progress bar (what it does, item i of n, its estimate)."""
    names = stage_names(job.out_dir)
    if not names:
        return ""
    children = {
        Path(j.out_dir).name: j for j in sorted(records, key=lambda j: j.id) if j.parent == job.id
    }  # the newest job of each stage wins (resumes)
    rows, running = [], None
    for n, name in enumerate(names, 1):
        child = children.get(name)
        if child is None:
            state = "done earlier" if succeeded(Path(job.out_dir) / name) else "waiting"
            time_text = ""
        else:
            state = child.status
            time_text = duration_text(ran_for(child)) if child.started_at else ""
            running = child if child.active else running
        rows.append(
            f'<tr data-stage="{html.escape(name)}" data-state="{html.escape(state)}">'
            f"<td>{n}</td><td>{html.escape(name)}</td><td>{html.escape(state)}</td>"
            f"<td>{time_text}</td></tr>"
        )
    table = (
        '<table class="pipeline-stages"><tr><th>#</th><th>stage</th><th>state</th>'
        f"<th>time</th></tr>{''.join(rows)}</table>"
    )
    now = ""
    if running is not None:
        now = f"<p>Running stage: <b>{html.escape(Path(running.out_dir).name)}</b></p>" + job_bar(
            running, STAGE_UNITS.get(running.kind, "steps")
        )
    return f'<div class="pipeline-view">{table}{now}</div>'


def latest_job(store: Store, kinds: tuple[str, ...]) -> JobRecord | None:
    """The newest job of these kinds, with finished processes settled first."""
    found = [j for j in jobs.refresh(store) if j.kind in kinds]
    return found[0] if found else None


def job_bar(job: JobRecord | None, unit: str) -> str:
    return progress_html(job, job_folder.read_progress(job.out_dir), unit) if job else ""


def writing_now(job: JobRecord | None, after: float = 5.0) -> bool:
    """True while the job runs and for `after` s after it ends, so its last output is shown
    once (a tab that must not miss the end, on a busy machine whose timer ticks lag, asks
    for a longer while)."""
    if job is None:
        return False
    return (
        job.active
        or bool(job.finished_at)
        and time.time() - datetime.fromisoformat(job.finished_at).timestamp() < after
    )


# --- the job panel every tab that runs jobs shares: its bar, cancel and resume -------------


def cancel_notice(
    store: Store,
    job: JobRecord | None,
    idle: str,
    kept: str | None = None,
    confirmed: int | None = None,
) -> dict[str, Any]:
    """Cancel a running job: its `message`, and the job `armed` for a confirmation. A job
    that is part of a pipeline stops the pipeline, so it is only cancelled on a second press
    (`confirmed` is the job the first press named); the message says so. What the cancel
    keeps is `kept`, or, without it, counted in the job's run folder (`kept_note`)."""
    if job is None or not job.active:
        return {"message": notice("error", idle), "armed": None}
    pipeline = pipeline_of(store, job)
    if in_pipeline(job) and confirmed != job.id:
        what = (
            f"job {job.id} is the {Path(job.out_dir).name} stage of pipeline job {pipeline.id}"
            if pipeline
            else f"job {job.id} is a pipeline"
        )
        really = (
            f"Really cancel? {what[0].upper()}{what[1:]}: cancelling stops the pipeline; "
            "Resume continues it from this stage. Press Cancel again to confirm."
        )
        return {"message": notice("info", really), "armed": job.id}
    try:
        jobs.cancel(store, job.id)
    except StudioError as exc:
        return {"message": error_notice(exc), "armed": None}
    if in_pipeline(job):
        stopping = (
            f"Cancelling job {job.id}: this stops the pipeline; Resume continues it from "
            "this stage, keeping what is finished."
        )
        return {"message": notice("ok", stopping), "armed": None}
    kept = kept or kept_note(job.kind, job.out_dir)
    return {"message": notice("ok", f"Cancelling job {job.id}; {kept}"), "armed": None}


def pipeline_of(store: Store, job: JobRecord | None) -> JobRecord | None:
    """The pipeline job a stage job belongs to (None for a job on its own)."""
    return store.job(job.parent) if job is not None and job.parent else None


def in_pipeline(job: JobRecord) -> bool:
    """A pipeline job or one of its stages: cancelling it stops the pipeline."""
    return bool(job.parent) or job.kind == "run-all"


def cancel_label(job: JobRecord | None) -> str:
    """The Cancel button says when it stops a whole pipeline."""
    if job is not None and in_pipeline(job):
        return "Cancel pipeline (stops at this stage)"
    return "Cancel job"


def resume_notice(store: Store, job: JobRecord | None, kept: str) -> tuple[str, JobRecord | None]:
    """Run an ended job again into its folder (`jobs.resume`); (message, the new job). A
    stage of a stopped pipeline resumes the pipeline, which continues from that stage."""
    if job is None or job.status not in ("cancelled", "failed"):
        return notice("error", "Only a cancelled or failed job can be resumed."), None
    pipeline = pipeline_of(store, job)
    if pipeline is not None and not pipeline.active:
        try:
            again = jobs.resume(store, pipeline.id)
        except StudioError as exc:
            return error_notice(exc), None
        return notice(
            "ok",
            f"Job {again.id} resumes pipeline job {pipeline.id} from its stage "
            f"{Path(job.out_dir).name}; finished stages are kept.",
        ), again
    try:
        again = jobs.resume(store, job.id)
    except StudioError as exc:
        return error_notice(exc), None
    return notice("ok", f"Job {again.id} resumes job {job.id}; {kept}"), again
