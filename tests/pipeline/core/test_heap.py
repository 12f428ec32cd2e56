"""A PPO run keeps a steady heap on jemalloc where it is installed: the command restarts
itself with the library preloaded (same arguments), before it loads anything."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core import heap

ROOT = Path(__file__).resolve().parents[3]


def test_a_program_that_calls_the_cli_is_never_restarted():
    assert not heap.from_command_line()  # pytest's process, not `python -m pipeline`
    heap.restart_on_jemalloc()  # returns: replacing pytest's process would end the run
    assert heap.jemalloc() == "" or Path(heap.jemalloc()).name == heap.NAME


@pytest.mark.integration
@pytest.mark.parametrize("command", [["-m", "pipeline"], ["cstudio.py"]])
def test_a_ppo_command_restarts_on_jemalloc_and_says_which_heap_it_keeps(tmp_path, command):
    empty = tmp_path / "prompts.txt"
    empty.write_text("\n")
    env = {k: v for k, v in os.environ.items() if k != heap.PRELOAD}
    proc = subprocess.run(
        [sys.executable, *command, "ppo", "--reward-adapter", str(tmp_path / "pm")]
        + ["--prompts", str(empty), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        env={**env, "CONSTITUTION_STUDIO_WORKSPACE": str(tmp_path / "ws")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    said = proc.stdout + proc.stderr
    if heap.jemalloc():
        assert "heap: jemalloc" in said, said
    else:
        assert "heap: glibc, fixed mmap threshold" in said, said
