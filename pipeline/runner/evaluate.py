"""`evaluate`: the tournament of policies under the job's judges (one process, or several
under `accelerate launch`), its results printed and kept in the run folder."""

from __future__ import annotations

from pipeline.config.commands import EvaluateJob
from pipeline.config.settings import FeedbackConfig
from pipeline.core.errors import ConfigError
from pipeline.core.job_folder import is_main_process, job_context, write_progress
from pipeline.evaluation.judge_choice import CHOICE_FILE, read_choice
from pipeline.evaluation.judges import make_judge
from pipeline.evaluation.tournament import format_results, run_tournament
from pipeline.runner.invocation import Invocation, as_processes, loading
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


def run(job: EvaluateJob, inv: Invocation) -> int:
    relaunched = as_processes(inv, job.processes)
    if relaunched is not None:
        return relaunched
    out = inv.folder
    cancel = CancelFlag()
    with job_context(out, on_cancel=cancel.set):
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
        write_progress(out, 1, 1, "done")
        print(f"results in {out / 'eval.json'}\n")
        print(format_results(result))
    return 0
