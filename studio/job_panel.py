"""The job panel every tab that runs jobs shows: the newest job's progress bar (with what it
is doing and an estimate), Cancel and Resume — one layout and one set of handlers, so a tab
adds a panel instead of its own copy."""
from __future__ import annotations

import html
import time
from datetime import datetime

import gradio as gr

from pipeline import jobs
from pipeline.errors import StudioError
from pipeline.store import JobRecord, Store
from studio.notices import error_notice, notice


def job_buttons(prefix: str, noun: str = "") -> tuple[gr.Button, gr.Button]:
    """Cancel and Resume buttons (elem ids PREFIX-cancel, PREFIX-resume), laid out where
    they are called."""
    cancel = gr.Button(f"Cancel {noun}".strip(), variant="stop", elem_id=f"{prefix}-cancel")
    resume = gr.Button(f"Resume {noun}".strip(), elem_id=f"{prefix}-resume")
    return cancel, resume


def progress_html(job, progress: dict | None, unit: str) -> str:
    """A progress bar with elapsed and remaining time for a batch job."""
    done, total = (progress or {}).get("done", 0), (progress or {}).get("total", 0)
    fraction = done / total if total else 0.0
    if job.started_at:
        started = datetime.fromisoformat(job.started_at).timestamp()
        elapsed = ((datetime.fromisoformat(job.finished_at).timestamp() if job.finished_at
                    else time.time()) - started)
    else:  # still queued behind another job
        elapsed = 0.0
    remaining = elapsed / fraction - elapsed if 0 < fraction < 1 and job.active else 0
    detail = f" · {html.escape(job.error)}" if job.error else ""
    return (f'<div class="job-progress" data-status="{job.status}"><div class="job-line">Job {job.id} '
            f'({job.kind}) · <b>{job.status}</b> · {done:.1f}/{total} {unit} · elapsed '
            f'{elapsed:.0f} s · remaining {remaining:.0f} s{detail}</div>'
            f'<div class="job-bar"><div style="width:{fraction:.1%}"></div></div></div>')


def latest_job(store: Store, kinds: tuple[str, ...]) -> JobRecord | None:
    """The newest job of these kinds, with finished processes settled first."""
    found = [j for j in jobs.refresh(store) if j.kind in kinds]
    return found[0] if found else None


def job_bar(job: JobRecord | None, unit: str) -> str:
    return progress_html(job, jobs.read_progress(job.out_dir), unit) if job else ""


def writing_now(job: JobRecord | None) -> bool:
    """True while the job runs and for 5 s after it ends, so its last output is shown once."""
    if job is None:
        return False
    return job.active or bool(job.finished_at) and \
        time.time() - datetime.fromisoformat(job.finished_at).timestamp() < 5


# --- the job panel every tab that runs jobs shares: its bar, cancel and resume -------------

def cancel_notice(store: Store, job: JobRecord | None, idle: str, kept: str) -> str:
    """Cancel a running job; the message says what happened (or `idle` if none runs)."""
    if job is None or not job.active:
        return notice("error", idle)
    try:
        jobs.cancel(store, job.id)
    except StudioError as exc:
        return error_notice(exc)
    return notice("ok", f"Cancelling job {job.id}; {kept}")


def resume_notice(store: Store, job: JobRecord | None, kept: str) -> tuple[str, JobRecord | None]:
    """Run an ended job again into its folder (`jobs.resume`); (message, the new job)."""
    if job is None or job.status not in ("cancelled", "failed"):
        return notice("error", "Only a cancelled or failed job can be resumed."), None
    try:
        again = jobs.resume(store, job.id)
    except StudioError as exc:
        return error_notice(exc), None
    return notice("ok", f"Job {again.id} resumes job {job.id}; {kept}"), again
