"""The representation judge and probe artifacts, on the tiny model; the values report's
checks of bad input."""

import math

import pytest
import torch

from pipeline.cai.feedback import run_labelling
from pipeline.core.errors import DatasetError, ModelError
from pipeline.data.preferences import Pair, gold_pairs, read_labels
from pipeline.model.loading import LoadedModel
from pipeline.values.features import labelled, pair_source
from pipeline.values.representation_judge import (
    RepresentationJudge,
    calibrated_tau,
    fit_probe,
    load_probe,
    probe_quality,
    save_probe,
)
from tests.records import harmless
from tests.tiny import tiny_model

PAIRS = [
    Pair(f"Question {i}?", f"A kind and safe answer number {i}.", f"No. {i}", human="AB"[i % 2])
    for i in range(12)
]


def test_the_representation_judge_is_position_free_and_writes_ordinary_records(tmp_path):
    judge = RepresentationJudge(tiny_model(), layer=1)
    pairs = PAIRS[:4] + [Pair("Same?", "yes", "yes")]
    forward = judge.label(harmless(), pairs)
    backward = judge.label(harmless(), [p.swapped() for p in pairs])
    for a, b in zip(forward[:4], backward[:4]):
        assert a.p_a == pytest.approx(1 - b.p_a, abs=1e-6)
        assert all(x.p_a_ab == x.p_a_ba for x in a.labels)  # one label, both orders
        assert {x.principle_id for x in a.labels} == {p.id for p in harmless().enabled_principles}
    assert forward[4].flags == ("identical",) and forward[4].p_a == 0.5
    run_labelling(judge, harmless(), pairs, tmp_path / "labels")
    records = read_labels(tmp_path / "labels")
    assert len(records) == 5 and records[0].feedback_model == "representation:tiny@layer1"


def test_a_probe_is_fitted_saved_loaded_and_refused_for_another_model(tmp_path):
    loaded = tiny_model()
    data = labelled(PAIRS, {})
    probe = fit_probe(loaded, data, folds=3)
    assert probe.layer in range(3) and probe.tau > 0 and 0 <= probe.cv_accuracy <= 1
    folder = save_probe(probe, tmp_path / "probe")
    again = load_probe(folder, loaded)
    assert torch.equal(again.direction, probe.direction) and again.pair_ids == probe.pair_ids
    assert again.cv_interval == probe.cv_interval and probe.always_longer == 0.5
    low, high = probe.cv_interval
    assert low <= probe.cv_accuracy <= high and probe.cv_controlled is not None
    assert (
        again.quality
        == probe.quality
        == (
            f"{probe.cv_accuracy:.0%} (95% interval {low:.0%}–{high:.0%}), length-controlled "
            f"{probe.cv_controlled:.0%}; always-longer 50%"
        )
    )
    older = {k: v for k, v in vars(probe).items() if k not in ("cv_interval", "cv_controlled")}
    assert probe_quality(older).endswith("(interval and length control not recorded)")
    judge = RepresentationJudge(loaded, again)
    labelled_again = judge.label(harmless(), [PAIRS[0], Pair("New?", "Yes, gladly.", "No.")])
    assert labelled_again[0].flags == ("probe-training-pair",) and labelled_again[1].flags == ()
    other = LoadedModel("other", "x", loaded.model, loaded.tokenizer)
    with pytest.raises(ModelError, match="fitted on tiny .* not on other"):
        load_probe(folder, other)
    with pytest.raises(DatasetError, match="not a probe folder"):
        load_probe(tmp_path, loaded)


def test_calibrated_temperature_by_hand():
    scores, y = [2.0, 1.0, -1.0, -2.0, 0.5, -0.5], [1, 1, 0, 0, 1, 0]
    tau = calibrated_tau(scores, y)
    assert tau <= 1.0  # perfectly separated scores: sharpen
    assert calibrated_tau([2.0, -2.0, 2.0, -2.0], [1, 1, 0, 0]) > 4  # useless scores: flatten
    assert math.isfinite(tau)


def test_bad_pair_sets_are_refused_with_what_is_needed():
    with pytest.raises(DatasetError, match="None of these pairs has a human A or B label"):
        labelled([Pair("q", "a", "b", human="tie"), Pair("q", "x", "x", human="A")], {})
    with pytest.raises(DatasetError, match="2 labelled pairs cannot be split into 5 folds"):
        fit_probe(tiny_model(), labelled(PAIRS[:2], {}))
    assert len(pair_source("gold", [])) == len(gold_pairs())
    humans = pair_source("human", [("q", "a", "b", "A")])
    assert humans[0].human == "A" and labelled(humans, {}).y.tolist() == [1]
    one_way = labelled(
        [Pair(f"q{i}", "long answer here", "short", human="A") for i in range(3)], {}
    )
    assert one_way.chose_longer == [True] * 3  # length control undefined: no shorter-preferred pair
