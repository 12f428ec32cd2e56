"""The labelling queue's orders and progress, by hand."""

import torch

from pipeline.data.preferences import Pair, gold_pairs
from pipeline.evaluation.labelling_queue import (
    MIN_FIT,
    fit_queue,
    next_pair,
    own_label,
    progress_text,
    waiting,
)
from pipeline.values.features import pair_source


def pairs_of(n: int) -> list[Pair]:
    return [
        Pair(
            f"Q{i}?",
            f"a long answer {i} with words" if i % 2 else f"a {i}",
            f"b {i}" if i % 2 else f"b answer {i} that is long",
            human="A",
        )
        for i in range(n)
    ]


def test_only_the_persons_own_labels_count_and_the_pair_on_screen_is_skipped():
    pairs = pairs_of(4)
    assert own_label(pairs[0], {}) is None  # its shipped label is not the person's
    swapped = Pair(pairs[1].prompt, pairs[1].response_b, pairs[1].response_a)
    assert own_label(pairs[1], {swapped.id: "A"}) == "B"
    assert waiting(pairs, {pairs[0].id: "A"}, current=pairs[1].id) == pairs[2:]
    assert next_pair(pairs, {p.id: "A" for p in pairs}) is None
    # the queue reads a pair set as every pair source is read (values.features.pair_source)
    assert len(pair_source("gold", [])) == len(gold_pairs())


def test_random_order_is_seeded_and_active_picks_the_least_certain_on_the_side_needed():
    pairs = pairs_of(8)
    assert next_pair(pairs, {}, "random", seed=3) == next_pair(pairs, {}, "random", seed=3)
    assert next_pair(pairs, {}, "active", scores=None, seed=3) == next_pair(
        pairs, {}, "random", seed=3
    )
    scores = {p.id: 0.9 - 0.05 * i for i, p in enumerate(pairs)}  # later pairs nearer 0.5
    # the person chose the longer answer twice: the next pair is one whose likely pick is shorter
    humans = {pairs[1].id: "A", pairs[3].id: "A"}  # odd pairs: A is the longer answer
    chosen = next_pair(pairs, humans, "active", scores)
    assert chosen == pairs[6]  # even pairs' A is shorter; of those left, 6 is nearest 0.5
    humans = {pairs[0].id: "A", pairs[2].id: "A"}  # chose the shorter twice
    assert next_pair(pairs, humans, "active", scores) == pairs[7]


def test_the_queue_probe_fits_after_enough_labels_and_says_how_it_agrees():
    g = torch.Generator().manual_seed(0)
    pairs = pairs_of(20)
    d = torch.randn(20, 8, generator=g)
    humans = {}
    for i, p in enumerate(pairs[: MIN_FIT - 1]):
        humans[p.id] = "AB"[i % 2]
    assert fit_queue(d, pairs, humans) is None
    assert "starts after 6 labels" in progress_text(pairs, humans, None)
    d[:, 0] = torch.tensor([3.0 if i % 2 == 0 else -3.0 for i in range(20)])
    for i, p in enumerate(pairs[:12]):
        humans[p.id] = "AB"[i % 2]
    fit = fit_queue(d, pairs, humans)
    assert fit.labels == 12 and len(fit.scores) == 20 and fit.compared == 12
    assert fit.scores[pairs[14].id] > 0.5 > fit.scores[pairs[15].id]  # it learned the sign
    text = progress_text(pairs, humans, fit)
    assert (
        text.startswith("12 of 20 labelled · probe agreement so far")
        and "cross-validated on 12" in text
    )
    assert fit_queue(d, pairs, humans, check=False).compared is None
