"""The labelling queue: which pair a person labels next, from any pair set (the gold pairs,
an HH-RLHF or trl import, a `pairs` run, a label run), and how far they are.

Orders: *active* — a probe fitted on the labels given so far (at one layer, refitted every
few labels) scores every unlabelled pair, and the next one is the pair it is least certain
about, drawn from the side (the probe's pick is the longer or the shorter answer) that the
labels so far have fewer of, so the labels do not end up decided by length; before a probe
can be fitted, and in *random* order, a seeded shuffle. Only the person's own labels in the
workspace count as labelled: a pair's shipped label (gold, an import) is what is checked
against, not a label the person gave.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from pipeline.cai.trust import ai_agrees
from pipeline.core.errors import DatasetError
from pipeline.core.stats import chose_longer, wilson_interval
from pipeline.data.preferences import Pair, Preference, human_choice, pair_id
from pipeline.values import probes

ORDERS = ("active", "random")
MIN_FIT = 6  # labels (both A and B among them) before a probe orders the queue
REFIT_EVERY = 3  # new labels between refits


def own_label(pair: Pair, humans: dict[str, str]) -> str | None:
    """The person's own label for the pair (either order of the answers), never the label it
    shipped with."""
    if pair.id in humans:
        return humans[pair.id]
    swapped = humans.get(pair_id(pair.prompt, pair.response_b, pair.response_a))
    return {"A": "B", "B": "A"}.get(swapped, swapped) if swapped else None


def waiting(pairs: list[Pair], humans: dict[str, str], current: str = "") -> list[Pair]:
    """Pairs the person has not labelled (identical answers and the pair on screen left out)."""
    return [
        p for p in pairs if own_label(p, humans) is None and not p.identical and p.id != current
    ]


def shuffled(pairs: list[Pair], seed: int = 0) -> list[Pair]:
    order = list(pairs)
    random.Random(seed).shuffle(order)
    return order


def short_side_needed(pairs: list[Pair], humans: dict[str, str]) -> bool:
    """Whether the labels so far have fewer pairs where the person chose the shorter answer
    than the longer one (so the next pair should be one whose likely pick is shorter)."""
    sides = [
        s
        for p in pairs
        if (choice := own_label(p, humans)) in ("A", "B")
        and (s := chose_longer(choice, p.response_a, p.response_b)) is not None
    ]
    return sum(sides) > len(sides) - sum(sides)


def next_pair(
    pairs: list[Pair],
    humans: dict[str, str],
    order: str = "active",
    scores: dict[str, float] | None = None,
    current: str = "",
    seed: int = 0,
) -> Pair | None:
    """The pair to label next, or None when every pair of the set has the person's label.
    `scores`: the probe's P(A) per pair id (active order; None before a fit)."""
    todo = waiting(pairs, humans, current)
    if not todo:
        return None
    if order != "active" or not scores:
        return shuffled(todo, seed)[0]
    scored = [p for p in todo if p.id in scores]
    if not scored:
        return shuffled(todo, seed)[0]
    want_shorter = short_side_needed(pairs, humans)
    side = [
        p
        for p in scored
        if chose_longer("A" if scores[p.id] > 0.5 else "B", p.response_a, p.response_b)
        is (not want_shorter)
    ]
    return min(side or scored, key=lambda p: (abs(scores[p.id] - 0.5), p.id))


@dataclass(frozen=True)
class QueueFit:
    """The queue's probe: P(A) for every pair of the set, and its cross-validated agreement
    on the labels it was fitted on (None with too few)."""

    labels: int
    scores: dict[str, float]
    agreeing: int | None = None
    compared: int | None = None

    @property
    def text(self) -> str:
        if not self.compared or self.agreeing is None:
            return ""
        low, high = wilson_interval(self.agreeing, self.compared)
        return (
            f"probe agreement so far {self.agreeing / self.compared:.0%} ({low:.0%}–"
            f"{high:.0%}, cross-validated on {self.compared})"
        )


def labelled_rows(pairs: list[Pair], humans: dict[str, str]) -> tuple[list[int], list[int]]:
    """(indices of pairs with the person's A or B, 1 where they chose A)."""
    rows = [(i, own_label(p, humans)) for i, p in enumerate(pairs)]
    kept = [(i, c) for i, c in rows if c in ("A", "B") and not pairs[i].identical]
    return [i for i, _ in kept], [1 if c == "A" else 0 for _, c in kept]


def fit_queue(
    d: torch.Tensor, pairs: list[Pair], humans: dict[str, str], check: bool = True
) -> QueueFit | None:
    """Fit the queue's probe on d [pairs, dim] (one layer) and the person's labels; None until
    there are MIN_FIT labels with both an A and a B. `check`: also cross-validate it."""
    index, ys = labelled_rows(pairs, humans)
    if len(index) < MIN_FIT or len(set(ys)) < 2:
        return None
    y = torch.tensor(ys)
    w = probes.logistic(d[index], y)
    p = torch.sigmoid(d @ w).tolist()
    folds = min(5, len(index))
    if not check:
        return QueueFit(len(index), {pair.id: p[i] for i, pair in enumerate(pairs)})
    try:
        checked = probes.cross_validate(d[index], y, "logistic", folds)
    except DatasetError:
        return QueueFit(len(index), {pair.id: p[i] for i, pair in enumerate(pairs)})
    return QueueFit(
        len(index),
        {pair.id: p[i] for i, pair in enumerate(pairs)},
        sum(checked.correct),
        len(checked.correct),
    )


def progress_text(pairs: list[Pair], humans: dict[str, str], fit: QueueFit | None) -> str:
    """'12 of 40 labelled · probe agreement so far 83% (61–95%, …)'."""
    done = sum(own_label(p, humans) is not None for p in pairs if not p.identical)
    total = sum(not p.identical for p in pairs)
    parts = [f"{done} of {total} labelled"]
    if fit and fit.text:
        parts.append(fit.text)
    elif done < MIN_FIT:
        parts.append(f"the active order starts after {MIN_FIT} labels (an A and a B among them)")
    return " · ".join(parts)


VIEWS = [
    "all",
    "most uncertain",
    "most position-biased",
    "AI vs human disagreements",
    "not yet labelled by a person",
]


def view_rows(prefs: list[Preference], humans: dict[str, str], view: str) -> list[Preference]:
    """The AI labels a person reviews, in the order a view of the Preferences table gives
    them: the least certain, the most position-biased, the ones people disagree with, or the
    ones nobody has labelled yet."""

    def human(p: Preference) -> str | None:
        return human_choice(p.pair, humans)

    if view == "most uncertain":
        return sorted(prefs, key=lambda p: abs(p.p_a - 0.5))
    if view == "most position-biased":
        return sorted(prefs, key=lambda p: -abs(p.p_a_ab - p.p_a_ba))
    if view == "AI vs human disagreements":
        return [p for p in prefs if ai_agrees(p.p_a, human(p)) is False]
    if view == "not yet labelled by a person":
        return [p for p in prefs if human(p) is None]
    return prefs
