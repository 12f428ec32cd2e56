"""The values report: on the tiny model every part of it runs and serialises; on the
embedded model and the gold pairs, the shipped adversarial constitution is flagged and the
others are not."""
import json

import pytest

from pipeline.constitution import load_constitution
from pipeline.feedback import FeedbackConfig, Labeller
from pipeline.models import load_model
from pipeline.preferences import Pair, gold_pairs
from pipeline.values.features import labelled
from pipeline.values.report import format_report, pair_evidence, values_report
from tests.records import SHIPPED, harmless
from tests.tiny import tiny_model


def test_every_part_of_the_report_runs_and_serialises_on_a_tiny_model():
    loaded = tiny_model()
    pairs = [Pair(f"Question {i}?", f"A kind and safe answer number {i}." * (1 + i % 3),
                  f"No. {i}", human="AB"[i % 2]) for i in range(10)]
    data = labelled(pairs, {})
    evidence = pair_evidence(loaded, data)
    judge = Labeller(loaded, FeedbackConfig(ensemble=1))
    steps = []
    report = values_report(loaded, harmless(), data, evidence, folds=3, judge=judge,
                           step=steps.append)
    assert len(report.rows) == 3 and report.pairs == 10  # embeddings + 2 layers
    assert report.judge is not None and report.gap == pytest.approx(
        report.judge.value - report.generation.value)
    assert any("layer" in s for s in steps) and "contrastive" in " ".join(steps)
    out = json.loads(json.dumps(report.as_json()))
    assert len(out["ceiling"]["value"]) == 3 and isinstance(out["adversarial"], bool)
    assert len(out["cos_judge"]) == 3 and report.best.judge_direction is not None
    assert set(out["principle_cosines"]) == {p.id for p in harmless().enabled_principles}
    text = format_report(report)
    assert text.startswith("adversarial constitution: ") and "length alone" in text
    assert "judge's own direction (probe on its labels)" in text


@pytest.mark.slow
def test_the_shipped_adversarial_constitution_is_flagged_on_the_gold_pairs():
    loaded = load_model()
    data = labelled(gold_pairs(), {})
    evidence = pair_evidence(loaded, data, layers=[8, 13, 18])
    flags = {name: values_report(loaded, load_constitution(SHIPPED / f"{name}.yaml"), data,
                                 evidence).adversarial
             for name in ("adversarial", "harmless-helpful", "honest")}
    assert flags == {"adversarial": True, "harmless-helpful": False, "honest": False}
