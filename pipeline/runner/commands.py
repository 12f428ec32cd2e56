"""The run function of every command in the registry (pipeline/config/commands.py): the CLI
parses a command's flags into its job config and hands both here. Each is named by import
path, so the CLI's start (and `--help`) loads no run module, and no torch, until one runs."""

from __future__ import annotations

import importlib
import os
from typing import Any

from pipeline.config.commands import STAGES
from pipeline.core import cpu, heap
from pipeline.core.job_folder import JOB_ID_ENV
from pipeline.runner.invocation import Invocation

RUNS: dict[str, str] = {
    "revise": "pipeline.runner.revise:run",
    "sft-data": "pipeline.runner.sft_data:run",
    "pairs": "pipeline.runner.pairs:run",
    "label": "pipeline.runner.label:run",
    **dict.fromkeys(STAGES, "pipeline.runner.train:run"),
    "evaluate": "pipeline.runner.evaluate:run",
    "values-report": "pipeline.runner.values:run_report",
    "values-fit": "pipeline.runner.values:run_fit",
    "judges-compare": "pipeline.runner.judges:run_compare",
    "principles-rank": "pipeline.runner.judges:run_rank",
    "steer-extract": "pipeline.runner.steer:run",
    "run-all": "pipeline.runner.run_all:run",
    "export": "pipeline.runner.export:run",
}


def run_command(command: str, job: Any, inv: Invocation) -> int:
    """Run `command`'s job; its exit status. It runs one torch thread per physical core,
    and, queued from the studio, at a lower priority than the studio's live work (see
    pipeline.core.cpu). A PPO run that keeps a steady heap restarts on jemalloc first, where
    it is installed (see pipeline.core.heap)."""
    cpu.use_physical_cores()
    if os.environ.get(JOB_ID_ENV):
        cpu.run_in_background()
        print(
            f"priority: niceness {os.getpriority(os.PRIO_PROCESS, 0)} (a queued job yields "
            f"to the studio's live work; ${cpu.NICENESS_ENV} sets it)",
            flush=True,
        )
    if getattr(job, "steady_heap", False):
        heap.restart_on_jemalloc()
    module, _, name = RUNS[command].partition(":")
    return getattr(importlib.import_module(module), name)(job, inv)
