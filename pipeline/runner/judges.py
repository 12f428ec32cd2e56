"""`judges compare` and `principles rank`: every judge, then every principle as a judge,
measured against people's labels; the studio's choice of judge, and a draft of the best
principles, kept in the run folder."""

from __future__ import annotations

import json
from contextlib import nullcontext

from pipeline.config.commands import JudgesCompareJob, PrinciplesRankJob
from pipeline.core.files import write_atomic
from pipeline.core.job_folder import job_context, write_progress
from pipeline.data.constitution import load_constitution, to_yaml
from pipeline.evaluation.judge_choice import board_choice, save_choice
from pipeline.evaluation.leaderboard import check_labels, format_board, judged_all, leaderboard
from pipeline.evaluation.principles import (
    CATALOGUE,
    draft_constitution,
    format_ranking,
    label_everything,
    rank,
)
from pipeline.model.loading import load_model
from pipeline.runner.invocation import Invocation, loading, stepper
from pipeline.values.features import labelled_in


def run_compare(job: JudgesCompareJob, inv: Invocation) -> int:
    """Every judge against people on the same labels; judges.json and judges.md in --out."""
    out = inv.out
    with job_context(out) if out else nullcontext():
        data = labelled_in(job.labels, inv.store())
        check_labels(data, job.folds)
        constitution = inv.constitution(job.constitution)
        steps = 5 + bool(job.pm)
        step = stepper(out, steps)
        step(loading(job.model))
        loaded = load_model(job.model)
        board = leaderboard(
            job.labels, data, judged_all(loaded, constitution, data, job, step), job.seed
        )
        text = format_board(board)
        if out:
            choice = board_choice(board, loaded, data, job, out, step)
            save_choice(choice, out)
            write_atomic(out / "judges.md", text + "\n")
            write_progress(out, steps, steps, "done")
            text += f"\n{choice.text}" + (
                f"; its probe is in {choice.probe}" if choice.probe else ""
            )
        print(json.dumps(board.as_json(), indent=2) if inv.as_json else text)
    return 0


def run_rank(job: PrinciplesRankJob, inv: Invocation) -> int:
    """Principles as judges on human labels; principles.json/.md and draft.yaml in --out."""
    out = inv.out
    with job_context(out) if out else nullcontext():
        data = labelled_in(job.labels, inv.store())
        check_labels(data, 2)
        constitution = inv.constitution(job.constitution)
        catalogue = load_constitution(job.catalogue or CATALOGUE)
        steps = 1 + 2 * len(job.method_list)
        step = stepper(out, steps)
        step(loading(job.model))
        labelled = label_everything(
            load_model(job.model),
            constitution,
            catalogue,
            data,
            job.method_list,
            job.batch_size,
            step,
        )
        ranking = rank(data, job.labels, constitution, catalogue, labelled, job.seed)
        text = format_ranking(ranking)
        draft = draft_constitution(ranking, constitution, catalogue)
        if out:
            write_atomic(out / "principles.json", json.dumps(ranking.as_json(), indent=2))
            write_atomic(out / "principles.md", text + "\n")
            if draft:
                write_atomic(out / "draft.yaml", to_yaml(draft))
                text += (
                    f"\nthe draft is in {out / 'draft.yaml'} (not saved: `constitution "
                    f"save {out / 'draft.yaml'}` once you have read it)"
                )
            write_progress(out, steps, steps, "done")
        print(json.dumps(ranking.as_json(), indent=2) if inv.as_json else text)
    return 0
