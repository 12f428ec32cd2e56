"""Attention for a batch whose rows share a long start (the system prompt and a constitution's
few-shot chains: ~1,000 tokens in front of every chain step), with that start's keys and
values held once instead of once per row.

Each query attends to the shared start and to its own row's keys in two parts, and the two
are merged by their log-sum-exp: the same softmax over the same keys, in a different order of
summation. Without it, every row of the KV cache held its own copy of the start (16 rows ×
~1,000 tokens: ~0.7 GB of the embedded model's keys and values, copied in at every call) and
every decoded token read all the copies; a batch-16 chain step spent about a quarter of its
time there (measured: bench/chains.py, docs/benchmarks.md).

`shared_start(layers)` sets the start's keys and values for the forward passes inside it (of
this thread: a context variable); outside it, `attention` is transformers' SDPA attention
unchanged, but for one thing:

fp32 under autocast. Training on a CPU with bf16 products (`precision: auto` on a CPU with
`avx512_bf16`) autocasts SDPA to bf16 too, and the CPU flash kernel is slower in bf16 than in
fp32 at a training batch's lengths: measured on a 2-core AMD EPYC (Zen 4), forward and
backward, 9 heads: 4 rows × 80 tokens (a PPO minibatch) 6.3 ms against 2.0 ms, 8 × 160
25.4 against 17.0, 8 × 320 60.2 against 57.0. So under CPU autocast attention takes fp32
inputs (the projections around it still multiply in bf16), exact where bf16 rounded. A PPO
update of the embedded model took 1.29 s → 1.12 s (mean of four interleaved pairs).
`load_model` installs it on every CPU model. CPU only (the flash kernel that returns the
log-sum-exp is the CPU one), and only for decoders on SDPA attention that attend to every
earlier key (`applies`).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator

import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [1, heads, n, dim]

_start: ContextVar[Layers | None] = ContextVar("shared_start", default=None)
_replaced: list[Callable[..., Any]] = []  # the SDPA attention `attention` stands in for


# decoders whose attention is a plain causal softmax over every earlier key: the start's keys
# are visible to every query (a sliding window, or a softcap, would change that)
FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


def applies(model: Any) -> bool:
    """Whether a model's forward passes can take a shared start."""
    config = model.config
    return (
        next(model.parameters()).device.type == "cpu"
        and config._attn_implementation == "sdpa"
        and config.model_type in FAMILIES
        and getattr(config, "sliding_window", None) is None
    )


@contextmanager
def shared_start(layers: Layers) -> Iterator[None]:
    """Forward passes inside attend to `layers` (each [1, heads, start, dim]) before every
    row's own keys, whose positions count from the start's end."""
    install()
    token = _start.set(layers)
    try:
        yield
    finally:
        _start.reset(token)


def install() -> None:
    """Put `attention` in transformers' place of SDPA attention (once per process), keeping
    the function it replaces for the passes outside `shared_start`."""
    if not _replaced:
        from transformers import AttentionInterface
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        _replaced.append(ALL_ATTENTION_FUNCTIONS["sdpa"])
        AttentionInterface.register("sdpa", attention)


def attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: [batch, queries, heads, dim] out."""
    layers = _start.get()
    if layers is None and query.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):  # see fp32 under autocast, above
            q, k, v = query.float(), key.float(), value.float()
            return attention(module, q, k, v, attention_mask, dropout, scaling, **kwargs)
    if layers is None:
        return _replaced[0](
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    start_keys, start_values = layers[module.layer_idx]
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out_start, lse_start = start_part(query, start_keys, start_values, scale)
    out_own, lse_own = own_part(query, key, value, attention_mask, scale)
    top = torch.maximum(lse_start, lse_own)
    w_start, w_own = (lse_start - top).exp()[..., None], (lse_own - top).exp()[..., None]
    out = (out_start * w_start + out_own * w_own) / (w_start + w_own)
    return out.transpose(1, 2).contiguous(), None


def flash(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, log-sum-exp) of CPU flash attention; a boolean mask is made additive."""
    if mask is not None and mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=query.dtype).masked_fill_(~mask, float("-inf"))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, 0.0, causal, attn_mask=mask, scale=scale
    )
    return out, lse


def start_part(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row's queries against the one shared start (visible to all of them): the rows
    stacked as queries of a batch of one, grouped by key head."""
    rows, heads, queries, dim = query.shape
    groups = keys.shape[1]
    per = heads // groups
    stacked = (
        query.reshape(rows, groups, per, queries, dim)
        .permute(1, 0, 2, 3, 4)
        .reshape(1, groups, rows * per * queries, dim)
    )
    out, lse = flash(stacked, keys, values, None, scale)
    out = out.reshape(groups, rows, per, queries, dim).permute(1, 0, 2, 3, 4)
    lse = lse.reshape(groups, rows, per, queries).permute(1, 0, 2, 3)
    return out.reshape(rows, heads, queries, dim), lse.reshape(rows, heads, queries)


def own_part(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's queries against its own keys (padding and the future masked). A fully
    masked query (left padding) comes out 0 with a log-sum-exp of 0: finite, and never read,
    since no real query attends to padding."""
    rows, heads, queries, dim = query.shape
    groups = key.shape[1]
    per = heads // groups
    if mask is None and queries > 1:  # no padding: causal from the first key (empty cache)
        return flash(query, *repeated(key, value, per, queries), None, scale, causal=True)
    if queries == 1:  # one query per row: its heads' groups side by side as queries
        out, lse = flash(query.reshape(rows, groups, per, dim), key, value, mask, scale)
        return out.reshape(rows, heads, 1, dim), lse.reshape(rows, heads, 1)
    return flash(query, *repeated(key, value, per), mask, scale)


def repeated(
    key: torch.Tensor, value: torch.Tensor, per: int, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values repeated for the query heads that share them (the first `width`)."""
    key, value = key[:, :, :width], value[:, :, :width]
    if per == 1:
        return key, value
    return key.repeat_interleave(per, dim=1), value.repeat_interleave(per, dim=1)
