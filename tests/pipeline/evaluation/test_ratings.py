"""Ratings maths on hand-made outcomes."""

import itertools
import math

import pytest

from pipeline.core.errors import DatasetError
from pipeline.evaluation.ratings import (
    Outcome,
    bootstrap_elo,
    elo_scores,
    rate,
    schedule,
    win_matrix,
)


def test_two_players_rate_by_their_win_ratio_with_the_pseudo_wins():
    # A wins 3 of 4: with half a virtual win each way, 3.5 : 1.5
    outcomes = [Outcome(f"q{i}", "A", "B", s) for i, s in enumerate([1, 1, 1, 0])]
    elo = elo_scores(outcomes, ["B", "A"])
    assert elo["B"] == 0
    assert elo["A"] == pytest.approx(400 * math.log10(3.5 / 1.5), abs=1e-6)  # 147.19


def test_a_cyclic_round_robin_rates_everyone_equal():
    outcomes = [Outcome("q", "A", "B", 1), Outcome("q", "B", "C", 1), Outcome("q", "C", "A", 1)]
    assert all(abs(v) < 1e-6 for v in elo_scores(outcomes, ["A", "B", "C"]).values())


def test_a_transitive_round_robin_is_evenly_spaced_at_the_hand_solved_gap():
    # A beats B, A beats C, B beats C. With pseudo-wins: wins A 3, B 2, C 1, two games per
    # pair. By symmetry strengths are r², r, 1, and A's MM equation reads
    # 3 = 2r/(r + 1) + 2r²/(r² + 1)  →  r ≈ 2.1304
    low, high = 1.0, 4.0
    for _ in range(60):
        r = (low + high) / 2
        low, high = (r, high) if 2 * r / (r + 1) + 2 * r * r / (r * r + 1) < 3 else (low, r)
    outcomes = [Outcome("q", "A", "B", 1), Outcome("q", "A", "C", 1), Outcome("q", "B", "C", 1)]
    elo = elo_scores(outcomes, ["C", "B", "A"])
    gap = 400 * math.log10(r)
    assert elo["B"] == pytest.approx(gap, abs=1e-4) and elo["A"] == pytest.approx(2 * gap, abs=1e-4)
    assert gap == pytest.approx(131.4, abs=0.1)


def test_soft_labels_count_as_fractional_wins_and_ties_as_halves():
    soft = elo_scores([Outcome("q1", "A", "B", 0.75), Outcome("q2", "A", "B", 0.75)], ["B", "A"])
    hard = elo_scores([Outcome("q1", "A", "B", 1), Outcome("q2", "A", "B", 0.5)], ["B", "A"])
    assert soft["A"] == pytest.approx(hard["A"]) and soft["A"] > 0
    assert elo_scores([Outcome("q", "A", "B", 0.5)], ["A", "B"])["B"] == pytest.approx(0)


def test_the_bootstrap_resamples_prompts_and_is_seeded():
    outcomes = [Outcome(f"q{i}", "A", "B", 0.75 + 0.2 * math.sin(i)) for i in range(20)]
    low, high = bootstrap_elo(outcomes, ["B", "A"], samples=300, seed=1)["A"]
    point = elo_scores(outcomes, ["B", "A"])["A"]
    assert 0 < low < point < high
    assert bootstrap_elo(outcomes, ["B", "A"], samples=300, seed=1)["A"] == (low, high)
    assert bootstrap_elo(outcomes, ["B", "A"], samples=300, seed=2)["A"] != (low, high)
    ratings = rate(outcomes, ["B", "A"], samples=100)
    assert [r.name for r in ratings] == ["A", "B"] and ratings[1].elo == 0
    assert ratings[0].comparisons == 20


def test_the_win_matrix_reads_both_directions():
    outcomes = [Outcome("q1", "A", "B", 1), Outcome("q2", "B", "A", 0.25)]
    m = win_matrix(outcomes, ["A", "B", "C"])
    assert m[0][1] == pytest.approx((1 + 0.75) / 2) and m[1][0] == pytest.approx(0.125)
    assert m[0][2] is None and m[0][0] is None


def test_a_policy_never_compared_cannot_be_rated():
    with pytest.raises(DatasetError, match="No comparison involves C"):
        elo_scores([Outcome("q", "A", "B", 1)], ["A", "B", "C"])


def test_the_schedule_covers_every_pair_and_is_seeded():
    assert schedule(["a", "b", "c"], ["q1", "q2"]) == [
        ("q1", "a", "b"),
        ("q1", "a", "c"),
        ("q1", "b", "c"),
        ("q2", "a", "b"),
        ("q2", "a", "c"),
        ("q2", "b", "c"),
    ]
    players = [f"p{i}" for i in range(8)]
    prompts = [f"q{i}" for i in range(40)]
    plan = schedule(players, prompts, seed=3)
    assert len(plan) == 8 * 40
    assert {frozenset((a, b)) for _, a, b in plan} == {
        frozenset(p) for p in itertools.combinations(players, 2)
    }
    assert schedule(players, prompts, seed=3) == plan and schedule(players, prompts, seed=4) != plan
