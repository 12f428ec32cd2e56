"""Rows that begin alike, packed into one row: their common start once, then each row's own
rest, every rest attending to the start and to itself only, at the positions it would have
alone. A causal model's hidden state at each of a row's tokens is then the one the row gives
on its own (up to rounding), with the start computed once and no padding, gradients
included: no key-value cache is carried between passes, so training runs through it.

The preference model reads the end of (prompt, answer) rows, which come in groups with one
prompt (a training pair's two answers, a tournament's answers to one prompt), and every
chat-rendered row starts with the same system prompt and template opening (PPO's rollouts);
that start is a fifth to a third of a tiny run's rows. Packed, a PM training step of the
embedded model took 1.48–1.61 s against 1.77–1.80 s (4 pairs of ~110-token rows, 2-core
AMD EPYC).

The mask is a [row, 1, query, key] boolean one, which SDPA attention takes as it is; it
stands in for the model's own causal mask, so packing is offered only to the decoders whose
attention is a plain causal softmax (`packs`). Attention then covers the whole square of a
packed row (a causal pass skips the upper half), so rows are packed up to `WIDTH` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pipeline.model.scoring import common_start
from pipeline.model.shared_attention import FAMILIES

PAD_SEGMENT = -1  # a pad attends to itself only (a row of the softmax must not be empty)
START_SEGMENT = 0
# tokens of a packed row made of many rows: at ~500 a row's attention over its whole square
# costs ~a tenth of its layers' products, against the start and padding it saves
WIDTH = 512


@dataclass(frozen=True)
class Packed:
    """One packed row: its tokens, each token's position and segment (START_SEGMENT for the
    common start, k + 1 for the rest of row k), and the columns of each row's tokens."""

    ids: list[int]
    positions: list[int]
    segments: list[int]
    places: list[list[int]]

    def rows(self) -> list[list[int]]:
        """The rows packed, as they were."""
        return [[self.ids[c] for c in place] for place in self.places]


def packs(model: Any) -> bool:
    """Whether `model` takes a packed row's mask (SDPA attention, a plain causal decoder)."""
    config = model.config
    return (
        config._attn_implementation == "sdpa"
        and config.model_type in FAMILIES
        and getattr(config, "sliding_window", None) is None
    )


def packed(rows: list[list[int]]) -> Packed:
    """`rows` as one packed row; each row keeps at least its last token as its own."""
    start = min(common_start(rows[0], r, len(r) - 1) for r in rows)
    ids, positions, segments = list(rows[0][:start]), list(range(start)), [START_SEGMENT] * start
    places = []
    for k, row in enumerate(rows):
        rest = row[start:]
        places.append(list(range(start)) + list(range(len(ids), len(ids) + len(rest))))
        ids += rest
        positions += range(start, start + len(rest))
        segments += [k + 1] * len(rest)
    return Packed(ids, positions, segments, places)


def pack(rows: list[list[int]], width: int = WIDTH) -> list[Packed]:
    """Consecutive rows packed while a packed row stays within `width` tokens (a longer row
    is one of its own). A group's packed width is its rows' tokens less the common start
    once for every row after the first, kept as the group grows (as `packed` finds it)."""
    groups: list[list[list[int]]] = []
    start = tokens = 0  # the last group's common start and its rows' tokens
    for row in rows:
        if groups:
            joined = min(start, common_start(groups[-1][0], row, len(row) - 1))
            if tokens + len(row) - len(groups[-1]) * joined <= width:
                groups[-1].append(row)
                start, tokens = joined, tokens + len(row)
                continue
        groups.append([row])
        start, tokens = len(row) - 1, len(row)
    return [packed(group) for group in groups]


@dataclass(frozen=True)
class Batch:
    """Packed rows left-padded into model inputs, and where each row they hold lies."""

    inputs: dict[str, torch.Tensor]  # input_ids, attention_mask, position_ids
    places: list[tuple[int, list[int]]]  # per row packed, in order: (batch row, its columns)

    def ends(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch row, column) of each row's last token: `hidden[batch.ends()]`."""
        return torch.tensor([r for r, _ in self.places]), torch.tensor(
            [c[-1] for _, c in self.places]
        )

    def last(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch row, column) of each row's last `n` tokens, [rows, n] each; a row with
        fewer repeats its first column in front (a place whose value the caller masks)."""
        return torch.tensor([[r] * n for r, _ in self.places]), torch.tensor(
            [[c[0]] * (n - len(c)) + c[-n:] for _, c in self.places]
        )


def batch(rows: list[Packed], pad: int) -> Batch:
    """Packed rows as one left-padded batch of model inputs."""
    width = max(len(p.ids) for p in rows)

    def padded(values: list[list[int]], fill: int) -> torch.Tensor:
        return torch.tensor([[fill] * (width - len(v)) + v for v in values])

    segments = padded([p.segments for p in rows], PAD_SEGMENT)
    query, key = segments[:, :, None], segments[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    seen = causal & (key != PAD_SEGMENT) & ((key == START_SEGMENT) | (key == query))
    seen |= torch.eye(width, dtype=torch.bool) & (query == PAD_SEGMENT)
    places = [
        (r, [width - len(p.ids) + c for c in place])
        for r, p in enumerate(rows)
        for place in p.places
    ]
    inputs = {
        "input_ids": padded([p.ids for p in rows], pad),
        "attention_mask": seen[:, None],
        "position_ids": padded([p.positions for p in rows], 0),
    }
    return Batch(inputs, places)
