import os
import subprocess
import sys

import pytest

from pipeline.core import cpu
from pipeline.core.errors import ConfigError


def test_physical_cores_count_each_core_once():
    cores = cpu.physical_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))


def test_the_job_niceness_is_ten_unless_set_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.delenv(cpu.NICENESS_ENV, raising=False)
    assert cpu.job_niceness() == 10
    monkeypatch.setenv(cpu.NICENESS_ENV, " 0 ")
    assert cpu.job_niceness() == 0
    for bad in ("20", "-1", "ten", "1.5"):
        monkeypatch.setenv(cpu.NICENESS_ENV, bad)
        with pytest.raises(ConfigError, match=f"{cpu.NICENESS_ENV} must be a whole number"):
            cpu.job_niceness()


def niceness_after(start: int, wanted: str) -> str:
    """The niceness a fresh process reports after starting at `start` and moving to the job
    niceness `wanted`, and how many torch threads it then runs."""
    code = (
        f"import os; os.nice({start}); from pipeline.core import cpu; cpu.run_in_background();"
        "cpu.use_physical_cores(); import torch;"
        "print(os.getpriority(os.PRIO_PROCESS, 0), torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k != cpu.THREADS_ENV}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, cpu.NICENESS_ENV: wanted},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_job_lowers_its_priority_never_raises_it_and_runs_a_thread_per_core():
    cores = cpu.physical_cores()
    assert niceness_after(0, "10") == f"10 {cores}"
    assert niceness_after(15, "10") == f"15 {cores}"  # a stage of a run-all job: not 20
    assert niceness_after(0, "0") == f"0 {cores}"


def openmp_waits(**env: str) -> str:
    """OMP_WAIT_POLICY and GOMP_SPINCOUNT as a fresh process sets them before torch loads."""
    code = (
        "import os; from pipeline.core import cpu; cpu.use_physical_cores();"
        "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    )
    base = {k: v for k, v in os.environ.items() if k not in cpu.WAITS}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_openmp_waits_are_set_before_torch_loads_unless_the_user_set_them():
    if not cpu.gnu_openmp():
        pytest.skip("torch here runs on another OpenMP library")
    assert openmp_waits() == "ACTIVE 300000"
    assert openmp_waits(OMP_WAIT_POLICY="PASSIVE") == "PASSIVE None"
    assert openmp_waits(GOMP_SPINCOUNT="0") == "None 0"
