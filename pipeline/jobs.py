"""Background jobs: each is `python -m pipeline <command> …` in its own process.

The job writes `progress.json` as it goes and `status.json` when it ends (succeeded,
failed with its message, or cancelled by SIGTERM), both into its output folder. The studio
only reads those files and the process table, so it can restart and re-attach to jobs that
are still running, and a job runs the same with or without the studio.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from pipeline.errors import JobError, StudioError
from pipeline.files import write_atomic
from pipeline.store import JobRecord, Store

ROOT = Path(__file__).resolve().parent.parent
STATUS_FILE = "status.json"
PROGRESS_FILE = "progress.json"
LOG_FILE = "job.log"


class JobCancelled(Exception):
    """Raised inside a job when it receives SIGTERM."""


# --- inside the job process ------------------------------------------------------------------

@contextmanager
def job_context(out_dir: str | Path, on_cancel: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn SIGTERM into JobCancelled and record how the job ended in status.json.

    Training jobs pass `on_cancel` instead: SIGTERM then only sets their flag, so the
    training loop can finish its step, save a checkpoint and raise JobCancelled itself.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / STATUS_FILE).unlink(missing_ok=True)

    def cancel(signum, frame):
        if on_cancel is None:
            raise JobCancelled()
        on_cancel()

    previous = signal.signal(signal.SIGTERM, cancel)
    try:
        yield
    except (JobCancelled, KeyboardInterrupt):
        _write_status(out, "cancelled", "cancelled; finished work is kept and the job can resume")
        raise
    except StudioError as exc:
        _write_status(out, "failed", str(exc))
        raise
    except Exception as exc:
        _write_status(out, "failed", f"{type(exc).__name__}: {exc}")
        raise
    else:
        _write_status(out, "succeeded")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_status(out: Path, status: str, message: str = "") -> None:
    write_atomic(out / STATUS_FILE, json.dumps({"status": status, "message": message}))


def write_progress(out_dir: str | Path, done: float, total: int, stage: str) -> None:
    write_atomic(Path(out_dir) / PROGRESS_FILE, json.dumps(
        {"done": done, "total": total, "stage": stage, "time": time.time()}))


def read_progress(out_dir: str | Path) -> dict | None:
    try:
        return json.loads((Path(out_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None


# --- in the studio (or any launcher) ----------------------------------------------------------

_children: dict[int, subprocess.Popen] = {}


def launch(store: Store, kind: str, args: list[str], out_dir: str | Path) -> JobRecord:
    """Start `python -m pipeline <args>` in the background; one job at a time."""
    running = [j for j in refresh(store) if j.active]
    if running:
        raise JobError(f"Job {running[0].id} ({running[0].kind}) is still running; wait for it "
                       "or cancel it first.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / STATUS_FILE).unlink(missing_ok=True)
    log = open(out / LOG_FILE, "a")
    command = [sys.executable, "-m", "pipeline", "--workspace", str(store.workspace), *args]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    _children[proc.pid] = proc
    return store.add_job(kind, args, str(out), proc.pid)


def _alive(pid: int) -> bool:
    if pid in _children:
        return _children[pid].poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def log_tail(out_dir: str | Path, lines: int = 15) -> str:
    try:
        return "\n".join((Path(out_dir) / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def refresh(store: Store) -> list[JobRecord]:
    """Settle jobs whose process has ended; returns every job, newest first."""
    for job in store.jobs():
        if not job.active or (job.pid and _alive(job.pid)):
            continue
        try:
            ended = json.loads((Path(job.out_dir) / STATUS_FILE).read_text())
            store.set_job_status(job.id, ended["status"], ended.get("message", ""))
        except (OSError, ValueError, KeyError):
            store.set_job_status(job.id, "failed", "the job process ended without reporting; "
                                                    "last log lines:\n" + log_tail(job.out_dir))
    return store.jobs()


def cancel(store: Store, job_id: int) -> JobRecord:
    """Ask a running job to stop; it keeps its finished work and records 'cancelled'."""
    job = store.job(job_id)
    if not job.active:
        raise JobError(f"Job {job_id} is not running (it is {job.status}).")
    try:
        os.killpg(job.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    store.set_job_status(job_id, "cancelling")
    return store.job(job_id)


def wait(store: Store, job_id: int, timeout: float = 600) -> JobRecord:
    """Block until the job has ended (for scripts and tests)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = next(j for j in refresh(store) if j.id == job_id)
        if not job.active:
            return job
        time.sleep(0.5)
    raise JobError(f"Job {job_id} did not finish within {timeout:.0f} s.")
