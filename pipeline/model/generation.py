"""Batched chat generation with a KV cache, and a streaming variant for the studio.

Callers use a `GenerationBackend` (`generate` for batches, `stream` for one conversation);
`pipeline.model.engines.backend_for` picks the implementation (this one, or CTranslate2's
int8 engine), so callers do not change with it. The transformers backend runs its own
decode loop rather than `model.generate`: it samples row i with its own seeded generator
(so a row's text does not depend on what else is in the batch), drops finished rows from
the batch, streams token by token, and decodes one unsteered prompt by prompt lookup.
"""

from __future__ import annotations

import threading
import weakref
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import torch

from pipeline.config.settings import SamplingConfig
from pipeline.core.errors import ModelError
from pipeline.model.loading import LoadedModel
from pipeline.model.scoring import MIN_SHARED_PREFIX, common_start, shared_prefix_length
from pipeline.model.shared_attention import Layers, applies, shared_start

if TYPE_CHECKING:
    from pipeline.model.steering import Steering

Message = dict[str, str]


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int
    finish_reason: str  # "stop" (end of turn) or "length" (hit max_new_tokens)


class GenerationBackend(Protocol):
    name: str  # the model name callers asked for
    context_length: int  # tokens the model can attend to

    def count_tokens(self, conversation: list[Message]) -> int: ...

    def truncate(self, text: str, max_tokens: int) -> str: ...

    def generate(
        self,
        conversations: list[list[Message]],
        config: SamplingConfig,
        seeds: list[int] | None = None,
        steering: Steering | None = None,
    ) -> list[Generation]: ...

    def stream(
        self,
        conversation: list[Message],
        config: SamplingConfig,
        finished: Callable[[str], None] | None = None,
        steering: Steering | None = None,
    ) -> Iterator[str]: ...

    def keep_start(self, start: list[Message]) -> None:
        """The next calls' conversations begin with `start` (a chain's few-shot examples and
        prompt): an engine that keeps only exact starts computes it once."""


class LocalBackend(GenerationBackend, Protocol):
    """An engine in this process, on a model loaded here (its tokenizer, its layers for
    steering and hidden states)."""

    loaded: LoadedModel


KEEP_ROWS = 4  # a batch this small keeps its prompts for the next call
KEEP_BYTES = 256 * 2**20  # the kept prompts' keys and values, at most (the newest is kept)
# prompt lookup: drafted tokens checked in one pass, and the longest n-gram looked up
LOOKUP_DRAFT = 8
LOOKUP_NGRAM = 3
# a sampled draw rarely equals a draft after a shorter match (`_looked_up`): drafts after
# matches this long only when sampling (greedy drafts after any)
SAMPLED_MATCH = 3
# a batch's shared start at least this long is held once and attended apart (shared_attention)
SHARED_START = 64
NUCLEUS_FIRST = 256  # top-p looks among this many likeliest tokens first (`nucleus`)


@dataclass(frozen=True)
class Kept:
    """A prompt's keys and values, [1, heads, tokens, head dim] per layer, kept for a later
    call that starts the same way; `steering` is the key of the steering it was read under."""

    tokens: tuple[int, ...]
    steering: object
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def nbytes(self) -> int:
        return sum(
            k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers
        )


class KeptPrompts:
    """Prompts' keys and values kept for later calls, newest last, within KEEP_BYTES (the
    newest is kept whatever its size). Backends on one frozen model share one (`shared`), so
    a chain or an answer started after another reuses what that one computed (the studio's
    second chain skips its ~1,000-token few-shot start); a lock keeps the list whole when
    several of the studio's threads keep and look up at once (the tensors are never written)."""

    def __init__(self) -> None:
        self._kept: list[Kept] = []
        self._lock = threading.Lock()

    def longest(
        self, row: list[int] | tuple[int, ...], key: object, limit: int
    ) -> tuple[Kept | None, int]:
        """The kept prompt sharing the longest start (up to `limit` tokens) with `row` under
        the same steering, and how many tokens; (None, 0) when under MIN_SHARED_PREFIX."""
        best: tuple[Kept | None, int] = (None, 0)
        with self._lock:
            for kept in self._kept:
                if kept.steering == key:
                    n = common_start(kept.tokens, row, limit)
                    if n > best[1]:
                        best = (kept, n)
        return best if best[1] >= MIN_SHARED_PREFIX else (None, 0)

    def keep(self, kept: Kept) -> None:
        with self._lock:
            self._kept = [
                k for k in self._kept if (k.tokens, k.steering) != (kept.tokens, kept.steering)
            ]
            self._kept.append(kept)
            while len(self._kept) > 1 and sum(k.nbytes for k in self._kept) > KEEP_BYTES:
                self._kept.pop(0)

    def clear(self) -> None:
        with self._lock:
            self._kept = []


_shared: weakref.WeakKeyDictionary[Any, KeptPrompts] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def shared(loaded: LoadedModel) -> KeptPrompts:
    """The kept prompts of a model loaded once per process (`load_model`'s, never trained in
    place), gone with the model; a model being trained (PPO's policy) must keep its own,
    since its keys change."""
    with _shared_lock:
        return _shared.setdefault(loaded.model, KeptPrompts())


def next_tokens(
    logits: torch.Tensor, config: SamplingConfig, generators: list[torch.Generator]
) -> torch.Tensor:
    """Pick one token per row: argmax when greedy, else temperature + top-p sampling."""
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / config.temperature, dim=-1)
    if config.top_p < 1:
        probs = nucleus(probs, config.top_p)
    return drawn(probs, generators)


def drawn(probs: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One token id per row of (unnormalised) probabilities: the token whose probability over
    an exponential random number is largest, which is a draw from the distribution (as
    multinomial draws). Each row's exponentials come from NumPy's PCG64, seeded by one number
    from the row's own generator: torch drew them at ~20 ns each, 1 ms for a 49,152-token
    row at every token (11% of a batch-16 sampled answer), NumPy in a quarter of that. As
    before, a row's draw does not depend on the batch, and since every token keeps its own
    random number, a tiny change in the probabilities (another batch's rounding) moves a
    draw only when two tokens' ratios were that close. The same distribution, not the same
    tokens for a seed as torch's own draws."""
    seeds = [int(torch.randint(2**63 - 1, (1,), generator=g)) for g in generators]
    races = np.stack(
        [
            np.random.Generator(np.random.PCG64(seed)).standard_exponential(
                probs.shape[-1], np.float32
            )
            for seed in seeds
        ]
    )
    tiny = torch.finfo(torch.float32).tiny  # a draw of exactly 0 must not make 0/0
    return (probs.float() / torch.from_numpy(races).clamp(min=tiny)).argmax(-1)


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """`probs` with every token outside each row's top-p nucleus set to 0 (not renormalised:
    the draw does not need it). The nucleus is found among the NUCLEUS_FIRST likeliest
    tokens (a partial sort) and the whole vocabulary is sorted only for a row whose nucleus
    is larger: sorting 49,152 probabilities per row and token was a quarter of a batch
    job's sampling time. The result is the whole sort's to the bit (the same values summed
    in the same order), so a seed draws the same tokens as before."""
    vocab = probs.shape[-1]
    out, last_inside = within_top_p(*probs.topk(min(NUCLEUS_FIRST, vocab)), top_p, vocab)
    wider = last_inside.nonzero().squeeze(-1)
    if len(wider):  # the nucleus may run past the first k: sort those rows whole
        ranked, order = probs[wider].sort(dim=-1, descending=True)
        out[wider] = within_top_p(ranked, order, top_p, vocab)[0]
    return out


def within_top_p(
    ranked: torch.Tensor, order: torch.Tensor, top_p: float, vocab: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """From probabilities ranked high to low and their token ids (all of them, or the
    likeliest k): every probability in its token's place among `vocab`, 0 past the nucleus,
    and whether each row's last ranked token is still inside it."""
    outside = ranked.cumsum(dim=-1) - ranked > top_p
    kept = ranked.masked_fill(outside, 0.0)
    return kept.new_zeros(ranked.shape[0], vocab).scatter(-1, order, kept), ~outside[:, -1]


def drafted(tokens: list[int], limit: int, shortest: int = 1) -> list[int]:
    """Up to `limit` tokens that followed the latest earlier occurrence of the last n tokens
    (n from LOOKUP_NGRAM down to `shortest`): a guess at what comes next, since a revision
    repeats much of the answer it revises and a critique quotes it. [] when nothing
    matches."""
    for n in range(min(LOOKUP_NGRAM, len(tokens) - 1), shortest - 1, -1):
        tail = tokens[-n:]
        for start in range(len(tokens) - n - 1, -1, -1):
            if tokens[start : start + n] == tail:
                return tokens[start + n : start + n + limit]
    return []


def prompt_text(tokenizer, conversation: list[Message], cue: bool = True) -> str:
    """The conversation in the model's chat template, generation cue included (`cue` False:
    the start every prompt that continues the conversation begins with)."""
    return tokenizer.apply_chat_template(conversation, add_generation_prompt=cue, tokenize=False)


def prompt_ids(tokenizer, conversation: list[Message], cue: bool = True) -> list[int]:
    """The token ids a model answers (every engine renders prompts here, so they answer the
    same tokens); `cue` as in `prompt_text`."""
    text = prompt_text(tokenizer, conversation, cue)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def stop_ids(loaded: LoadedModel) -> list[int]:
    """The tokens that end a turn: the tokenizer's end token and the generation config's."""
    ids = {loaded.tokenizer.eos_token_id}
    configured = getattr(loaded.model.generation_config, "eos_token_id", None)
    ids |= set(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


class ChatTokens:
    """What every engine does with the tokenizer alone: render and count prompts, refuse one
    too long, and turn new token ids into a `Generation` — shared, so that every engine
    answers the same prompt tokens and reports its answers alike."""

    def __init__(self, loaded: LoadedModel, max_batch_size: int = 32):
        self.loaded = loaded
        self.name = loaded.name
        self.context_length = getattr(loaded.model.config, "max_position_embeddings", None) or 2048
        self.max_batch_size = max_batch_size
        self.stop_ids = torch.tensor(stop_ids(loaded))
        self.pad_id = loaded.tokenizer.pad_token_id

    def count_tokens(self, conversation: list[Message]) -> int:
        """Tokens of the rendered conversation, generation cue included."""
        return len(prompt_ids(self.loaded.tokenizer, conversation))

    def keep_start(self, start: list[Message]) -> None:
        """No hint needed where an engine keeps any start of a recent prompt (the
        transformers engine: see `Kept`)."""

    def truncate(self, text: str, max_tokens: int) -> str:
        """`text` cut to its first `max_tokens` tokens (unchanged when it fits)."""
        ids = self.loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= max_tokens else self.loaded.tokenizer.decode(ids[:max_tokens])

    def _encode(
        self, conversations: list[list[Message]], config: SamplingConfig
    ) -> list[list[int]]:
        """Token ids of each rendered conversation (unpadded), refusing ones too long."""
        rows = [prompt_ids(self.loaded.tokenizer, c) for c in conversations]
        longest = max(len(r) for r in rows)
        if longest + config.max_new_tokens > self.context_length:
            raise ModelError(
                f"The prompt is {longest} tokens; with {config.max_new_tokens} new "
                f"tokens it exceeds the model's context of {self.context_length} "
                "tokens."
            )
        return rows

    def _finish(self, token_ids: list[int], config: SamplingConfig) -> Generation:
        stopped = bool(token_ids) and token_ids[-1] in self.stop_ids.tolist()
        body = token_ids[:-1] if stopped else token_ids
        text = self.loaded.tokenizer.decode(body, skip_special_tokens=True)
        return Generation(text.strip(), len(token_ids), "stop" if stopped else "length")

    def new_ids(
        self,
        conversations: list[list[Message]],
        config: SamplingConfig,
        seeds: list[int] | None = None,
        steering: Steering | None = None,
    ) -> list[list[int]]:
        """Each conversation's new token ids, its end-of-turn token included (an engine's
        own)."""
        raise NotImplementedError

    def token_stream(
        self, conversation: list[Message], config: SamplingConfig, steering: Steering | None
    ) -> Iterator[int]:
        """One conversation's new token ids as they come (an engine's own)."""
        raise NotImplementedError

    def generate(
        self,
        conversations: list[list[Message]],
        config: SamplingConfig,
        seeds: list[int] | None = None,
        steering: Steering | None = None,
    ) -> list[Generation]:
        """Answer every conversation (steered, when `steering` is given)."""
        return [
            self._finish(new, config)
            for new in self.new_ids(conversations, config, seeds, steering)
        ]

    def stream(
        self,
        conversation: list[Message],
        config: SamplingConfig,
        finished: Callable[[str], None] | None = None,
        steering: Steering | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text as it grows (each item is the new piece of text); at the
        end `finished` hears why it stopped: "stop" (end of turn) or "length" (the limit)."""
        yield from self._pieces(self.token_stream(conversation, config, steering), finished)

    def _pieces(
        self, tokens: Iterable[int], finished: Callable[[str], None] | None
    ) -> Iterator[str]:
        """The answer's text as it grows, from its tokens as they come: each item the new
        piece of text; at the end `finished` hears why it stopped: "stop" (end of turn) or
        "length" (the limit)."""
        token_ids: list[int] = []
        shown, reason = "", "length"
        stops = set(self.stop_ids.tolist())
        for token in tokens:
            if token in stops:
                reason = "stop"
                break
            token_ids.append(token)
            text = self.loaded.tokenizer.decode(token_ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                continue
            if len(text) > len(shown):
                yield text[len(shown) :]
                shown = text
        if finished is not None:
            finished(reason)


class TransformersBackend(ChatTokens):
    """Generation on a transformers causal LM with left padding and a dynamic KV cache."""

    def __init__(
        self, loaded: LoadedModel, max_batch_size: int = 32, kept: KeptPrompts | None = None
    ):
        super().__init__(loaded, max_batch_size)
        self.kept = kept or KeptPrompts()  # prompts' keys and values, for later calls

    def _forward(
        self,
        steering: Steering | None,
        prefix: bool = False,
        start: Layers | None = None,
        **inputs,
    ):
        """One forward pass, steered while inside it only (so an abandoned stream leaves no
        hook behind), attending to a batch's shared `start` held once (`shared_attention`)."""
        model = self.loaded.model
        with steering.applied(model, prefix) if steering else nullcontext():
            with shared_start(start) if start is not None else nullcontext():
                return model(**inputs)

    def _shared_start(self, tokens: tuple[int, ...], steering: Steering | None) -> Kept:
        """The keys and values of a start many rows share, computed once at batch size 1
        (continuing a kept prompt that begins the same way) and kept."""
        from transformers import DynamicCache

        key = steering.key if steering else None
        kept, n = self.kept.longest(tokens, key, len(tokens))
        if kept is not None and n == len(tokens):
            return kept
        cache = DynamicCache()
        if kept is not None:
            for index, (keys, values) in enumerate(kept.layers):
                cache.update(keys[:, :, :n], values[:, :, :n], index)
        self._forward(
            steering,
            True,
            input_ids=torch.tensor([tokens[n:]], device=self.loaded.device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        filled: list[Any] = list(cache.layers)  # DynamicLayers, typed as a union of kinds
        start = Kept(tokens, key, [(layer.keys, layer.values) for layer in filled])
        self.kept.keep(start)
        return start

    def _prefill(
        self, rows: list[list[int]], max_new_tokens: int, steering: Steering | None = None
    ):
        """Run the prompts through the model into a preallocated KV cache.

        A prompt often starts the way an earlier one did (a chain's next step repeats the
        few-shot examples, the question and the answer so far), and rows of a batch often
        share a long start (a system prompt, few-shot examples). With causal attention such a
        start has the same keys and values wherever it appears, so it is not computed again:
        each row's longest start kept from earlier calls (`kept`, keyed by the steering too,
        since a steered start has other keys and values), or the batch's shared start
        computed once at batch size 1, is copied into the row's slots and only the rest of
        the row is computed, left-padded: [pad…][start][pad…][rest][new…]. The prompts of
        small batches (the live chain, the playground, one pair) are kept for the next call.
        The cache is allocated once for the whole generation: a growing cache would copy
        itself on every decoded token, which at long contexts costs more than the model.
        A batch larger than that whose rows all begin with the same start (the batch's
        shared one, or one kept from an earlier call) holds that start once instead ([1,
        heads, start, dim] per layer), out of the cache, and every forward pass attends to it
        apart (`shared_attention`): the rows' copies of a ~1,000-token few-shot start were
        most of a batch's keys and values.
        Returns the model output, the cache, the full-length attention mask (of the rows' own
        tokens), the position of each row's last token, and the shared start held apart
        (None when every row holds its own).
        """
        from transformers import StaticCache

        model, device = self.loaded.model, self.loaded.device
        key = steering.key if steering else None
        # a row keeps at least its last token to run itself: its logits start the answer
        starts = [self.kept.longest(r, key, len(r) - 1) for r in rows]
        shared = shared_prefix_length(rows) if len(rows) > 1 else 0
        if shared > min(n for _, n in starts):
            batch_start = self._shared_start(tuple(rows[0][:shared]), steering)
            starts = [(k, n) if n >= shared else (batch_start, shared) for k, n in starts]
        start, offset = None, 0  # a start every row shares, held once (shared_attention)
        first, n = starts[0]
        if first is not None and n >= SHARED_START and len(rows) > KEEP_ROWS:
            if all(k is first and m == n for k, m in starts) and applies(model):
                start = [(keys[:, :, :n], values[:, :, :n]) for keys, values in first.layers]
                starts, offset = [(None, 0)] * len(rows), n
        head = max(n for _, n in starts)
        suffixes = [r[offset + n :] for r, (_, n) in zip(rows, starts)]
        width = max(len(s) for s in suffixes)
        cache = StaticCache(config=model.config, max_cache_len=head + width + max_new_tokens)
        # the static layers are typed as a union of layer kinds; these are all StaticLayer
        layers: list[Any] = list(cache.layers)
        if head:
            template = next(k for k, n in starts if k is not None and n)
            for index, layer in enumerate(layers):
                keys, values = template.layers[index]
                layer.lazy_initialization(
                    keys.expand(len(rows), -1, -1, -1), values.expand(len(rows), -1, -1, -1)
                )
                for row, (kept, n) in enumerate(starts):
                    if kept is not None and n:
                        layer.keys[row, :, head - n : head] = kept.layers[index][0][0, :, :n]
                        layer.values[row, :, head - n : head] = kept.layers[index][1][0, :, :n]
                layer.cumulative_length.fill_(head)
        input_ids = torch.tensor(
            [[self.pad_id] * (width - len(s)) + s for s in suffixes], device=device
        )
        # positions not yet written are causally masked, so they may be marked as real here
        mask = torch.tensor(
            [
                [0] * (head - n)
                + [1] * n
                + [0] * (width - len(s))
                + [1] * len(s)
                + [1] * max_new_tokens
                for (_, n), s in zip(starts, suffixes)
            ],
            device=device,
        )
        positions = (mask[:, : head + width].cumsum(-1) - 1).clamp(min=0)[:, head:] + offset
        out = self._forward(
            steering,
            start=start,
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if len(rows) <= KEEP_ROWS:
            for row, ((_, n), s) in enumerate(zip(starts, suffixes)):
                # the prompt without its last token: answer-only steering changes that one
                columns = torch.cat(
                    [
                        torch.arange(head - n, head),
                        torch.arange(head + width - len(s), head + width - 1),
                    ]
                ).to(device)
                self.kept.keep(
                    Kept(
                        tuple(rows[row][:-1]),
                        key,
                        [
                            (
                                layer.keys[row : row + 1].index_select(2, columns),
                                layer.values[row : row + 1].index_select(2, columns),
                            )
                            for layer in layers
                        ],
                    )
                )
        return out, cache, mask, positions[:, -1:], start

    @torch.inference_mode()
    def _decode(
        self,
        rows_ids: list[list[int]],
        config: SamplingConfig,
        seeds: list[int],
        steering: Steering | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (row indices still running, their new tokens) once per step."""
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        if len(rows_ids) == 1 and LOOKUP_DRAFT and steering is None:
            yield from self._looked_up(rows_ids[0], config, generators[0])
            return
        rows = torch.arange(len(rows_ids))
        out, cache, attention_mask, position, start = self._prefill(
            rows_ids, config.max_new_tokens, steering
        )
        position = position + 1
        for _ in range(config.max_new_tokens):
            tokens = next_tokens(out.logits[:, -1, :].float().cpu(), config, generators)
            yield rows, tokens
            running = ~torch.isin(tokens, self.stop_ids)
            if not running.any():
                return
            if not running.all():  # finished rows leave the batch, so they cost nothing more
                keep = running.nonzero().squeeze(-1)
                device_keep = keep.to(attention_mask.device)
                for layer in cache.layers:
                    layer.keys = layer.keys.index_select(0, device_keep)
                    layer.values = layer.values.index_select(0, device_keep)
                    layer.batch_size = len(keep)
                rows, tokens, position = rows[keep], tokens[keep], position[keep]
                attention_mask = attention_mask[device_keep]
                generators = [generators[i] for i in keep.tolist()]
            out = self._forward(
                steering,
                start=start,
                input_ids=tokens[:, None].to(attention_mask.device),
                attention_mask=attention_mask,
                position_ids=position,
                past_key_values=cache,
                use_cache=True,
            )
            position = position + 1

    @torch.inference_mode()
    def _looked_up(
        self, prompt: list[int], config: SamplingConfig, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One prompt decoded by prompt lookup: each pass feeds the last token and up to
        LOOKUP_DRAFT drafted ones (`drafted`), then draws each position's token in turn from
        the pass's logits as one-token passes would have drawn them (argmax, or the same
        generator, one draw a token), keeping the drafted tokens while the draw equals them,
        and the first draw that differs. At batch 1 a pass is bound by reading the weights,
        so checking nine tokens costs ~2x one, and a chain's critiques and revisions, which
        repeat what they discuss, take ~3.4 tokens a pass greedy. A sampled draw equals a
        draft that followed a 1- or 2-token match too rarely to pay for the longer pass
        (measured at 0.7: 18% and 31% of first drafted tokens, against 74% after a 3-token
        match), so sampling drafts from 3-token matches only. A rejected draft's keys are
        written over."""
        out, cache, mask, position, _ = self._prefill([prompt], config.max_new_tokens)
        layers: list[Any] = list(cache.layers)
        stops, row = set(self.stop_ids.tolist()), torch.tensor([0])
        text, logits, draft = list(prompt), out.logits[0, -1:].float().cpu(), list[int]()
        position, produced, column = int(position[0, 0]) + 1, 0, 0
        while True:
            accepted: list[int] = []
            for index in range(len(draft) + 1):
                accepted.append(int(next_tokens(logits[index : index + 1], config, [generator])))
                if index == len(draft) or accepted[-1] != draft[index]:
                    break
            if produced:  # the drafted tokens' keys past the last one kept are written over
                position += len(accepted)
                for layer in layers:
                    layer.cumulative_length.fill_(column + len(accepted))
            for token in accepted:
                yield row, torch.tensor([token])
                produced += 1
                text.append(token)
                if token in stops or produced == config.max_new_tokens:
                    return
            limit = min(LOOKUP_DRAFT, config.max_new_tokens - produced - 1)
            draft = drafted(text, limit, 1 if config.temperature == 0 else SAMPLED_MATCH)
            column = int(layers[0].cumulative_length)
            logits = (
                self._forward(
                    None,
                    input_ids=torch.tensor([[text[-1], *draft]], device=mask.device),
                    attention_mask=mask,
                    position_ids=torch.arange(position, position + 1 + len(draft))[None],
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1 + len(draft),
                )
                .logits[0]
                .float()
                .cpu()
            )

    def sample_ids(
        self,
        conversations: list[list[Message]],
        config: SamplingConfig,
        seeds: list[int] | None = None,
        steering: Steering | None = None,
    ) -> list[tuple[list[int], list[int]]]:
        """(prompt token ids, new token ids incl. any end-of-turn token) per conversation —
        the exact tokens sampled, for training on them. Batches are formed from prompts of
        similar length."""
        if seeds is None:
            seeds = [config.seed + i for i in range(len(conversations))]
        order = sorted(
            range(len(conversations)),
            key=lambda i: len(prompt_text(self.loaded.tokenizer, conversations[i])),
        )
        results: list[tuple[list[int], list[int]] | None] = [None] * len(conversations)
        for start in range(0, len(order), self.max_batch_size):
            chunk = order[start : start + self.max_batch_size]
            encoded = self._encode([conversations[i] for i in chunk], config)
            produced: list[list[int]] = [[] for _ in chunk]
            for rows, tokens in self._decode(encoded, config, [seeds[i] for i in chunk], steering):
                for row, token in zip(rows.tolist(), tokens.tolist()):
                    produced[row].append(token)
            for row, index in enumerate(chunk):
                results[index] = (encoded[row], produced[row])
        return results  # type: ignore[return-value]

    def new_ids(
        self,
        conversations: list[list[Message]],
        config: SamplingConfig,
        seeds: list[int] | None = None,
        steering: Steering | None = None,
    ) -> list[list[int]]:
        return [new for _, new in self.sample_ids(conversations, config, seeds, steering)]

    def token_stream(
        self, conversation: list[Message], config: SamplingConfig, steering: Steering | None
    ) -> Iterator[int]:
        steps = self._decode(self._encode([conversation], config), config, [config.seed], steering)
        return (int(tokens[0]) for _, tokens in steps)


def chat(user_text: str, system: str | None = None) -> list[Message]:
    """A one-turn conversation, with an optional system prompt."""
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user_text}]
