"""Background jobs: each is `python -m pipeline <command> …` in its own process, forked
from the warm launcher where one serves (pipeline/runner/warm.py), else started afresh.

The job writes `progress.json` as it goes and `status.json` when it ends (succeeded,
failed with its message, or cancelled by SIGTERM), both into its output folder
(pipeline/core/job_folder.py), and its output into `job.log`. SQLite holds the queue and
each job's record (status, command, config, timings, artifacts). Launchers only read those
files and the process table, so the studio can restart and re-attach to jobs that are still
running, and a job runs the same with or without the studio.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.core.errors import JobError
from pipeline.core.files import write_atomic
from pipeline.core.job_folder import (
    EXIT_FILE,
    JOB_ID_ENV,
    LOG_FILE,
    STATUS_FILE,
    artifacts,
    log_tail,
    read_status,
)
from pipeline.data.constitution import Constitution, to_yaml
from pipeline.data.store import JobRecord, Store
from pipeline.runner import warm

ROOT = Path(__file__).resolve().parents[2]


# --- in the studio (or any launcher) ----------------------------------------------------------

# Pipelines only wait on the stage jobs they queue, so they do not hold the one job slot.
FREE_KINDS = ("run-all",)

_children: dict[int, subprocess.Popen] = {}


def job_command(args: list[str], workspace: str | Path, processes: int = 1) -> list[str]:
    """`python -m pipeline --workspace W <args>`, through `accelerate launch` when the job
    asks for more than one process: data-parallel, one process per GPU (without GPUs, CPU
    processes over gloo). `--multi_gpu` is named because without it accelerate quietly runs
    a single process wherever it finds fewer than two GPUs."""
    return [*launcher(processes), "-m", "pipeline", "--workspace", str(workspace), *args]


def launcher(processes: int) -> list[str]:
    """What starts a Python module as `processes` processes (or as one)."""
    if processes > 1:
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
        ]
    return [sys.executable]


def processes_problem(processes: int, gpus: int) -> str:
    """Why `processes` cannot run on a machine with `gpus` GPUs ('' when it can): each
    process needs a GPU of its own, unless there are none (then they are CPU processes)."""
    if processes > 1 and 0 < gpus < processes:
        return (
            f"processes = {processes} needs {processes} GPUs (one per process); this machine "
            f"has {gpus}. Set processes to at most {gpus}."
        )
    return ""


def check_processes(processes: int) -> None:
    """Refuse more processes than this machine can run (see `processes_problem`)."""
    if processes > 1:
        import torch

        problem = processes_problem(processes, torch.cuda.device_count())
        if problem:
            raise JobError(problem)


def launch(
    store: Store,
    kind: str,
    args: list[str],
    out_dir: str | Path,
    processes: int = 1,
    config: str = "",
    parent: int | None = None,
) -> JobRecord:
    """Queue `python -m pipeline <args>` and start it when the slot is free (one job at a
    time: this machine has 2 cores). The same job already queued or running is returned
    instead of being added twice; a record left 'running' by a process that is gone (the
    launcher and the job both killed) is settled first, so the job starts again."""
    check_processes(processes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    refresh(store)
    job, _ = store.add_job(
        kind, args, str(out), job_command(args, store.workspace, processes), config, parent
    )
    refresh(store)
    return store.job(job.id)


def _start(store: Store, job: JobRecord) -> None:
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)  # a folder removed while the job was queued
    (out / STATUS_FILE).unlink(missing_ok=True)
    (out / EXIT_FILE).unlink(missing_ok=True)
    env = {**os.environ, JOB_ID_ENV: str(job.id)}
    pid = warm.start(
        warm.Request(list(job.command), env, str(ROOT), str(out / LOG_FILE), str(out / EXIT_FILE))
    )
    if pid is None:
        with open(out / LOG_FILE, "a") as log:
            try:
                proc = subprocess.Popen(
                    list(job.command),
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=env,
                )
            except OSError as exc:
                store.set_job_status(job.id, "failed", f"could not start the job: {exc}")
                return
        pid = proc.pid
        _children[pid] = proc
    store.start_job(job.id, pid)


def _alive(pid: int) -> bool:
    """Whether the job's process still runs (a zombie — ended, not yet reaped — does not)."""
    if pid in _children:
        return _children[pid].poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def exit_code(job: JobRecord, wait: float = 1.0) -> int | None:
    """How the job's process exited, where known: our own child's return code, or the one
    the warm launcher that forked it recorded — given `wait` seconds, as the launcher reaps
    a moment after the process ends (None for a cold job started before a restart)."""
    child = _children.get(job.pid) if job.pid else None
    if child is not None:
        return child.returncode
    deadline = time.monotonic() + wait
    while (code := warm.read_exit(job.out_dir)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return code


def how_it_ended(code: int | None) -> str:
    """'ended', or the signal that killed the job's process (its exit `code`) — SIGKILL from
    outside is most often the system's out-of-memory killer."""
    if code is None or code >= 0:
        return "ended"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = " (most often the system running out of memory)" if -code == signal.SIGKILL else ""
    return f"was killed by {name}{hint}"


def _settle(store: Store, job: JobRecord) -> None:
    """Record how a job whose process has gone ended: its status.json, or failed with the
    tail of its log when it died without one (killed, out of memory, a crash)."""
    ended = read_status(job.out_dir)
    if ended:
        status, message = ended
    else:
        code = exit_code(job)
        if code == 0:  # a command that keeps no status file
            status, message = "succeeded", ""
        else:
            status, message = (
                "failed",
                (
                    f"the job process {how_it_ended(code)} without "
                    "reporting; last log lines:\n" + log_tail(job.out_dir)
                ),
            )
    store.set_job_status(job.id, status, message, artifacts(job.out_dir))


def refresh(store: Store) -> list[JobRecord]:
    """Settle jobs that have ended, then start queued jobs the slot allows; returns
    every job, newest first. Called by every viewer, so a restarted studio re-attaches to
    jobs still running and the queue moves on."""
    for job in store.jobs():
        # a job that wrote how it ended has ended, even while its process is still exiting
        if job.status in ("running", "cancelling") and (
            read_status(job.out_dir) or not (job.pid and _alive(job.pid))
        ):
            _settle(store, job)
    while (queued := store.claim_next_job(FREE_KINDS)) is not None:
        _start(store, queued)
    return store.jobs()


def cancel(store: Store, job_id: int) -> JobRecord:
    """Ask a job to stop; it keeps its finished work and records 'cancelled'. A queued job
    is simply taken off the queue."""
    job = store.job(job_id)
    if not job.active:
        raise JobError(f"Job {job_id} is not running (it is {job.status}).")
    if job.status in ("queued", "starting") and not job.pid:
        store.set_job_status(job_id, "cancelled", "taken off the queue before it started")
        return store.job(job_id)
    try:
        if job.pid:
            os.killpg(job.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    store.set_job_status(job_id, "cancelling")
    return store.job(job_id)


def resume(store: Store, job_id: int) -> JobRecord:
    """Run an ended job again into the same folder: every job resumes from what it left
    (chains and labels already written, the last training checkpoint). A job whose process
    is gone counts as ended, whatever its record said."""
    refresh(store)
    job = store.job(job_id)
    if job.active:
        raise JobError(f"Job {job_id} has not ended yet (it is {job.status}).")
    out = store.add_job(
        job.kind, list(job.args), job.out_dir, list(job.command), job.config, job.parent
    )[0]
    refresh(store)
    return store.job(out.id)


EXITING_S = 10.0  # how long `wait` gives an ended job's process to print its last line and exit


def wait(store: Store, job_id: int, timeout: float = 600) -> JobRecord:
    """Block until the job has ended (for scripts and tests); keeps the queue moving. A job
    counts as ended once it wrote how it ended, a moment before its process prints its last
    line (what a cancel kept) and exits: this also waits for the process, so the log a
    script reads next is whole."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = next(j for j in refresh(store) if j.id == job_id)
        if not job.active:
            exiting = min(deadline, time.time() + EXITING_S)
            while job.pid and _alive(job.pid) and time.time() < exiting:
                time.sleep(0.05)
            return job
        time.sleep(0.5)
    raise JobError(f"Job {job_id} did not finish within {timeout:.0f} s.")


CONSTITUTION_FILE = "constitution.yaml"


def freeze_constitution(
    constitution: Constitution, folder: str | Path, name: str = CONSTITUTION_FILE
) -> Path:
    """The constitution as it is now, written into a job's run folder: the job reads this
    copy, so later edits never change a run that was started (or is resumed)."""
    return write_atomic(Path(folder) / name, to_yaml(constitution))
