"""The one-click pipeline: every stage of the method (docs/architecture.md) as a job, in order.

  chains → SFT data → SFT → pairs (from the SFT policy) → AI labels → PM → PPO (or trl's
  GRPO or RLOO), DPO or RAHF → evaluation

Each stage runs through the job queue (so the studio lists it, with its log, timings and
artifacts) into its own folder under the run folder. Rerunning into the same folder skips
the stages that already succeeded and resumes the one that stopped.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from pipeline.config.commands import (
    STAGES,
    EvaluateJob,
    LabelJob,
    PairsJob,
    ReviseJob,
    RunAllJob,
    SFTDataJob,
    build_job,
    to_argv,
)
from pipeline.core.errors import JobError
from pipeline.core.files import write_atomic
from pipeline.core.job_folder import (
    JOB_ID_ENV,
    RUN_FILE,
    JobCancelled,
    job_context,
    succeeded,
    write_progress,
)
from pipeline.data.constitution import Constitution
from pipeline.data.store import JobRecord, Store
from pipeline.evaluation.judge_choice import labels_note
from pipeline.evaluation.power import change_summary
from pipeline.evaluation.tournament import EVAL_MD, read_results
from pipeline.runner import jobs
from pipeline.runner.invocation import Invocation
from pipeline.runner.jobs import CONSTITUTION_FILE, freeze_constitution
from pipeline.train.runtime import ADAPTER_DIR, CancelFlag


@dataclass(frozen=True)
class Stage:
    name: str  # its folder under the run folder
    args: tuple[str, ...]  # after `python -m pipeline`

    @property
    def kind(self) -> str:
        return self.args[0]


def plan(job: RunAllJob, out: Path) -> list[Stage]:
    """The stage commands, each reading the folders of the stages before it; each is its
    command's config dataclass as `to_argv` writes it, so a stage runs exactly as the same
    command typed by hand."""

    def folder(name: str, *sub: str) -> str:
        return str(out.joinpath(name, *sub))

    def training(stage: str, **values) -> object:
        return build_job(STAGES[stage], {"model": job.model, "precision": job.precision, **values})

    constitution = folder(CONSTITUTION_FILE)
    sft, pm = folder("sft", ADAPTER_DIR), folder("reward", ADAPTER_DIR)
    aligned = job.alignment
    if aligned in ("dpo", "rahf"):  # on the AI labels, a LoRA on the base
        alignment = training(aligned, data=folder("labels"))
    else:  # ppo, grpo, rloo: the SFT policy against the PM
        alignment = training(aligned, policy_adapter=sft, reward_adapter=pm, prompts=job.prompts)
    jobs_in_order = [
        (
            "chains",
            "revise",
            ReviseJob(
                constitution=constitution,
                prompts=job.prompts,
                split="train",
                limit=job.train_prompts,
                model=job.model,
                rounds=job.rounds,
                few_shot=job.few_shot,
                max_new_tokens=job.max_new_tokens,
            ),
        ),
        (
            "sft-data",
            "sft-data",
            SFTDataJob(
                chains=folder("chains"),
                model=job.model,
                helpful_ratio=job.helpful_ratio,
                max_new_tokens=job.max_new_tokens,
            ),
        ),
        ("sft", "sft", training("sft", data=folder("sft-data"))),
        (
            "pairs",
            "pairs",
            PairsJob(
                policy=sft,
                prompts=job.prompts,
                split="train",
                limit=job.pair_prompts,
                max_new_tokens=job.max_new_tokens,
            ),
        ),
        (
            "labels",
            "label",
            LabelJob(
                pairs=folder("pairs"),
                constitution=constitution,
                model=job.model,
                ensemble=job.ensemble,
                judge_method=job.judge_method,
                probe=job.judge_probe,
                human_labels=job.human_labels,
            ),
        ),
        ("reward", "reward", training("reward", data=folder("labels"))),
        (aligned, aligned, alignment),
        (
            "eval",
            "evaluate",
            EvaluateJob(
                base=job.model,
                policy=f"sft={sft},{aligned}={folder(aligned, ADAPTER_DIR)}",
                reward_adapter=pm,
                constitution=constitution,
                judge=f"{job.judge_method},pm",
                probe=job.judge_probe,
                judge_from=folder("labels") if job.judge_method == "auto" else "",
                prompts=f"{job.prompts},helpful",
                split="test",
                limit=job.eval_prompts,
                ensemble=job.ensemble,
                max_new_tokens=job.max_new_tokens,
            ),
        ),
    ]

    def argv(name: str, command: str, config: object) -> tuple[str, ...]:
        """The prompts' split and count stay in sight; a training stage names its preset."""
        args = to_argv(command, config, folder(name), shown=("split", "limit"))
        return tuple(args[:1] + ["--preset", job.preset] + args[1:] if command in STAGES else args)

    return [Stage(name, argv(name, command, config)) for name, command, config in jobs_in_order]


def follow(store: Store, job: JobRecord, cancel: CancelFlag) -> JobRecord:
    """Wait for a stage job; a cancel of the pipeline cancels the stage (which checkpoints)."""
    while True:
        job = next(j for j in jobs.refresh(store) if j.id == job.id)
        if not job.active:
            return job
        if cancel.requested and job.status != "cancelling":
            jobs.cancel(store, job.id)
        time.sleep(1.0)


def run_all(
    store: Store,
    job: RunAllJob,
    constitution: Constitution,
    out: Path,
    cancel: CancelFlag,
    parent: int | None = None,
    on_stage: Callable[[int, Stage, JobRecord], None] | None = None,
) -> list[JobRecord]:
    """Run (or resume) every stage; returns the stage jobs run now."""
    out.mkdir(parents=True, exist_ok=True)
    freeze_constitution(constitution, out)
    stages = plan(job, out)
    write_atomic(
        out / RUN_FILE,
        json.dumps(
            {
                "config": asdict(job),
                "stages": [
                    {"name": s.name, "command": ["python", "-m", "pipeline", *s.args]}
                    for s in stages
                ],
            },
            indent=2,
        ),
    )
    ran = []
    for n, stage in enumerate(stages):
        write_progress(out, n, len(stages), stage.name)
        if succeeded(out / stage.name):
            continue
        if cancel.requested:
            raise JobCancelled()
        record = jobs.launch(store, stage.kind, list(stage.args), out / stage.name, parent=parent)
        if on_stage:
            on_stage(n, stage, record)
        ended = follow(store, record, cancel)
        ran.append(ended)
        if ended.status == "cancelled":
            raise JobCancelled()
        if ended.status != "succeeded":
            raise JobError(f"Stage {stage.name} (job {ended.id}) {ended.status}: {ended.error}")
    write_progress(out, len(stages), len(stages), "done")
    return ran


def stage_seconds(job: JobRecord) -> float:
    if not (job.started_at and job.finished_at):
        return 0.0
    return (
        datetime.fromisoformat(job.finished_at) - datetime.fromisoformat(job.started_at)
    ).total_seconds()


def run(job: RunAllJob, inv: Invocation) -> int:
    """`run-all`: every stage as its own job, then the report: what changed, and the
    tournament with its intervals."""
    store = inv.store()
    constitution = inv.constitution(job.constitution)
    out = inv.out or store.new_run_folder("run-all")
    cancel = CancelFlag()
    parent = int(os.environ[JOB_ID_ENV]) if os.environ.get(JOB_ID_ENV, "").isdigit() else None
    started = time.time()
    with job_context(out, on_cancel=cancel.set):
        print(f"run folder {out}")

        def announce(n: int, stage: Stage, record: JobRecord) -> None:
            print(
                f"[{n + 1}/8] {stage.name}: job {record.id} ({record.status}) — "
                f"python -m pipeline {' '.join(stage.args)}",
                flush=True,
            )

        ran = run_all(store, job, constitution, out, cancel, parent, announce)
        for record in ran:
            print(f"  {record.kind:<10} job {record.id:<4} {stage_seconds(record):7.1f} s")
        print(f"total {time.time() - started:.0f} s\n")
        report = (
            change_summary(read_results(out / "eval"), job.alignment, labels_note(out / "labels"))
            + "\n\n"
            + (out / "eval" / EVAL_MD).read_text()
        )
        write_atomic(out / "report.md", report)
        print(report)
    return 0
