"""The training stages (sft, pmp, reward, ppo, dpo, rahf, grpo, rloo): one process, or several under
`accelerate launch`; the job file and the judge's note kept beside the run, then the
stage's own training loop."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

from pipeline.config.commands import STAGES, job_yaml
from pipeline.core.files import write_atomic
from pipeline.core.job_folder import is_main_process, job_context, write_progress
from pipeline.core.tracking import tracked
from pipeline.evaluation.judge_choice import NOTE_FILE, training_note
from pipeline.runner.invocation import Invocation, as_processes, loading
from pipeline.runner.lineage import run_config
from pipeline.runner.run_list import long_run_warning
from pipeline.train.runtime import CancelFlag


def trainer(stage: str) -> Callable[..., Any]:
    """The function that trains a stage (imported only when that stage runs)."""
    if stage == "sft":
        from pipeline.train.sft import train_sft

        return train_sft
    if stage == "ppo":
        from pipeline.train.ppo import train_ppo

        return train_ppo
    if stage == "dpo":
        from pipeline.train.dpo import train_dpo

        return train_dpo
    if stage == "rahf":
        from pipeline.train.rahf import train_rahf

        return train_rahf
    if stage in ("grpo", "rloo"):
        from pipeline.train.online_rl import train_grpo, train_rloo

        return train_grpo if stage == "grpo" else train_rloo
    from pipeline.train import reward

    pm_stages: dict[str, Callable[..., Any]] = {
        "reward": reward.train_reward,
        "pmp": reward.train_pmp,
    }
    return pm_stages[stage]


def run(job: Any, inv: Invocation) -> int:
    stage = next(name for name, cls in STAGES.items() if type(job) is cls)
    relaunched = as_processes(inv, getattr(job, "processes", 1))
    if relaunched is not None:
        return relaunched
    warning = long_run_warning(stage, job, inv.store().jobs())
    if warning and is_main_process():
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    out = inv.folder
    cancel = CancelFlag()
    with job_context(out, on_cancel=cancel.set):
        write_atomic(out / "job.yaml", job_yaml(job))
        note = training_note(job)
        if note:
            write_atomic(out / NOTE_FILE, json.dumps(note, indent=2))
            if not note["verified"] and is_main_process():
                print(f"warning: {note['note']}", file=sys.stderr, flush=True)
        write_progress(out, 0, 0, loading(job.model) + " and the data")
        extra = {}
        if getattr(job, "constitution", ""):  # RAHF's SCIT writes instructions from it
            extra["constitution"] = inv.constitution(job.constitution)
        with tracked(job.report_to, out, run_config(stage, job, out)):
            result = trainer(stage)(job, out, cancel, **extra)
        if is_main_process():
            print(f"wrote {result}")
    return 0
