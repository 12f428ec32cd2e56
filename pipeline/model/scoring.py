"""Batched log-probability scoring of continuations, without generating.

Two questions a model answers here: "how likely is each option as the next token after
this context?" (A/B feedback reads the option tokens' log-probabilities) and "how likely
is this whole answer after this prompt?" (sequence log-likelihood, for DPO checks and the
policy's own preference).

Option scoring is organised around shared prefixes. An A/B question asked under K
principles has the same conversation and answers in front of each principle, so callers
split each context into a `prefix` (shared) and a `suffix` (principle + answer cue). Each
distinct prefix runs once; its KV cache is copied to every row that starts with it, and
only the short suffixes run per row, so K principles cost one long pass plus K short ones.
Rows are left-padded at both levels — [pad…][prefix][pad…][suffix] — so every row's last
token sits in the last column and only that position's logits are computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, cast

import torch

from pipeline.model.loading import LoadedModel
from pipeline.model.states_cache import cached_values

# one layer of segments for `layered_forward`: the segments, and which segment of the layer
# before each continues (None for the first layer)
Layer = tuple[list[tuple[int, ...]], list[int] | None]


@dataclass(frozen=True)
class ScoreItem:
    """One context to score: `prefix` tokens (shared with other items) then `suffix`
    tokens (this item's own, at least one)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.suffix:
            raise ValueError("a score item needs at least one suffix token")

    def flattened(self) -> "ScoreItem":
        """The same context with no shared prefix (the baseline: one full pass)."""
        return ScoreItem((), self.prefix + self.suffix)


@dataclass(frozen=True)
class SequenceScore:
    logprob: float  # sum of the continuation's token log-probabilities
    tokens: int

    @property
    def mean(self) -> float:
        return self.logprob / self.tokens if self.tokens else 0.0


def left_pad(rows: list[tuple[int, ...]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and their attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + list(r) for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def _at_least_fp32(logits: torch.Tensor) -> torch.Tensor:
    """Logits on the CPU in fp32, or wider if the model computes wider."""
    return logits.to(device="cpu", dtype=torch.promote_types(logits.dtype, torch.float32))


def chunks(
    groups: dict[tuple[int, ...], list[int]], rows_per_chunk: int
) -> list[list[tuple[tuple[int, ...], list[int]]]]:
    """Groups (prefix → item indices) packed into chunks of at most `rows_per_chunk` rows;
    a group larger than a chunk is split, repeating its prefix."""
    chunks: list[list[tuple[tuple[int, ...], list[int]]]] = [[]]
    room = rows_per_chunk
    for prefix, indices in groups.items():
        for start in range(0, len(indices), rows_per_chunk):
            part = indices[start : start + rows_per_chunk]
            if len(part) > room:
                chunks.append([])
                room = rows_per_chunk
            chunks[-1].append((prefix, part))
            room -= len(part)
    return [c for c in chunks if c]


MIN_SHARED_PREFIX = 16


def common_start(a: tuple[int, ...] | list[int], b: tuple[int, ...] | list[int], limit: int) -> int:
    """How many tokens `a` and `b` begin with alike, at most `limit`."""
    n, limit = 0, min(limit, len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def shared_prefix_length(rows: list[tuple[int, ...]] | list[list[int]]) -> int:
    """Tokens at the start of every row, leaving each row at least one token of its own;
    0 when too few to be worth a separate pass."""
    limit = min(len(r) for r in rows) - 1
    n = min(common_start(rows[0], r, limit) for r in rows)
    return n if n >= MIN_SHARED_PREFIX else 0


def layered_forward(
    forward: Callable[..., Any],
    layers: list[Layer],
    pad: int,
    device,
) -> tuple[Any, torch.Tensor]:
    """Segments stacked in layers: layer 0's segments start rows of their own; segment i of
    layer k continues segment `parents[i]` of layer k − 1 (its keys and values are copied
    to it), so a segment many rows start with runs once. Every segment is left-padded:
    [pad…][layer 0][pad…][layer 1]…; an empty one is a masked pad. `forward(**inputs)` runs
    the model once per layer. Returns the last layer's output and its own mask."""
    from transformers import DynamicCache

    cache = DynamicCache() if len(layers) > 1 else None
    mask = torch.zeros((len(layers[0][0]), 0), dtype=torch.long)
    for k, (segments, parents) in enumerate(layers):
        if k:
            assert cache is not None and parents is not None  # layer k > 0 continues one
            index = torch.tensor(parents)
            cache.reorder_cache(cast(torch.LongTensor, index.to(device)))
            mask = mask[index]
        ids, own = left_pad([s or (pad,) for s in segments], pad)
        own = torch.where(torch.tensor([[bool(s)] for s in segments]), own, 0)
        full = torch.cat([mask, own], dim=-1)
        positions = (full.cumsum(-1) - 1).clamp(min=0)[:, mask.shape[1] :]
        out = forward(
            input_ids=ids.to(device),
            attention_mask=full.to(device),
            position_ids=positions.to(device),
            past_key_values=cache,
            use_cache=cache is not None,
        )
        mask = full
    return out, own


def prefixed_forward(
    forward: Callable[..., Any],
    prefixes: list[tuple[int, ...]],
    row_prefix: list[int],
    suffixes: list[tuple[int, ...]],
    pad: int,
    device,
) -> tuple[Any, torch.Tensor]:
    """Each distinct prefix run once, its keys and values copied to every row that starts
    with it (`row_prefix[i]` names row i's), then every row's suffix on top. What all the
    prefixes start with (a system prompt, a judging template) runs once more for all of
    them. Returns the suffix pass's output and its mask."""
    filled = [p for p in prefixes if p]
    if not filled:
        return layered_forward(forward, [(suffixes, None)], pad, device)
    stem = shared_prefix_length(filled) if len(filled) > 1 else 0
    layers: list[Layer] = [(prefixes, None)]
    if stem:  # an empty prefix continues an empty start, not the stem
        starts = [filled[0][:stem]] + ([()] if len(filled) < len(prefixes) else [])
        layers = [(starts, None), ([p[stem:] for p in prefixes], [0 if p else 1 for p in prefixes])]
    return layered_forward(forward, layers + [(suffixes, row_prefix)], pad, device)


def _last_logprobs(
    loaded: LoadedModel,
    prefixes: list[tuple[int, ...]],
    row_prefix: list[int],
    suffixes: list[tuple[int, ...]],
) -> torch.Tensor:
    """Next-token log-probabilities after each row's prefix + suffix, [rows, vocab]."""
    out, _ = prefixed_forward(
        lambda **inputs: loaded.model(**inputs, logits_to_keep=1),
        prefixes,
        row_prefix,
        suffixes,
        loaded.tokenizer.pad_token_id,
        loaded.device,
    )
    return torch.log_softmax(_at_least_fp32(out.logits[:, -1, :]), dim=-1)


@torch.inference_mode()
def option_logprobs(
    loaded: LoadedModel,
    items: list[ScoreItem],
    options: list[tuple[int, ...]],
    batch_size: int = 16,
) -> list[list[float]]:
    """For each item, log P(next token is one of option k's tokens) for every option k.

    An option may be spelled by several tokens (`A`, ` A`); their probabilities add up.
    Items sharing a prefix share its forward pass (see the module docstring); prefixes are
    taken shortest first, so the prefixes padded together are of similar length.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in sorted(range(len(items)), key=lambda i: len(items[i].prefix)):
        groups.setdefault(items[i].prefix, []).append(i)
    results: list[list[float]] = [[] for _ in items]
    option_index = [torch.tensor(sorted(set(o))) for o in options]
    for chunk in chunks(groups, batch_size):
        prefixes = [prefix for prefix, _ in chunk]
        rows = [(p, i) for p, (_, indices) in enumerate(chunk) for i in indices]
        logprobs = _last_logprobs(
            loaded, prefixes, [p for p, _ in rows], [items[i].suffix for _, i in rows]
        )
        per_option = torch.stack([logprobs[:, o].logsumexp(-1) for o in option_index], dim=-1)
        for (_, i), values in zip(rows, per_option.tolist()):
            results[i] = values
    return results


@torch.inference_mode()
def sequence_logprobs(
    loaded: LoadedModel,
    contexts: list[list[int]],
    continuations: list[list[int]],
    batch_size: int = 8,
) -> list[SequenceScore]:
    """Log-likelihood of each continuation after its context (teacher forcing), kept in the
    states cache (the model's files and the exact ids fix a score): the gold pairs' margins
    that every values report and judge board reads are computed once per model."""
    if len(contexts) != len(continuations):
        raise ValueError("one continuation per context")
    if any(not c for c in contexts):
        raise ValueError("every continuation needs at least one context token")

    def score(rows: list[int]) -> list[list]:
        computed = teacher_forced(
            loaded, [contexts[i] for i in rows], [continuations[i] for i in rows], batch_size
        )
        return [[s.logprob, s.tokens] for s in computed]

    keys = [["logprob", c, k] for c, k in zip(contexts, continuations)]
    return [SequenceScore(*v) for v in cached_values(loaded, keys, "logprob", score)]


def teacher_forced(
    loaded: LoadedModel,
    contexts: list[list[int]],
    continuations: list[list[int]],
    batch_size: int,
) -> list[SequenceScore]:
    """`sequence_logprobs` computed by the model. Rows of alike length share a batch
    (padding is computed like any token); they are left-padded so every continuation ends in
    the last column, and only the logits of the last (longest continuation + 1) positions
    are computed."""
    model, device, pad = loaded.model, loaded.device, loaded.tokenizer.pad_token_id
    order = sorted(range(len(contexts)), key=lambda i: len(contexts[i]) + len(continuations[i]))
    scores: dict[int, SequenceScore] = {}
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ctx, cont = [contexts[i] for i in rows], [continuations[i] for i in rows]
        ids, mask = left_pad([tuple(a + b) for a, b in zip(ctx, cont)], pad)
        longest = max(len(c) for c in cont)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            logits_to_keep=longest + 1,
        )
        logits = _at_least_fp32(out.logits[:, :-1, :])
        targets = ids[:, ids.shape[1] - longest :].to(logits.device)
        # log-softmax at the targets only: no second [rows, tokens, vocab] tensor
        picked = logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)
        for row, (index, c) in enumerate(zip(rows, cont)):
            scores[index] = SequenceScore(picked[row, longest - len(c) :].sum().item(), len(c))
    return [scores[i] for i in range(len(contexts))]
