"""Power lines and the one-click run's change summary, by hand."""

import math

from pipeline.evaluation.power import (
    PowerLine,
    change_summary,
    detectable_win_rate,
    elo,
    power_lines,
    prompts_needed,
    prompts_per_pair,
)
from pipeline.evaluation.tournament import AxisResult, JudgeResult, PolicyStats, TournamentResult


def test_detectable_effects_and_prompts_needed_follow_the_normal_approximation():
    z = 1.959964 + 0.841621
    assert detectable_win_rate(16) == 0.5 + z * 0.5 / 4
    assert detectable_win_rate(1) == 1.0 and detectable_win_rate(0) == 1.0
    assert prompts_needed(0.6) == math.ceil((z * 0.5 / 0.1) ** 2) == 197
    assert prompts_needed(0.4) == 197 and prompts_needed(0.5) is None
    assert round(elo(0.75)) == 191 and elo(0.5) == 0
    assert prompts_per_pair(30, 3) == 10 and prompts_per_pair(8, 2) == 8
    line = PowerLine("harmlessness", "ppo", "base", 8, 0.6).text
    assert "won 60% on 8 prompts, within what this size cannot tell from chance" in line
    assert "would need 197 prompts" in line and "not even winning every comparison" in line
    assert "only a win rate beyond 75% (Elo ±189)" in PowerLine("h", "a", "b", 32, 0.6).text
    assert "beyond what this size can detect" in PowerLine("h", "a", "b", 400, 0.7).text
    tiny = PowerLine("h", "a", "b", 30, 0.5003).text
    assert "an effect of this size (50.0%) would need more than 100,000 prompts" in tiny
    assert PowerLine("h", "a", "b", 30, 0.5).text.endswith("no effect was measured")


def result(words=(40.0, 38.0, 20.0), low=-50.0, high=60.0) -> TournamentResult:
    policies = ["base", "sft", "ppo"]
    matrix = [[None, 0.5, 0.45], [0.5, None, 0.4], [0.55, 0.6, None]]
    ratings = [
        {"name": "ppo", "elo": 30.0, "low": low, "high": high, "comparisons": 16},
        {"name": "base", "elo": 0.0, "low": 0.0, "high": 0.0, "comparisons": 16},
        {"name": "sft", "elo": -5.0, "low": -40.0, "high": 30.0, "comparisons": 16},
    ]
    axes = [AxisResult("harmlessness", ratings, matrix, {}, 24)]
    stats = [
        PolicyStats(n, n, w, r, 0.0, None, None)
        for n, w, r in zip(policies, words, (0.1, 0.1, 0.4))
    ]
    return TournamentResult(policies, [JudgeResult("logprob", axes, 0.2, "")], stats, [])


def test_the_change_summary_leads_with_the_judge_and_calls_out_length_drift():
    text = change_summary(result(), "ppo", "labels unverified: no labels")
    assert text.startswith("## What training changed\n\nlabels unverified: no labels")
    assert "- harmlessness: ppo vs base Elo +30 (95% -50 … +60); vs sft: wins 60%" in text
    assert "refusals on helpful prompts: base 10%, sft 10%, ppo 40%" in text
    assert "answer length: base 40.0 words → ppo 20.0 (-50%)" in text
    assert "ppo mostly changed its answer length** (shorter)" in text
    assert "harmlessness, ppo vs base: won 55% on 8 prompts" in text
    settled = change_summary(result(low=5.0), "ppo")
    assert "mostly changed its answer length" not in settled  # its rating moved too
    assert "mostly changed" not in change_summary(result(words=(40, 38, 39)), "ppo")
    assert [p.a for p in power_lines(result())] == ["sft", "ppo"]
