"""How a process shares the CPU with the studio. On a laptop the studio's live answer and a
queued job run side by side on the same few cores; torch's OpenMP threads spin while they
wait for each other, so two busy processes cost each other more than their share (measured
in `bench/side_by_side.py`: a batch-1 answer beside a generation job ran at 0.4× its speed
alone). A queued job therefore runs at a lower priority (niceness 10): alone it keeps every
core, and beside the studio's live work it yields, so the answer the user waits for comes
first. Every process runs one torch thread per physical core (threads on SMT siblings share
one core's arithmetic units and only add contention), unless the user set OMP_NUM_THREADS.

torch's OpenMP library gives every thread that starts parallel work a team of its own; once
it manages more threads than there are cores (a second studio thread that has run torch, or
CTranslate2 bound to it: see ct2_engine.library), it cuts the time a waiting thread spins
before it sleeps to 100 turns, and every small parallel step then waits for a sleeping
thread to wake (measured, 2 cores: an int8 matrix-vector product 28 µs alone, 76 µs while
another thread that has run torch lives; a sampled token after 1,171 prompt tokens 28
against 44 ms). `OMP_WAIT_POLICY=ACTIVE` raises that cut to 1,000 turns (31 µs), and
`GOMP_SPINCOUNT` keeps the ordinary wait at OpenMP's default, ~3 ms, after which an idle
thread sleeps: an idle studio stays idle. Only for GNU OpenMP (torch's Linux wheels ship
it): LLVM's and Intel's read ACTIVE as "never sleep"."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from pipeline.core.errors import ConfigError

NICENESS_ENV = "CSTUDIO_JOB_NICENESS"  # a queued job's niceness, 0 (none) to 19
JOB_NICENESS = 10
THREADS_ENV = "OMP_NUM_THREADS"
WAITS = {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "300000"}  # see the module's note


CPUINFO = Path("/proc/cpuinfo")


def cpuinfo_text(path: Path = CPUINFO) -> str:
    """What Linux says of this CPU (its vendor, its instruction-set flags); '' where it
    cannot be read (another system)."""
    try:
        return path.read_text()
    except OSError:
        return ""


def physical_cores() -> int:
    """Cores this process may run on, SMT siblings counted once (Linux's CPU topology;
    elsewhere every logical CPU counts)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not allowed:
        return os.cpu_count() or 1
    cores = set()
    for cpu in allowed:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return len(cores)


def gnu_openmp() -> bool:
    """Whether torch runs on the GNU OpenMP library it ships (found without importing it)."""
    spec = importlib.util.find_spec("torch")
    folders = list(spec.submodule_search_locations or []) if spec else []
    return any(any((Path(f) / "lib").glob("libgomp*.so*")) for f in folders)


def use_physical_cores() -> None:
    """One torch thread per physical core for this process, unless OMP_NUM_THREADS says
    otherwise; set before torch loads (it reads the variable once), or on torch itself. Before
    torch loads, OpenMP's waits too (WAITS, unless the user set either)."""
    if "torch" not in sys.modules and not WAITS.keys() & os.environ.keys() and gnu_openmp():
        os.environ.update(WAITS)
    if THREADS_ENV in os.environ:
        return
    cores = physical_cores()
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(cores)
    else:
        os.environ[THREADS_ENV] = str(cores)


def job_niceness() -> int:
    """The niceness a queued job runs at: $CSTUDIO_JOB_NICENESS, 10 when unset."""
    raw = os.environ.get(NICENESS_ENV, "").strip()
    if not raw:
        return JOB_NICENESS
    if not raw.isdigit() or int(raw) > 19:
        raise ConfigError(f"{NICENESS_ENV} must be a whole number from 0 to 19 (got {raw!r}).")
    return int(raw)


def run_in_background() -> None:
    """Lower this process's priority to the job niceness (never raise it: a stage job
    started by a run-all job keeps the same niceness, not twice it). Threads and processes
    started afterwards inherit it."""
    wanted = job_niceness()
    if os.getpriority(os.PRIO_PROCESS, 0) < wanted:
        os.setpriority(os.PRIO_PROCESS, 0, wanted)
