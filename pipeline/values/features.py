"""Pair features read from a model: per layer, the pooled hidden state of each answer in its
conversation, and their difference h(A) − h(B); with the human preference and the lengths
that the length controls need."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pipeline.core.errors import DatasetError
from pipeline.core.stats import LengthBaselines, chose_longer, length_control
from pipeline.data.preferences import Pair, gold_pairs, human_choice, read_pairs
from pipeline.data.store import Store
from pipeline.model.hidden import MAX_LENGTH, hidden_states, wanted_layers
from pipeline.model.loading import LoadedModel
from pipeline.model.states_cache import cached_states


@dataclass(frozen=True)
class LabelledPairs:
    """Pairs a person chose between (ties and unlabelled pairs left out): y = 1 when A was
    preferred."""

    pairs: tuple[Pair, ...]
    y: torch.Tensor

    @property
    def chose_longer(self) -> list[bool | None]:
        return [
            chose_longer("A" if label else "B", p.response_a, p.response_b)
            for p, label in zip(self.pairs, self.y.tolist())
        ]

    @property
    def length(self) -> LengthBaselines | None:
        """What answer length alone scores on these pairs (None: no lengths differ)."""
        return length_control([(s, False) for s in self.chose_longer if s is not None])

    @property
    def dlen(self) -> torch.Tensor:
        """Δ log length (words, +1) of A over B, per pair."""
        return torch.tensor(
            [
                math.log(len(p.response_a.split()) + 1) - math.log(len(p.response_b.split()) + 1)
                for p in self.pairs
            ]
        )


def pair_source(ref: str, human_pairs: list[tuple[str, str, str, str]]) -> list[Pair]:
    """'gold', 'human' (the pairs people labelled in the workspace, given as rows), or a
    pairs file or folder (a label run's folder holds its pairs too)."""
    if ref == "gold":
        return gold_pairs()
    if ref == "human":
        return [
            Pair(prompt, a, b, source="human", human=choice) for prompt, a, b, choice in human_pairs
        ]
    return read_pairs(ref)


def labelled(pairs: list[Pair], humans: dict[str, str]) -> LabelledPairs:
    """The pairs with a human A or B (from the store, else the pair's own label); identical
    answers are left out (there is nothing to prefer)."""
    kept, ys = [], []
    for pair in pairs:
        choice = human_choice(pair, humans)
        if choice in ("A", "B") and not pair.identical:
            kept.append(pair)
            ys.append(1 if choice == "A" else 0)
    if not kept:
        raise DatasetError(
            "None of these pairs has a human A or B label (ties and unlabelled "
            "pairs are left out); label some in the Preferences tab or use "
            "gold pairs or an HH-RLHF import."
        )
    return LabelledPairs(tuple(kept), torch.tensor(ys))


def labelled_in(ref: str, store: Store) -> LabelledPairs:
    """The human-labelled pairs `ref` names, with the workspace's own labels counted."""
    return labelled(pair_source(ref, store.human_pairs()), store.human_labels())


@dataclass(frozen=True)
class PairFeatures:
    """The pooled states of answer A and answer B per pair and layer, [pairs, layers,
    hidden], with the layer indices (0 = embeddings) and the pooling they were read with."""

    a: torch.Tensor
    b: torch.Tensor
    layers: tuple[int, ...]
    pooling: str

    @property
    def d(self) -> torch.Tensor:
        """h(A) − h(B)."""
        return self.a - self.b


def answer_states(
    loaded: LoadedModel,
    prompts: list[str],
    answers: list[str],
    pooling: str,
    layers: list[int] | None = None,
    batch_size: int = 8,
) -> torch.Tensor:
    """[rows, layers, hidden] pooled states of answers in their conversations; answers
    this model has read before come from the states cache."""
    _, wanted = wanted_layers(loaded.model, layers)

    def read(rows: list[int], at: list[int]) -> torch.Tensor:
        return hidden_states(
            loaded.model,
            loaded.tokenizer,
            [prompts[i] for i in rows],
            [answers[i] for i in rows],
            at,
            pooling,
            batch_size,
            MAX_LENGTH,
        )

    return cached_states(loaded, prompts, answers, pooling, wanted, MAX_LENGTH, read)


def pair_features(
    loaded: LoadedModel,
    pairs: tuple[Pair, ...] | list[Pair],
    pooling: str = "answer_mean",
    layers: list[int] | None = None,
    batch_size: int = 8,
) -> PairFeatures:
    """Both answers of every pair read in one batched pass: one forward per distinct (prompt,
    answer) — a tournament's answer meets every other policy's, and is read once."""
    rows = [(p.prompt, p.response_a) for p in pairs] + [(p.prompt, p.response_b) for p in pairs]
    distinct = list(dict.fromkeys(rows))
    read = answer_states(
        loaded, [q for q, _ in distinct], [a for _, a in distinct], pooling, layers, batch_size
    )
    where = {row: n for n, row in enumerate(distinct)}
    states = read[torch.tensor([where[row] for row in rows])]
    n = len(pairs)
    used = tuple(layers) if layers is not None else tuple(range(states.shape[1]))
    return PairFeatures(states[:n], states[n:], used, pooling)
