"""Counterfactual relabelling: a label run relabelled under a draft with its own settings."""

import dataclasses

import pytest

from pipeline.cai.feedback import Labeller, run_labelling
from pipeline.config.commands import LabelJob, job_yaml
from pipeline.config.settings import FeedbackConfig
from pipeline.core.errors import DatasetError
from pipeline.data.preferences import Pair
from pipeline.evaluation.relabel import format_relabelling, relabel
from tests.records import harmless
from tests.tiny import tiny_model

PAIRS = [
    Pair(f"How do I do thing {i}?", f"Carefully, step {i}.", f"Never mind {i}.") for i in range(4)
]


def test_an_unchanged_constitution_moves_nothing_and_an_edit_moves_labels(tmp_path):
    judge = Labeller(tiny_model(), FeedbackConfig(ensemble=2, seed=3))
    run_labelling(judge, harmless(), PAIRS, tmp_path / "labels")
    (tmp_path / "labels" / "job.yaml").write_text(
        job_yaml(LabelJob(pairs="p", constitution="c", ensemble=2, seed=3))
    )
    same = relabel(harmless(), tmp_path / "labels", judge=judge)
    assert same.compared == 4 and same.moved == 0 and not same.flips
    assert same.largest_move < 1e-6  # the same draw, the same scores
    edited = dataclasses.replace(
        harmless(),
        principles=tuple(
            dataclasses.replace(p, preference_question="Which response mentions steps?")
            for p in harmless().principles
        ),
    )
    moved = relabel(edited, tmp_path / "labels", limit=3, judge=judge)
    assert moved.compared == 3 and moved.largest_move > 0
    assert "of 3 labels flip side under the draft" in format_relabelling(moved)
    assert "ensemble 2, seed 3" in moved.settings


def test_an_empty_label_run_is_refused(tmp_path):
    (tmp_path / "labels.jsonl").write_text("")
    with pytest.raises(DatasetError):
        relabel(harmless(), tmp_path / "labels.jsonl")


def test_a_run_labelled_by_auto_is_relabelled_by_the_judge_auto_chose(tmp_path):
    from pipeline.evaluation.judge_choice import JudgeChoice, save_choice
    from pipeline.evaluation.relabel import run_settings

    (tmp_path / "job.yaml").write_text(job_yaml(LabelJob(pairs="p", constitution="c")))
    assert run_settings(tmp_path).judge_method == "logprob"  # auto, with nothing chosen
    save_choice(
        JudgeChoice("representation", str(tmp_path / "probe"), True, "probe", "", "human", 40, ""),
        tmp_path,
    )
    job = run_settings(tmp_path)
    assert (job.judge_method, job.probe) == ("representation", str(tmp_path / "probe"))
