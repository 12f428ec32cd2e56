"""`values report` / `values compare` and `values fit`: a constitution's direction in the
model's representations against what people preferred, several constitutions side by side,
and a representation judge (a probe) fitted on people's labels."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from dataclasses import asdict

from pipeline.cai.feedback import Labeller
from pipeline.config.commands import ValuesFitJob, ValuesJob
from pipeline.config.settings import FeedbackConfig
from pipeline.core.files import write_atomic
from pipeline.core.job_folder import job_context, write_progress
from pipeline.model.loading import load_model
from pipeline.runner.invocation import Invocation, loading
from pipeline.values.features import labelled_in
from pipeline.values.report import (
    CosineDifference,
    ValuesReport,
    cos_text,
    differences_from_first,
    format_report,
    layer_fits,
    pair_evidence,
    values_report,
)
from pipeline.values.representation_judge import fit_probe, save_probe


def run_report(job: ValuesJob, inv: Invocation) -> int:
    out = inv.out
    with job_context(out) if out else nullcontext():
        data = labelled_in(job.pairs, inv.store())
        constitutions = [inv.constitution(ref) for ref in job.constitutions]
        loaded = load_model(job.model)
        policy = load_model(job.policy) if job.policy else None
        steps = 2 + len(constitutions)
        done = [0]

        def step(what: str) -> None:
            print(f"… {what}", file=sys.stderr, flush=True)
            if out:
                write_progress(out, done[0], steps, what)

        evidence = pair_evidence(loaded, data, job.pooling, job.layer_list, policy, step)
        done[0] = 2
        judge = (
            Labeller(loaded, FeedbackConfig(ensemble=job.judge_ensemble))
            if job.judge_ensemble >= 0
            else None
        )
        fits = layer_fits(data, evidence, job.method, job.folds, job.seed, step)
        reports = []
        for c in constitutions:
            reports.append(
                values_report(
                    loaded, c, data, evidence, job.method, job.folds, job.seed, judge, step, fits
                )
            )
            done[0] += 1
        rows = [r.as_json() for r in reports]
        differences = differences_from_first(rows)
        text = "\n\n".join(format_report(r) for r in reports)
        if len(reports) > 1:
            text += "\n\n" + compare_table(reports, differences)
            for row, found in zip(rows[1:], differences[1:]):
                row["mean_cos_minus_first"] = asdict(found) if found else None
        payload = json.dumps(rows if len(rows) > 1 else rows[0], indent=2)
        if out:
            write_atomic(out / "values.json", payload)
            write_atomic(out / "values.md", text + "\n")
            write_progress(out, steps, steps, "done")
        print(payload if inv.as_json else text)
    return 0


def compare_table(reports: list[ValuesReport], differences: list[CosineDifference | None]) -> str:
    """Several constitutions side by side on the same pairs, each number with its interval
    and length control, and each mean cosine against the first constitution's (paired:
    `differences`, from `differences_from_first`)."""
    lines = [
        f"{'constitution':<21} {'adversarial':<12} {'w_c at the best layer':<42} "
        f"{'mean cos(w_c, w*) (95%)':<29} {f'minus {reports[0].constitution} (95%)':<38} "
        "log-prob judge"
    ]
    for r, difference in zip(reports, differences):
        mean_cos = cos_text(r.mean_cos_constitution, r.mean_cos_constitution_interval, 3)
        lines.append(
            f"{r.constitution:<21} {'yes' if r.adversarial else 'no':<12} "
            f"{r.best.constitution.text:<42} {mean_cos:<29} "
            f"{'—' if difference is None else difference.text:<38} "
            f"{'—' if r.judge is None else r.judge.text}"
        )
    return "\n".join(lines)


def run_fit(job: ValuesFitJob, inv: Invocation) -> int:
    out = inv.folder
    with job_context(out):
        data = labelled_in(job.pairs, inv.store())
        write_progress(out, 0, 1, loading(job.model))
        loaded = load_model(job.model)
        write_progress(out, 0, 1, "reading the pairs and fitting the probe")
        layer = job.layer_list[0] if job.layer_list else None
        probe = fit_probe(loaded, data, job.pooling, job.method, layer, job.folds, job.seed)
        save_probe(probe, out / "probe")
        write_progress(out, 1, 1, "done")
        print(
            f"probe at layer {probe.layer} ({probe.method}, {probe.pooling}): cross-validated "
            f"accuracy {probe.quality} on {len(data.pairs)} pairs, τ = {probe.tau:.3g}; "
            f"saved in {out / 'probe'} — label with `label --judge-method representation --probe "
            f"{out / 'probe'}` (pairs it was fitted on are flagged)"
        )
    return 0
