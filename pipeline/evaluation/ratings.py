"""Ratings from pairwise comparisons: Bradley–Terry strengths on the Elo scale, bootstrap
intervals over prompts, the win-rate matrix and the comparison schedule — pure and tested
against hand-computed cases.

An outcome is P(a is better than b) on one prompt, from a judge that read both orders
(1 = a wins, 0 = b wins, 0.5 = a tie), so soft labels count as fractional wins. Every pair of
policies that met gets a virtual half-win each way (`PSEUDO`): a policy that won every
comparison gets a large, finite rating instead of an infinite one.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

from pipeline.core.errors import DatasetError
from pipeline.core.seeds import stable_int

PSEUDO = 0.5
ELO = 400 / math.log(10)  # Elo points per unit of log-strength
ALL_PAIRS_UP_TO = 6  # above this many policies, a seeded random schedule


@dataclass(frozen=True)
class Outcome:
    prompt: str  # the prompt's id: the bootstrap resamples prompts
    a: str
    b: str
    score: float  # P(a better than b)


@dataclass(frozen=True)
class Rating:
    name: str
    elo: float  # relative to the reference policy (the first: the base), which is 0
    low: float  # 95% bootstrap interval over prompts
    high: float
    comparisons: int


def bradley_terry(
    outcomes: list[Outcome], players: list[str], iterations: int = 2000, tolerance: float = 1e-10
) -> dict[str, float]:
    """Log-strengths θ maximising Σ s·log σ(θa − θb) + (1 − s)·log σ(θb − θa) (plus the
    pseudo-wins), by Hunter's MM iterations; θ of players[0] is 0."""
    index = {p: n for n, p in enumerate(players)}
    k = len(players)
    wins = [[0.0] * k for _ in range(k)]
    for o in outcomes:
        i, j = index[o.a], index[o.b]
        wins[i][j] += o.score
        wins[j][i] += 1 - o.score
    games = [[wins[i][j] + wins[j][i] for j in range(k)] for i in range(k)]
    for i, j in itertools.permutations(range(k), 2):
        if games[i][j]:
            wins[i][j] += PSEUDO
    games = [[wins[i][j] + wins[j][i] for j in range(k)] for i in range(k)]
    unplayed = [players[i] for i in range(k) if not any(games[i])]
    if unplayed:
        raise DatasetError(f"No comparison involves {', '.join(unplayed)}: it cannot be rated.")
    strength = [1.0] * k
    for _ in range(iterations):
        new = []
        for i in range(k):
            denominator = sum(
                games[i][j] / (strength[i] + strength[j]) for j in range(k) if games[i][j]
            )
            new.append(sum(wins[i]) / denominator)
        scale = new[0]
        new = [s / scale for s in new]
        done = max(abs(math.log(a) - math.log(b)) for a, b in zip(new, strength)) < tolerance
        strength = new
        if done:
            break
    return {p: math.log(strength[index[p]]) for p in players}


def elo_scores(outcomes: list[Outcome], players: list[str]) -> dict[str, float]:
    return {p: ELO * theta for p, theta in bradley_terry(outcomes, players).items()}


def bootstrap_elo(
    outcomes: list[Outcome], players: list[str], samples: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95% intervals of each policy's Elo, resampling prompts with replacement (a prompt's
    comparisons stay together: they share its difficulty)."""
    by_prompt: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_prompt.setdefault(o.prompt, []).append(o)
    prompts = sorted(by_prompt)
    rng = random.Random(stable_int("elo-bootstrap", seed))
    draws: dict[str, list[float]] = {p: [] for p in players}
    for _ in range(samples):
        sample = [o for q in rng.choices(prompts, k=len(prompts)) for o in by_prompt[q]]
        try:
            scores = elo_scores(sample, players)
        except DatasetError:  # a policy absent from this resample: skip it
            continue
        for p in players:
            draws[p].append(scores[p])
    out = {}
    for p in players:
        values = sorted(draws[p])
        if not values:
            out[p] = (math.nan, math.nan)
            continue
        out[p] = (values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))])
    return out


def rate(
    outcomes: list[Outcome], players: list[str], samples: int = 1000, seed: int = 0
) -> list[Rating]:
    """Each policy's Elo (the first policy is 0) with its bootstrap interval, best first."""
    point = elo_scores(outcomes, players)
    intervals = bootstrap_elo(outcomes, players, samples, seed)
    counts = {p: sum(p in (o.a, o.b) for o in outcomes) for p in players}
    return sorted(
        (Rating(p, point[p], *intervals[p], counts[p]) for p in players), key=lambda r: -r.elo
    )


def win_matrix(outcomes: list[Outcome], players: list[str]) -> list[list[float | None]]:
    """Row i, column j: the mean score of i against j (None where they never met)."""
    totals: dict[tuple[str, str], list[float]] = {}
    for o in outcomes:
        totals.setdefault((o.a, o.b), []).append(o.score)
        totals.setdefault((o.b, o.a), []).append(1 - o.score)
    return [
        [(sum(totals[a, b]) / len(totals[a, b])) if (a, b) in totals else None for b in players]
        for a in players
    ]


def schedule(players: list[str], prompts: list[str], seed: int = 0) -> list[tuple[str, str, str]]:
    """(prompt, a, b) comparisons: every pair of policies on every prompt for up to
    `ALL_PAIRS_UP_TO` policies; above, per prompt as many random pairs as there are policies
    (each policy in two comparisons on average), seeded by the prompt — every pair meets
    across enough prompts."""
    pairs = list(itertools.combinations(players, 2))
    if len(players) <= ALL_PAIRS_UP_TO:
        return [(q, a, b) for q in prompts for a, b in pairs]
    out = []
    for q in prompts:
        chosen = random.Random(stable_int("schedule", seed, q)).sample(pairs, len(players))
        out += [(q, a, b) for a, b in chosen]
    return out
