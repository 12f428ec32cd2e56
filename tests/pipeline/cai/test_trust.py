"""Verdicts: every label and trust number comes with what it means, computed from the numbers."""

import pytest

from pipeline.cai.trust import (
    MIN_PAIRS,
    agreement,
    agreement_verdict,
    format_report,
    label_verdict,
    length_baselines,
    trust_report,
)
from pipeline.data.preferences import Pair, Preference, PrincipleLabel


def test_agreement_verdicts_say_chance_worse_better_or_too_few():
    assert agreement_verdict(0, 2).kind == "unknown"
    assert "too few pairs to say" in agreement_verdict(0, 2).text
    worse = agreement_verdict(12, 100)
    assert worse.kind == "bad" and "worse than a coin flip" in worse.text and "7%–20%" in worse.text
    assert agreement_verdict(55, 100).kind == "warn"
    assert "cannot be told from a coin flip" in agreement_verdict(55, 100).text
    assert agreement_verdict(80, 100).kind == "ok"
    assert agreement_verdict(MIN_PAIRS, MIN_PAIRS).kind == "ok"


def test_label_verdicts_position_decided_no_preference_and_prefers():
    bomb = label_verdict(0.532, 0.90, 0.164)  # the winner flips with the order
    assert bomb.kind == "bad" and bomb.text.startswith("position-decided")
    flat = label_verdict(0.52, 0.53, 0.51)
    assert flat.kind == "warn" and flat.text.startswith("no preference")
    assert label_verdict(0.2, 0.3, 0.1).text.startswith("prefers B in both orders")
    assert label_verdict(0.5, 0.5, 0.5, identical=True).kind == "unknown"


def test_calibration_is_not_meaningful_with_one_bin_or_few_pairs():
    one_bin = agreement([(0.45 + i / 1000, "AB"[i % 2]) for i in range(20)])
    assert len(one_bin.bins) == 1 and not one_bin.calibration_meaningful
    assert "every label sits in one bin" in one_bin.calibration_note
    two = agreement([(0.9, "A"), (0.1, "A")])
    assert not two.calibration_meaningful and "fewer than" in two.calibration_note
    spread = agreement([(0.1 + 0.8 * (i % 2), "AB"[i % 3 == 0]) for i in range(20)])
    assert spread.calibration_meaningful and "calibration error 0." in spread.calibration_note


def test_length_baselines_and_length_controlled_agreement_by_hand():
    rows = [
        (0.9, "A", "long long long", "short"),  # people chose the longer; AI agrees
        (0.9, "B", "long long long", "short"),  # people chose the shorter; AI disagrees
        (0.2, "B", "long long long", "short"),  # people chose the shorter; AI agrees
        (0.7, "A", "same", "size"),  # equal length: left out
        (0.7, "tie", "a b", "c"),
    ]
    length = length_baselines(rows)
    assert length.compared == 3 and length.preferred_longer == 1
    assert length.longer == pytest.approx(1 / 3) and length.shorter == pytest.approx(2 / 3)
    assert length.controlled == pytest.approx((1 / 1 + 1 / 2) / 2)
    assert length_baselines([(0.9, "A", "long long", "x")]).controlled is None
    assert length_baselines([(0.9, "tie", "a", "b")]) is None


def _pref(prompt: str, p_ab: float, p_ba: float, human: str) -> Preference:
    pair = Pair(prompt, "a longer answer here", "short", human=human)
    label = PrincipleLabel("x", p_ab, p_ba, 0.9, 0.9)
    return Preference(pair, (p_ab + p_ba) / 2, (label,), "m", "h")


def test_the_cli_report_prints_each_number_with_its_verdict():
    prefs = [_pref(f"q{i}", 0.9, 0.2, "B") for i in range(12)]  # position-decided, 0% agreement
    text = format_report(trust_report(prefs, {}))
    assert "most labels follow the order" in text
    assert "worse than a coin flip" in text and "n = 12" in text
    assert "calibration error not meaningful: every label sits in one bin" in text
    assert "always-longer 0%, always-shorter 100% on 12 pairs" in text
