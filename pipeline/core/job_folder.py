"""What a job's own process writes into its run folder, and what anyone reads back from it:
progress.json as it goes, status.json when it ends (succeeded, failed with its message, or
cancelled by SIGTERM), the writer lock that keeps one writer per folder, and the settings a
resumed run must match. No database and no launcher: the compute code (feedback, training,
tournaments) reports through this module, and the job queue (pipeline/runner/jobs.py) reads it."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from pipeline.core.errors import DatasetError, JobError, StudioError
from pipeline.core.files import write_atomic

STATUS_FILE = "status.json"
PROGRESS_FILE = "progress.json"
LOG_FILE = "job.log"
EXIT_FILE = "exit.json"  # a job's exit status, written by the warm launcher that forked it
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
        _write_status(out, "cancelled", "cancelled; the job can resume from what it finished")
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


def write_progress(
    out_dir: str | Path,
    done: float,
    total: int,
    stage: str,
    work: tuple[int, int] | None = None,
) -> None:
    """`done` of `total` items finished, in `stage`. A job whose items finish together (a
    batch of chains) also gives its `work` — (steps done, steps in all) — which the estimate
    paces on, so the count shows only what is finished and the estimate still moves."""
    now = time.time()
    paced, of = (float(work[0]), work[1]) if work else (done, total)
    key = (str(out_dir), "" if work else stage, of)
    since_done, since_time = _paced_from.setdefault(key, (paced, now))
    write_atomic(
        Path(out_dir) / PROGRESS_FILE,
        json.dumps(
            {
                "done": done,
                "total": total,
                "stage": stage,
                "time": now,
                **({"work_done": work[0], "work_total": work[1]} if work else {}),
                "since_done": since_done,
                "since_time": since_time,
            }
        ),
    )


def remaining_seconds(progress: dict, now: float) -> float | None:
    """What is left of a stage (or of a job's work, where it gives one) at the pace this
    process has kept since it began it (None until it has done some of it for a few
    seconds)."""
    try:
        done = float(progress.get("work_done", progress["done"]))
        total = float(progress.get("work_total", progress["total"]))
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


# What a job leaves in its folder that is not an artifact.
BOOKKEEPING = {STATUS_FILE, PROGRESS_FILE, LOG_FILE, EXIT_FILE, "job.yaml", "run.json"}


def is_main_process() -> bool:
    """Under `accelerate launch` every process runs the whole job; only the first (rank 0)
    writes the job's files (status, metrics, adapter, model card)."""
    return int(os.environ.get("RANK", "0")) == 0


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
