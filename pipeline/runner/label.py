"""`label`: AI feedback on A/B pairs under a constitution, by the judge the job names or, under
`judge_method: auto`, the one people's labels choose; the trust report beside the labels."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace

from tqdm import tqdm

from pipeline.cai.feedback import run_labelling
from pipeline.cai.trust import format_report, trust_report
from pipeline.config.commands import LabelJob, job_yaml
from pipeline.config.fields import settings_of
from pipeline.config.settings import FeedbackConfig
from pipeline.core.files import write_atomic
from pipeline.core.job_folder import job_context, write_progress
from pipeline.data.constitution import Constitution
from pipeline.data.preferences import pairs_path, read_pairs
from pipeline.evaluation.judge_choice import (
    JudgeChoice,
    domain_check,
    labels_note,
    measured_choice,
    read_choice,
    save_choice,
)
from pipeline.evaluation.judges import make_judge
from pipeline.runner.invocation import Invocation, loading


def judge_for(job: LabelJob):
    """The judge a label job asks for."""
    return make_judge(
        job.judge_method, job.model, job.probe, job.layer, settings_of(job, FeedbackConfig)
    )


def run(job: LabelJob, inv: Invocation) -> int:
    out = inv.folder
    with job_context(out):
        write_atomic(out / "job.yaml", job_yaml(job))  # what `relabel` repeats
        constitution = inv.constitution(job.constitution)
        skipped: list[str] = []
        pairs = read_pairs(
            pairs_path(job.pairs), on_bad_line=skipped.append if job.skip_bad_lines else None
        )
        for message in skipped:
            print(f"warning: skipped {message}", file=sys.stderr)
        pairs = pairs[: job.limit or None]
        write_progress(out, 0, len(pairs), loading(job.model))
        choice = chosen_judge(job, inv, constitution, len(pairs))
        labeller = judge_for(
            replace(job, judge_method=choice.method, probe=choice.probe) if choice else job
        )
        bar = tqdm(total=len(pairs), unit="pair")
        write_progress(out, 0, len(pairs), "labelling")

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)
            write_progress(out, done, total, "labelling")

        prefs = run_labelling(labeller, constitution, pairs, out, progress)
        bar.close()
        domain = probe_domain(labeller, prefs)
        if choice and domain != choice.domain:
            choice = replace(choice, domain=domain)
            save_choice(choice, out)
        report = trust_report(prefs, inv.store().human_labels())
        note = labels_note(out)
        write_atomic(
            out / "summary.json",
            json.dumps({**asdict(report), "judge": note, "domain": domain}, indent=2),
        )
        print(f"{len(prefs)} labelled pairs in {out / 'labels.jsonl'}")
        print(format_report(report))
        print(note)
        if domain:
            print(f"warning: {domain}", file=sys.stderr)
    return 0


def chosen_judge(
    job: LabelJob, inv: Invocation, constitution: Constitution, pairs: int
) -> JudgeChoice | None:
    """Under judge_method auto, the judge the human labels choose (measured once and kept in
    the run folder, so a resumed run keeps it); None for a judge named by hand."""
    if job.judge_method != "auto":
        return None
    out = inv.folder
    choice = read_choice(out)
    if choice is None:

        def step(what: str) -> None:
            print(f"… auto: {what}", file=sys.stderr, flush=True)
            write_progress(out, 0, pairs, f"choosing the judge: {what}")

        choice = measured_choice(job, inv.store(), constitution, out, step)
    print(choice.text, flush=True)
    return choice


def probe_domain(labeller, prefs) -> str:
    """The domain check of a probe-led representation judge on the pairs it just labelled."""
    probe = getattr(labeller, "probe", None)
    if probe is None:
        return ""
    fresh = [p for p in prefs if "probe-training-pair" not in p.flags]
    return domain_check(fresh, probe.always_longer)
