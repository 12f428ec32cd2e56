"""Critique–revision chains: stage 1 of Constitutional AI (the SL-CAI data).

For each prompt the model answers; then, for each round, a principle is drawn (weighted,
with replacement, from an RNG seeded by the run's seed and the prompt), the model critiques
its current answer under the principle's critique request and revises it under its revision
request. The constitution's few-shot chains are prepended as earlier turns of the same
conversation. Each round shows the model the prompt and its *current* answer (not the whole
history), which keeps the context bounded however many rounds are run.

Every stage is one batched generation call across all prompts of a batch; the rows share
the few-shot prefix, which the generation engine computes once per call.
"""

from __future__ import annotations

import dataclasses
import difflib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pipeline.config.settings import ChainConfig, SamplingConfig
from pipeline.core.errors import ConstitutionError, DatasetError, ModelError
from pipeline.core.files import RecordLog, save_dataset
from pipeline.core.seeds import stable_int
from pipeline.core.textdiff import similarity
from pipeline.data.constitution import Constitution, Principle, content_hash
from pipeline.data.prompts import PromptRecord
from pipeline.model.generation import GenerationBackend, Message


@dataclass(frozen=True)
class ChainRequest:
    prompt: PromptRecord
    constitution: Constitution


@dataclass(frozen=True)
class RevisionRound:
    principle_id: str
    critique_request: str
    revision_request: str
    critique: str | None = None  # None while the round is still being generated
    revision: str | None = None
    failure: str = ""  # why the round's revision was not accepted ("" when it was)
    weight: float = (
        0.0  # the principle's weight in the draw (0: a chain from before draws were kept)
    )
    pool_weight: float = 0.0  # the total weight of the principles it was drawn from
    pool: str = ""  # which principles it was drawn from, in words

    @property
    def failed(self) -> bool:
        return bool(self.failure)


@dataclass(frozen=True)
class Chain:
    """A chain record (docs/architecture.md, Formats), with the lineage needed to reproduce it."""

    id: str
    prompt_id: str
    prompt: str
    category: str
    initial_answer: str | None
    rounds: tuple[RevisionRound, ...]
    final_answer: str | None
    model: str
    sampling: dict
    seed: int
    few_shot: bool
    constitution_name: str
    constitution_hash: str
    truncated: bool = False

    @property
    def done(self) -> bool:
        return self.final_answer is not None


# --- pure parts --------------------------------------------------------------------------


def _tag_key(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().lower())


def principle_pool(
    constitution: Constitution, category: str = "", relevant_only: bool = False
) -> tuple[list[Principle], str]:
    """The principles a prompt's rounds are drawn from, and which they are in words: every
    enabled one, or (relevant_only) those tagged with the prompt's category when any is."""
    enabled = list(constitution.enabled_principles)
    if not enabled:
        raise ConstitutionError(
            f"Every principle of '{constitution.name}' is disabled; enable "
            "at least one to run critique–revision chains."
        )
    if not relevant_only:
        return enabled, "every enabled principle"
    tagged = [p for p in enabled if _tag_key(category) in {_tag_key(t) for t in p.tags}]
    if category and tagged:
        return tagged, f"the principles tagged '{category}'"
    return enabled, f"every enabled principle (none is tagged '{category or 'no category'}')"


def draw_principles(
    constitution: Constitution,
    rounds: int,
    seed: int,
    prompt_key: str,
    category: str = "",
    relevant_only: bool = False,
) -> list[Principle]:
    """Principles for one prompt's rounds: weighted draws with replacement from its pool,
    seeded by the run's seed and the prompt, so a prompt gets the same principles in any
    batch."""
    pool, _ = principle_pool(constitution, category, relevant_only)
    rng = random.Random(stable_int("principles", seed, prompt_key))
    return rng.choices(pool, weights=[p.weight for p in pool], k=rounds)


def few_shot_messages(constitution: Constitution) -> list[Message]:
    """The few-shot chains as earlier conversation turns."""
    messages: list[Message] = []
    for example in constitution.few_shot:
        messages += [
            {"role": "user", "content": example.prompt},
            {"role": "assistant", "content": example.answer},
        ]
        for rnd in example.rounds:
            messages += [
                {"role": "user", "content": rnd.critique_request},
                {"role": "assistant", "content": rnd.critique},
                {"role": "user", "content": rnd.revision_request},
                {"role": "assistant", "content": rnd.revision},
            ]
    return messages


def critique_messages(
    prefix: list[Message], prompt: str, answer: str, principle: Principle
) -> list[Message]:
    return prefix + [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": principle.critique_request},
    ]


def revision_messages(
    prefix: list[Message], prompt: str, answer: str, principle: Principle, critique: str
) -> list[Message]:
    return critique_messages(prefix, prompt, answer, principle) + [
        {"role": "assistant", "content": critique},
        {"role": "user", "content": principle.revision_request},
    ]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _alike(a: list[str], b: list[str]) -> bool:
    return bool(a) and difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= 0.8


META_TEXT = re.compile(
    r"^\W*(?:(?:the|this|my|your|its)\s+(?:(?:revised|rewritten|original|previous|above|last|new|"
    r"assistant'?s?|model'?s?|ai'?s?)\s+)*(?:response|reply|revision|critique)s?\b"
    r"(?!\s+(?:times?|rates?)\b)"
    r"|(?:the|this|my)\s+(?:revised|rewritten|original|previous|above|assistant'?s?)\s+answer\b"
    r"|[^.!?\n]{0,120}\bthe assistant(?:'s)?\b)",
    re.IGNORECASE,
)


def is_meta_text(answer: str) -> bool:
    """A heuristic: does the answer talk *about* a response ("The response does not contain
    any instructions…", "The assistant's reply is…") instead of answering the prompt?"""
    return bool(META_TEXT.search(answer.strip()[:300]))


def round_failure(revision: str, principle: Principle, critique: str = "") -> str:
    """Why a revision is unusable: empty, a parrot of the request, a copy of the critique, or
    text about the response instead of a rewritten answer ("" when usable)."""
    if not revision.strip():
        return "empty revision"
    got = _words(revision)
    if any(
        _alike(got, _words(r)) for r in (principle.revision_request, principle.critique_request)
    ):
        return "repeats the request"
    if _alike(got, _words(critique)):
        return "copies the critique"
    if is_meta_text(revision):
        return "talks about the response instead of answering"
    return ""


def chain_id(
    request: ChainRequest, config: ChainConfig, sampling: SamplingConfig, model: str
) -> str:
    """Stable id: the same prompt, constitution, settings and seed give the same id, so a
    rerun can skip what is already done."""
    parts: tuple[object, ...] = (
        "chain",
        content_hash(request.constitution),
        request.prompt.id,
        request.prompt.prompt,
        config.rounds,
        config.few_shot,
        model,
        dataclasses.asdict(sampling),
    )
    if config.relevant_only:  # a setting added later: ids of earlier runs stay as they were
        parts += ("relevant-only", request.prompt.category)
    return f"{stable_int(*parts):016x}"


REFUSAL = re.compile(
    r"\b(i\s*(?:can(?:'|no)?t|cannot|won'?t|will not|am not able to|'m not able to|am unable to|"
    r"'m unable to|must decline|do not feel comfortable)|i'?m sorry,? but|i apologi[sz]e,? but|"
    r"as an ai\b)",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    """A heuristic: does the answer decline (in its first 300 characters)?"""
    return bool(REFUSAL.search(text[:300]))


@dataclass(frozen=True)
class ChainQuality:
    length_change: int  # words in the final answer minus words in the initial answer
    change: float  # 0 = final identical to initial, 1 = nothing in common (word level)
    refuses: bool
    failed_rounds: int
    meta: bool  # the final answer talks about a response instead of answering


def chain_quality(chain: Chain) -> ChainQuality:
    initial, final = chain.initial_answer or "", chain.final_answer or ""
    return ChainQuality(
        length_change=len(final.split()) - len(initial.split()),
        change=round(1 - similarity(initial, final), 3),
        refuses=is_refusal(final),
        failed_rounds=sum(r.failed for r in chain.rounds),
        meta=is_meta_text(final),
    )


@dataclass(frozen=True)
class BatchQuality:
    """A run's chains in a few numbers (the CLI's summary, the Chains tab's header)."""

    chains: int
    refusing: int  # final answers that refuse
    mean_change: float
    mean_length_change: float  # words
    failed_rounds: int
    truncated: int  # prompts cut to fit the context

    @property
    def refusal_rate(self) -> float:
        return self.refusing / self.chains if self.chains else 0.0


def batch_quality(chains: list[Chain]) -> BatchQuality:
    qualities = [chain_quality(c) for c in chains]
    n = max(len(chains), 1)
    return BatchQuality(
        len(chains),
        sum(q.refuses for q in qualities),
        sum(q.change for q in qualities) / n,
        sum(q.length_change for q in qualities) / n,
        sum(q.failed_rounds for q in qualities),
        sum(c.truncated for c in chains),
    )


@dataclass(frozen=True)
class PrincipleStats:
    principle_id: str
    drawn: int
    failed: int

    @property
    def failure_rate(self) -> float:
        return self.failed / self.drawn if self.drawn else 0.0


def principle_stats(chains: list[Chain]) -> list[PrincipleStats]:
    """How often each principle was drawn and how often its round failed, most drawn first."""
    drawn: dict[str, int] = {}
    failed: dict[str, int] = {}
    for chain in chains:
        for rnd in chain.rounds:
            drawn[rnd.principle_id] = drawn.get(rnd.principle_id, 0) + 1
            failed[rnd.principle_id] = failed.get(rnd.principle_id, 0) + rnd.failed
    return sorted(
        (PrincipleStats(pid, n, failed[pid]) for pid, n in drawn.items()),
        key=lambda s: (-s.drawn, s.principle_id),
    )


# --- the engine --------------------------------------------------------------------------


@dataclass
class _Row:
    """Working state of one chain while its batch runs."""

    request: ChainRequest
    id: str
    prompt: str
    truncated: bool
    principles: list[Principle]
    pool: list[Principle]
    pool_text: str
    prefix: list[Message]
    initial: str | None = None
    current: str | None = None
    rounds: list[RevisionRound] = field(default_factory=list)


def _prompt_budget(
    backend: GenerationBackend,
    prefix: list[Message],
    sampling: SamplingConfig,
    principles: list[Principle],
) -> int:
    """Tokens left for the user's prompt in the longest conversation a round builds."""
    overhead = backend.count_tokens(
        prefix
        + [
            {"role": "user", "content": ""},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": max((p.critique_request for p in principles), key=len)},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": max((p.revision_request for p in principles), key=len)},
        ]
    )
    return backend.context_length - overhead - 3 * sampling.max_new_tokens


def _start(
    request: ChainRequest, config: ChainConfig, sampling: SamplingConfig, backend: GenerationBackend
) -> _Row:
    if not request.prompt.prompt.strip():
        raise DatasetError(f"Prompt '{request.prompt.id}' is empty.")
    category = request.prompt.category
    pool, pool_text = principle_pool(request.constitution, category, config.relevant_only)
    principles = draw_principles(
        request.constitution,
        config.rounds,
        sampling.seed,
        request.prompt.id,
        category,
        config.relevant_only,
    )
    prefix = few_shot_messages(request.constitution) if config.few_shot else []
    budget = _prompt_budget(backend, prefix, sampling, principles)
    if budget < 16:
        raise ModelError(
            f"The model's context ({backend.context_length} tokens) cannot hold the few-shot "
            f"chains, the requests and {sampling.max_new_tokens} new tokens per step; lower "
            "max_new_tokens or turn few-shot off."
        )
    prompt = backend.truncate(request.prompt.prompt, budget)
    return _Row(
        request,
        chain_id(request, config, sampling, backend.name),
        prompt,
        prompt != request.prompt.prompt,
        principles,
        pool,
        pool_text,
        prefix,
    )


def _snapshot(row: _Row, config: ChainConfig, sampling: SamplingConfig, model: str) -> Chain:
    finished = len(row.rounds) == config.rounds and row.rounds[-1].revision is not None
    c = row.request.constitution
    return Chain(
        id=row.id,
        prompt_id=row.request.prompt.id,
        prompt=row.prompt,
        category=row.request.prompt.category,
        initial_answer=row.initial,
        rounds=tuple(row.rounds),
        final_answer=row.current if finished else None,
        model=model,
        sampling=dataclasses.asdict(sampling),
        seed=sampling.seed,
        few_shot=config.few_shot,
        constitution_name=c.name,
        constitution_hash=content_hash(c),
        truncated=row.truncated,
    )


def _snapshots(
    rows: list[_Row], config: ChainConfig, sampling: SamplingConfig, model: str
) -> list[Chain]:
    return [_snapshot(r, config, sampling, model) for r in rows]


def _seeds(rows: list[_Row], sampling: SamplingConfig, step: int) -> list[int]:
    """One sampling seed per row and generation step, independent of the batch."""
    return [stable_int("sample", sampling.seed, r.id, step) for r in rows]


def chain_step(step: int, rounds: int) -> str:
    """What a batch of chains is doing at `run_chains`' yield number `step` (per batch)."""
    step %= 2 * rounds + 1
    if step == 0:
        return "initial answers"
    return f"round {(step + 1) // 2} of {rounds}: {'critiques' if step % 2 else 'revisions'}"


def run_chains(
    backend: GenerationBackend,
    requests: list[ChainRequest],
    config: ChainConfig,
    sampling: SamplingConfig,
) -> Iterator[list[Chain]]:
    """Build chains batch by batch, yielding the batch's chains after every stage (initial
    answers, then each round's critiques and revisions); the last yield of a batch has every
    chain done. Row seeds derive from the run's seed and the chain id, so a chain's text does
    not depend on the batch it ran in."""
    for start in range(0, len(requests), config.batch_size):
        rows = [
            _start(r, config, sampling, backend)
            for r in requests[start : start + config.batch_size]
        ]

        for row in rows:  # every critique and revision of the row begins so
            backend.keep_start([*row.prefix, {"role": "user", "content": row.prompt}])
        answers = backend.generate(
            [[{"role": "user", "content": r.prompt}] for r in rows],
            sampling,
            _seeds(rows, sampling, 0),
        )
        for row, answer in zip(rows, answers):
            row.initial = row.current = answer.text
        yield _snapshots(rows, config, sampling, backend.name)
        for n in range(config.rounds):
            critiques = backend.generate(
                [
                    critique_messages(r.prefix, r.prompt, r.current or "", r.principles[n])
                    for r in rows
                ],
                sampling,
                _seeds(rows, sampling, 2 * n + 1),
            )
            for row, critique in zip(rows, critiques):
                p = row.principles[n]
                row.rounds.append(
                    RevisionRound(
                        p.id,
                        p.critique_request,
                        p.revision_request,
                        critique=critique.text,
                        weight=p.weight,
                        pool_weight=sum(q.weight for q in row.pool),
                        pool=row.pool_text,
                    )
                )
            yield _snapshots(rows, config, sampling, backend.name)
            revisions = backend.generate(
                [
                    revision_messages(
                        r.prefix,
                        r.prompt,
                        r.current or "",
                        r.principles[n],
                        r.rounds[n].critique or "",
                    )
                    for r in rows
                ],
                sampling,
                _seeds(rows, sampling, 2 * n + 2),
            )
            for row, revision in zip(rows, revisions):
                failure = round_failure(
                    revision.text, row.principles[n], row.rounds[n].critique or ""
                )
                row.rounds[n] = dataclasses.replace(
                    row.rounds[n], revision=revision.text, failure=failure
                )
                if not failure:  # a failed round is kept and flagged; the answer stays as it was
                    row.current = revision.text
            yield _snapshots(rows, config, sampling, backend.name)


def chain_to_dict(chain: Chain) -> dict:
    return dataclasses.asdict(chain)


def chain_from_dict(raw: dict) -> Chain:
    return Chain(**{**raw, "rounds": tuple(RevisionRound(**r) for r in raw["rounds"])})


# --- chain logs ------------------------------------------------------------------------------

CHAINS_FILE = "chains.jsonl"
DATASET_DIR = "dataset"


class ChainLog(RecordLog[Chain]):
    """The finished chains of one run folder."""

    FILE = CHAINS_FILE

    def to_row(self, chain: Chain) -> dict:
        if not chain.done:
            raise DatasetError(f"Only finished chains are logged (unfinished: {chain.id}).")
        return chain_to_dict(chain)

    def from_row(self, row: Any, n: int) -> Chain:
        return chain_from_dict(row)


def export_chains(folder: str | Path) -> Path:
    """The run's chains as a Hugging Face dataset in `folder/dataset`."""
    chains = ChainLog(folder).read()
    if not chains:
        raise DatasetError(f"No finished chains in {folder}.")
    return save_dataset([chain_to_dict(c) for c in chains], Path(folder) / DATASET_DIR)
