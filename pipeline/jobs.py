"""Background jobs: each is `python -m pipeline <command> …` in its own process.

The job writes `progress.json` as it goes and `status.json` when it ends (succeeded,
failed with its message, or cancelled by SIGTERM), both into its output folder, and its
output into `job.log`. SQLite holds the queue and each job's record (status, command,
config, timings, artifacts). Launchers only read those files and the process table, so the
studio can restart and re-attach to jobs that are still running, and a job runs the same
with or without the studio.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from pipeline.constitution import Constitution, to_yaml
from pipeline.errors import DatasetError, JobError, StudioError
from pipeline.files import write_atomic
from pipeline.store import JobRecord, Store

ROOT = Path(__file__).resolve().parent.parent
STATUS_FILE = "status.json"
PROGRESS_FILE = "progress.json"
LOG_FILE = "job.log"
SUMMARY_FILE = "summary.json"  # a stage's headline numbers, for the Runs tab
JOB_ID_ENV = "CONSTITUTION_STUDIO_JOB_ID"  # set in a job's process: its own job id
WRITER_LOCK = ".writer.lock"  # held by the one process writing a run folder


class JobCancelled(Exception):
    """Raised inside a job when it receives SIGTERM."""


# --- inside the job process ------------------------------------------------------------------


@contextmanager
def job_context(out_dir: str | Path, on_cancel: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the run folder's writer lock, turn SIGTERM into JobCancelled and record how the
    job ended in status.json. A second writer is refused before it touches the folder.

    Training jobs pass `on_cancel` instead: SIGTERM then only sets their flag, so the
    training loop can finish its step, save a checkpoint and raise JobCancelled itself.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with writer_lock(out), reporting_end(out, on_cancel):
        yield


@contextmanager
def reporting_end(out: Path, on_cancel: Callable[[], None] | None) -> Iterator[None]:
    """SIGTERM as a cancel, and status.json written however the block ends."""
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
    except Exception as exc:
        _write_status(out, "failed", failure_reason(exc))
        raise
    else:
        _write_status(out, "succeeded")
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def writer_lock(out: Path) -> Iterator[None]:
    """One writer per run folder: an exclusive OS lock (flock) on WRITER_LOCK while the stage
    runs, which the kernel releases however the process ends, kill -9 included. A second
    writer is refused at once, naming the holder; readers take no lock. Under `accelerate
    launch` only the first process locks: the others are its partners, not rivals."""
    if not is_main_process():
        yield
        return
    fd = os.open(out / WRITER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobError(
                f"{out} is being written by {lock_holder(fd)}: one run folder has one "
                "writer. Wait for it to end (or cancel it), or use another --out "
                "folder."
            ) from None
        os.ftruncate(fd, 0)
        os.write(
            fd, json.dumps({"pid": os.getpid(), "command": shlex.join(sys.orig_argv)}).encode()
        )
        yield
    finally:
        os.close(fd)


def lock_holder(fd: int) -> str:
    """'process PID (COMMAND)' from a held writer lock."""
    try:
        holder = json.loads(os.pread(fd, 65536, 0) or b"{}")
        return f"process {holder['pid']} ({holder['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not written its pid yet)"


def failure_reason(exc: BaseException) -> str:
    """What a failed job tells its user: our own errors as they are; running out of disk or
    memory as what to do about it (the last checkpoint was written atomically, so it is whole)."""
    if isinstance(exc, StudioError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" writing {exc.filename}" if exc.filename else ""
        return (
            f"Out of disk space{where}. Free some space and resume: the job continues "
            "from its last checkpoint, which is kept whole."
        )
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return (
            f"Out of memory ({type(exc).__name__}: {exc}). Lower batch_size, max_length or "
            "rollouts (or use a smaller model) and resume from the last checkpoint."
        )
    return f"{type(exc).__name__}: {exc}"


def _write_status(out: Path, status: str, message: str = "") -> None:
    """How the job ended — written last: what it printed is flushed to its log first, since
    a viewer takes the status file as the job's end."""
    sys.stdout.flush()
    sys.stderr.flush()
    if is_main_process():
        write_atomic(out / STATUS_FILE, json.dumps({"status": status, "message": message}))


# (folder, stage, total) → (done, time) of this process's first progress there: where its
# own pace is measured from, so a resumed run's estimate is not skewed by the work it found
_paced_from: dict[tuple[str, str, int], tuple[float, float]] = {}


def write_progress(out_dir: str | Path, done: float, total: int, stage: str) -> None:
    now = time.time()
    since_done, since_time = _paced_from.setdefault((str(out_dir), stage, total), (done, now))
    write_atomic(
        Path(out_dir) / PROGRESS_FILE,
        json.dumps(
            {
                "done": done,
                "total": total,
                "stage": stage,
                "time": now,
                "since_done": since_done,
                "since_time": since_time,
            }
        ),
    )


def remaining_seconds(progress: dict, now: float) -> float | None:
    """What is left of a stage at the pace this process has kept since it began it (None
    until it has done some of it for a few seconds)."""
    try:
        done, total = float(progress["done"]), float(progress["total"])
        since_done, since_time = float(progress["since_done"]), float(progress["since_time"])
        written = float(progress["time"])
    except (KeyError, TypeError, ValueError):
        return None
    if done <= since_done or written - since_time < PACE_AFTER or not total:
        return None
    rate = (done - since_done) / (written - since_time)
    return max(0.0, (total - done) / rate - (now - written))


PACE_AFTER = 5.0  # seconds of work before a pace is worth an estimate


def read_progress(out_dir: str | Path) -> dict | None:
    try:
        return json.loads((Path(out_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None


# --- in the studio (or any launcher) ----------------------------------------------------------

# Pipelines only wait on the stage jobs they queue, so they do not hold the one job slot.
FREE_KINDS = ("run-all",)
# What a job leaves in its folder that is not an artifact.
BOOKKEEPING = {STATUS_FILE, PROGRESS_FILE, LOG_FILE, "job.yaml", "run.json"}

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


def is_main_process() -> bool:
    """Under `accelerate launch` every process runs the whole job; only the first (rank 0)
    writes the job's files (status, metrics, adapter, model card)."""
    return int(os.environ.get("RANK", "0")) == 0


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
    with open(out / LOG_FILE, "a") as log:
        try:
            proc = subprocess.Popen(
                list(job.command),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, JOB_ID_ENV: str(job.id)},
            )
        except OSError as exc:
            store.set_job_status(job.id, "failed", f"could not start the job: {exc}")
            return
    _children[proc.pid] = proc
    store.start_job(job.id, proc.pid)


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


def log_tail(out_dir: str | Path, lines: int = 15) -> str:
    try:
        return "\n".join(
            (Path(out_dir) / LOG_FILE).read_text(errors="replace").splitlines()[-lines:]
        )
    except OSError:
        return ""


def artifacts(out_dir: str | Path) -> list[str]:
    """What a finished job left in its folder (adapters, datasets, labels, metrics…)."""
    try:
        return sorted(
            p.name + ("/" if p.is_dir() else "")
            for p in Path(out_dir).iterdir()
            if p.name not in BOOKKEEPING and not p.name.startswith(".")
        )
    except OSError:
        return []


def read_status(out_dir: str | Path) -> tuple[str, str] | None:
    """(status, message) a job wrote on ending, or None if it wrote none (or not yet)."""
    try:
        ended = json.loads((Path(out_dir) / STATUS_FILE).read_text())
        return ended["status"], ended.get("message", "")
    except (OSError, ValueError, KeyError):
        return None


def stage_names(out: str | Path) -> list[str]:
    """A pipeline's stages in order, from the plan it wrote (run.json); [] before it has."""
    try:
        return [s["name"] for s in json.loads((Path(out) / RUN_FILE).read_text())["stages"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def succeeded(folder: str | Path) -> bool:
    """Whether the job that wrote into `folder` reported success."""
    return (read_status(folder) or ("",))[0] == "succeeded"


def how_it_ended(child: subprocess.Popen | None) -> str:
    """'ended', or the signal that killed our own child — SIGKILL from outside is most
    often the system's out-of-memory killer."""
    code = child.returncode if child is not None else None
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
        child = _children.get(job.pid) if job.pid else None
        if child is not None and child.returncode == 0:  # a command that keeps no status file
            status, message = "succeeded", ""
        else:
            status, message = (
                "failed",
                (
                    f"the job process {how_it_ended(child)} without "
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


def wait(store: Store, job_id: int, timeout: float = 600) -> JobRecord:
    """Block until the job has ended (for scripts and tests); keeps the queue moving."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = next(j for j in refresh(store) if j.id == job_id)
        if not job.active:
            return job
        time.sleep(0.5)
    raise JobError(f"Job {job_id} did not finish within {timeout:.0f} s.")


RUN_FILE = "run.json"


def claim_run_folder(folder: str | Path, settings: dict) -> None:
    """Record a run's settings in `folder`, or check they match the ones already there, so
    a resumed run never mixes chains made under other settings."""
    path = Path(folder) / RUN_FILE
    if path.exists():
        earlier = json.loads(path.read_text())
        changed = sorted(
            k for k in set(earlier) | set(settings) if earlier.get(k) != settings.get(k)
        )
        if changed:
            raise DatasetError(
                f"{folder} holds a run made with other settings ({', '.join(changed)} "
                "differ); resume with the same settings or use a new --out folder."
            )
        return
    write_atomic(path, json.dumps(settings, indent=2, ensure_ascii=False))


CONSTITUTION_FILE = "constitution.yaml"


def freeze_constitution(
    constitution: Constitution, folder: str | Path, name: str = CONSTITUTION_FILE
) -> Path:
    """The constitution as it is now, written into a job's run folder: the job reads this
    copy, so later edits never change a run that was started (or is resumed)."""
    return write_atomic(Path(folder) / name, to_yaml(constitution))
