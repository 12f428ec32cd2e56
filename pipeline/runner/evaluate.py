"""`evaluate`: the tournament of policies under the job's judges (one process, or several
under `accelerate launch`), its results printed and kept in the run folder."""

from __future__ import annotations

from pipeline.config.commands import EvaluateJob
from pipeline.config.settings import FeedbackConfig
from pipeline.core import tracking
from pipeline.core.errors import ConfigError
from pipeline.core.job_folder import is_main_process, job_context, write_progress
from pipeline.evaluation.judge_choice import CHOICE_FILE, read_choice
from pipeline.evaluation.judges import make_judge
from pipeline.evaluation.tournament import TournamentResult, format_results, run_tournament
from pipeline.runner.invocation import Invocation, as_processes, loading
from pipeline.runner.lineage import run_config
from pipeline.train.runtime import CancelFlag


def evaluation_judges(job: EvaluateJob) -> list[tuple[str, str]]:
    """(method, probe) per judge of a tournament; `auto` is the judge its label run chose."""
    found = []
    for method in job.judges:
        if method != "auto":
            found.append((method, job.probe))
            continue
        choice = read_choice(job.judge_from)
        if choice is None:
            raise ConfigError(
                f"judge auto stands for the judge {job.judge_from} chose, but it "
                f"has no readable {CHOICE_FILE}: label it with judge_method: auto."
            )
        found.append((choice.method, choice.probe))
    return list(dict.fromkeys(found))


def tournament_metrics(result: TournamentResult) -> dict[str, float]:
    """The tournament's headline numbers as flat tracker metrics: each judge's Elo per axis
    and policy with its 95% interval, and each policy's answer statistics."""
    metrics: dict[str, float] = {}
    for judge in result.judges:
        method = judge.judge.split(":")[0]  # 'pm:FOLDER' → 'pm'
        for axis in judge.axes:
            for r in axis.ratings:
                key = f"{method}/{axis.axis}/{r['name']}"
                metrics |= {f"{key}/elo": r["elo"], f"{key}/elo_low": r["low"]}
                metrics[f"{key}/elo_high"] = r["high"]
    for s in result.stats:
        facts: dict[str, float | None] = {"mean_words": s.mean_words, "limit_rate": s.limit_rate}
        facts |= {"refusal_rate": s.refusal_rate, "pm_mean": s.pm_mean}
        metrics |= {f"policy/{s.name}/{k}": v for k, v in facts.items() if v is not None}
    return metrics


def run(job: EvaluateJob, inv: Invocation) -> int:
    relaunched = as_processes(inv, job.processes)
    if relaunched is not None:
        return relaunched
    out = inv.folder
    cancel = CancelFlag()
    tracker = tracking.tracked(job.report_to, out, run_config("evaluate", job, out))
    with job_context(out, on_cancel=cancel.set), tracker:
        constitution = inv.constitution(job.constitution) if job.constitution else None

        def progress(text: str, done: int, total: int) -> None:
            if is_main_process():  # under several processes, the first speaks for all
                write_progress(out, done, total, text)
                print(text + (f" ({done} of {total})" if total else ""), flush=True)

        progress(loading(job.judge_model or job.base) + " for the judges", 0, 0)
        judges = {}
        for method, probe in evaluation_judges(job):
            judge = make_judge(
                method,
                job.judge_model or job.base,
                probe,
                -1,
                FeedbackConfig(ensemble=job.ensemble),
                job.reward_adapter,
            )
            judges[judge.name] = judge
        result = run_tournament(
            job, out, constitution, judges, cancel, progress, inv.store().human_labels()
        )
        if result is None:  # another process rates
            return 0
        tracking.log(0, tournament_metrics(result))
        write_progress(out, 1, 1, "done")
        print(f"results in {out / 'eval.json'}\n")
        print(format_results(result))
    return 0
