"""The model's representations: per-layer hidden states of (conversation, answer), pooled,
and forward hooks that add a vector at chosen layers — the one place that reads and steers
them (value probes, the representation judge, steering and RAHF build on it).

Layer index 0 is the embeddings (the first decoder layer's input), i (1…L) the output of
decoder layer i − 1, as the next layer receives it (no final norm) — read by our own hooks,
so a vector added at decoder layer j moves state j + 1 by exactly that vector. (transformers'
`output_hidden_states` records a layer's output before forward hooks, so it would not show
steering at the steered layer.)
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from pipeline.model.scoring import chunks, left_pad, prefixed_forward, shared_prefix_length

POOLINGS = ("answer_mean", "last")
MAX_LENGTH = 512  # tokens of a conversation read; longer ones lose their start


def backbone(model):
    """The transformer under the LM head (whatever adapter is active on it)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(inner, inner.base_model_prefix)


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder blocks, in order (Llama, Mistral, Qwen, Gemma… name them `layers`)."""
    layers = getattr(backbone(model), "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no `layers` list of decoder blocks.")
    return layers


def pad_id(tokenizer) -> int:
    """The padding token (the end-of-text token where the tokenizer has none)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def split_conversation(
    tokenizer, prompt: str, answer: str, max_length: int, system: str | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(head, answer) token ids of one chat-rendered row: the prompt up to the assistant
    header, then the answer's tokens (at least one), together cut from the left to
    `max_length`."""
    user = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    head = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        user + [{"role": "assistant", "content": answer}], tokenize=False
    )
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    start = len(tokenizer(head, add_special_tokens=False)["input_ids"])
    cut = max(0, len(ids) - max_length)
    split = min(max(start, cut), len(ids) - 1)
    return tuple(ids[cut:split]), tuple(ids[split:])


def encode_conversations(
    tokenizer,
    prompts: list[str],
    answers: list[str],
    max_length: int,
    systems: list[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chat-rendered (prompt, answer) rows, each under its system prompt when `systems` is
    given, left-padded and cut from the left to `max_length`: (ids, attention mask, answer
    mask). The answer mask marks the answer's tokens (what follows the rendered prompt and
    assistant header); every row's answer ends in the last column."""
    parts = [
        split_conversation(tokenizer, prompt, answer, max_length, systems[n] if systems else None)
        for n, (prompt, answer) in enumerate(zip(prompts, answers))
    ]
    ids, mask = left_pad([head + tail for head, tail in parts], pad_id(tokenizer))
    answer = torch.zeros_like(mask)
    for i, (_, tail) in enumerate(parts):
        answer[i, mask.shape[1] - len(tail) :] = 1
    return ids, mask, answer


def wanted_layers(model, layers: list[int] | None) -> tuple[torch.nn.ModuleList, list[int]]:
    blocks = decoder_layers(model)
    wanted = list(layers) if layers is not None else list(range(len(blocks) + 1))
    if not all(0 <= i <= len(blocks) for i in wanted):
        raise ValueError(f"layers are 0 (embeddings) to {len(blocks)} (got {wanted}).")
    return blocks, wanted


def states_at(
    model, ids: torch.Tensor, mask: torch.Tensor, layers: list[int], keep_grad: bool = False
) -> torch.Tensor:
    """[layers, rows, tokens, hidden] of one left-padded batch, on the model's device; the
    pass stops at the deepest layer wanted. With `keep_grad`, a loss on them trains the
    model (call it with gradients on)."""
    blocks, wanted = wanted_layers(model, layers)
    device = next(model.parameters()).device
    with recorded_states(blocks, wanted, stop=True, keep_grad=keep_grad) as states:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        _read(
            model,
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
        )
    return torch.stack([states[i] for i in wanted])


def _read(model, **inputs) -> None:
    """One backbone pass under `recorded_states(…, stop=True)`: it ends where the deepest
    layer wanted is read, and the rest is not computed."""
    try:
        backbone(model)(**inputs)
    except _Enough:
        pass


def _prefixed_states(
    model,
    wanted: list[int],
    prefixes: list[tuple[int, ...]],
    row_prefix: list[int],
    suffixes: list[tuple[int, ...]],
    pad: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """([rows, layers, suffix tokens, hidden] in fp32 on the CPU, the suffix mask): each
    distinct prefix read once, its keys and values shared by the rows that start with it;
    both passes stop at the deepest layer wanted."""
    blocks = decoder_layers(model)
    device = next(model.parameters()).device
    # the prefix pass records too; the suffix pass, run last, overwrites what it recorded
    with recorded_states(blocks, wanted, stop=True) as states:
        _, mask = prefixed_forward(
            lambda **inputs: _read(model, **inputs), prefixes, row_prefix, suffixes, pad, device
        )
    return torch.stack([states[i] for i in wanted]).transpose(0, 1).float().cpu(), mask


def _in_input_order(order: list[int], pooled: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(pooled)[torch.argsort(torch.tensor(order))]


def _grouped_states(
    model,
    wanted: list[int],
    groups: dict[tuple[int, ...], list[int]],
    tails: list[tuple[int, ...]],
    pad: int,
    batch_size: int,
    pool: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Rows grouped by the prefix they share (prefix → row indices; row i's own tokens are
    `tails[i]`), read in chunks of `batch_size` rows, each prefix once per chunk; each
    chunk's [rows, layers, tail tokens, hidden] states and tail mask pooled by `pool`; the
    pooled rows returned in input order."""
    order, out = [], []
    for chunk in chunks(groups, batch_size):
        members = [(p, i) for p, (_, indices) in enumerate(chunk) for i in indices]
        stacked, mask = _prefixed_states(
            model,
            wanted,
            [head for head, _ in chunk],
            [p for p, _ in members],
            [tails[i] for _, i in members],
            pad,
        )
        order += [i for _, i in members]
        out.append(pool(stacked, mask))
    return _in_input_order(order, out)


@torch.no_grad()
def hidden_states(
    model,
    tokenizer,
    prompts: list[str],
    answers: list[str],
    layers: list[int] | None = None,
    pooling: str = "answer_mean",
    batch_size: int = 8,
    max_length: int = MAX_LENGTH,
) -> torch.Tensor:
    """Pooled hidden states, [rows, layers, hidden] in fp32 on the CPU: the mean over the
    answer's tokens (`answer_mean`) or the state at the conversation's last token (`last`),
    at each of `layers` (default: all, embeddings included).

    Answers to the same prompt (a pair's two, a tournament's K) share one pass over the
    rendered prompt: only their own tokens are computed per row, in batches of
    `batch_size` rows."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)} (got {pooling!r}).")
    if len(prompts) != len(answers):
        raise ValueError("one answer per prompt")
    _, wanted = wanted_layers(model, layers)
    parts = [split_conversation(tokenizer, q, a, max_length) for q, a in zip(prompts, answers)]
    by_head: dict[tuple[int, ...], list[int]] = {}
    for i in sorted(range(len(parts)), key=lambda i: len(parts[i][1])):
        by_head.setdefault(parts[i][0], []).append(i)
    # prompts whose longest answers are alike share a batch: the answers' padding is the cost
    groups = {
        head: by_head[head]
        for head in sorted(by_head, key=lambda h: (len(parts[by_head[h][-1]][1]), len(h)))
    }

    def pool(stacked: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        if pooling == "last":
            return stacked[:, :, -1]
        weights = answer[:, None, :, None].float()
        return (stacked * weights).sum(2) / weights.sum(2)

    tails = [tail for _, tail in parts]
    return _grouped_states(model, wanted, groups, tails, pad_id(tokenizer), batch_size, pool)


@torch.no_grad()
def prompt_states(
    model,
    tokenizer,
    conversations: list[list[dict[str, str]]],
    layers: list[int] | None = None,
    batch_size: int = 8,
) -> torch.Tensor:
    """[rows, layers, hidden]: the state at the last token of each rendered conversation,
    generation cue included — where the model decides how its answer begins.

    Conversations alike but for their last message (one instruction over many prompts)
    share one pass over the tokens they begin with; only each row's own tokens are computed
    per row, in batches of `batch_size` rows."""
    _, wanted = wanted_layers(model, layers)
    rows = [
        tuple(
            tokenizer(
                tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                add_special_tokens=False,
            )["input_ids"]
        )
        for c in conversations
    ]
    by_context: dict[str, list[int]] = {}
    for i in sorted(range(len(rows)), key=lambda i: len(rows[i])):
        by_context.setdefault(repr(conversations[i][:-1]), []).append(i)
    groups: dict[tuple[int, ...], list[int]] = {}
    tails: list[tuple[int, ...]] = list(rows)
    for indices in by_context.values():
        stem = shared_prefix_length([rows[i] for i in indices]) if len(indices) > 1 else 0
        groups.setdefault(rows[indices[0]][:stem], []).extend(indices)
        for i in indices:
            tails[i] = rows[i][stem:]
    return _grouped_states(
        model,
        wanted,
        groups,
        tails,
        pad_id(tokenizer),
        batch_size,
        lambda states, _: states[:, :, -1],
    )


class _Enough(Exception):
    """Raised from the deepest recorded layer to end a forward pass that has what it needs."""


@contextmanager
def recorded_states(
    blocks: torch.nn.ModuleList, wanted: list[int], stop: bool = False, keep_grad: bool = False
) -> Iterator[dict[int, torch.Tensor]]:
    """Fills a dict {index: [rows, tokens, hidden]} during a forward pass: index 0 from the
    first block's input, index i from block i − 1's output (after any steering hook, since
    these hooks are registered later). With `stop`, the pass ends (raising `_Enough`) once
    the deepest wanted layer is recorded; with `keep_grad` the states stay in the autograd
    graph (a loss on them trains what produced them)."""
    states: dict[int, torch.Tensor] = {}
    deepest = max(wanted)

    def kept(t: torch.Tensor) -> torch.Tensor:
        return t if keep_grad else t.detach()

    def keep_input(module, args, kwargs):
        states[0] = kept(args[0] if args else kwargs["hidden_states"])
        if stop and deepest == 0:
            raise _Enough()

    def keep_output(i: int):
        def keep(module, inputs, output):
            states[i] = kept(output[0] if isinstance(output, tuple) else output)
            if stop and i == deepest:
                raise _Enough()

        return keep

    handles = (
        [blocks[0].register_forward_pre_hook(keep_input, with_kwargs=True)] if 0 in wanted else []
    )
    handles += [blocks[i - 1].register_forward_hook(keep_output(i)) for i in wanted if i > 0]
    try:
        yield states
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def added_at_layers(
    model, vectors: dict[int, torch.Tensor], scale: float = 1.0, last_only: bool = False
) -> Iterator[None]:
    """While inside, decoder layer j's output gets `scale · vectors[j]` added at every
    position, or with `last_only` at the last position of each row only (during generation
    that is the token the next answer token is read from); the hooks are removed on leaving,
    whatever happens. Only forward passes of the thread that entered are changed, so a
    steered call never leaks into another caller sharing the model."""
    layers = decoder_layers(model)
    for j in vectors:
        if not 0 <= j < len(layers):
            raise ValueError(f"layer {j} does not exist (the model has {len(layers)}).")
    owner = threading.get_ident()

    def hook_for(vector: torch.Tensor):
        def add(module, inputs, output):
            if threading.get_ident() != owner:
                return None
            state = output[0] if isinstance(output, tuple) else output
            delta = scale * vector.to(state)
            if last_only and state.shape[1] > 1:  # a prefill: only its last position
                state = torch.cat([state[:, :-1], state[:, -1:] + delta], 1)
            else:
                state = state + delta
            return (state,) + tuple(output[1:]) if isinstance(output, tuple) else state

        return add

    handles = [layers[j].register_forward_hook(hook_for(v)) for j, v in vectors.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
