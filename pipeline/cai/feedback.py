"""AI feedback: soft A/B preference labels from option log-probabilities (RL-CAI labels).

The feedback model reads a multiple-choice question — the conversation, a principle's
preference question, `(A) …`, `(B) …`, an answer cue — and we read the log-probabilities
of the option tokens instead of generating. The label maths comes first, written out term
by term and needing no model; then the question, the option tokens, and the labeller.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

from pipeline.config.settings import COT_CLAMP, FeedbackConfig, SamplingConfig
from pipeline.core.errors import ConstitutionError, DatasetError, ModelError
from pipeline.core.job_folder import claim_run_folder
from pipeline.core.seeds import stable_int
from pipeline.data.constitution import Constitution, Principle, content_hash
from pipeline.data.preferences import LabelLog, OrderedLabel, Pair, Preference, PrincipleLabel
from pipeline.data.prompts import PromptRecord
from pipeline.model.generation import GenerationBackend, TransformersBackend
from pipeline.model.loading import LoadedModel
from pipeline.model.scoring import ScoreItem, option_logprobs


def sigmoid(x: float) -> float:
    """σ(x) as a probability, its argument clamped to ±50 so exp cannot overflow."""
    return 1 / (1 + math.exp(-max(min(x, 50.0), -50.0)))


def option_probability(logprob_a: float, logprob_b: float) -> tuple[float, float]:
    """P(A) normalised over the two options, and the probability mass that landed on the
    options at all (how much the model's answer was one of them)."""
    top = max(logprob_a, logprob_b)
    # softmax over the two options, shifted by the larger log-prob for numerical safety
    exp_a, exp_b = math.exp(logprob_a - top), math.exp(logprob_b - top)
    p_a = exp_a / (exp_a + exp_b)
    mass = math.exp(logprob_a) + math.exp(logprob_b)
    return p_a, min(mass, 1.0)


def both_orders(logprobs_ab: tuple[float, float], logprobs_ba: tuple[float, float]) -> OrderedLabel:
    """Label from the option log-probs of the question asked in order (A=first, B=second)
    and in the swapped order (A=second, B=first)."""
    p_option_a_ab, mass_ab = option_probability(*logprobs_ab)
    p_option_a_ba, mass_ba = option_probability(*logprobs_ba)
    # in the swapped order the first answer is option (B)
    return OrderedLabel(
        p_a_ab=p_option_a_ab, p_a_ba=1 - p_option_a_ba, mass_ab=mass_ab, mass_ba=mass_ba
    )


def ensemble(labels: list[OrderedLabel]) -> float:
    """The soft label of a principle ensemble: the mean of the principles' debiased labels."""
    if not labels:
        raise ValueError("an ensemble needs at least one principle's label")
    return sum(label.p_a for label in labels) / len(labels)


def clamp_cot(p_a: float) -> float:
    """Chain-of-thought labels clamped to COT_CLAMP."""
    low, high = COT_CLAMP
    return min(max(p_a, low), high)


# --- asking the feedback model ---------------------------------------------------------------

ANSWER_CUE = "The answer is: ("
ANSWER_REQUEST = "Answer the question below with (A) or (B)."
COT_REQUEST = "Think the question below through step by step, then say which response is better."
OPTION_SPELLINGS = ("{}", " {}", "{})", " {})")  # ways an option letter may follow the cue
INTRO = "Consider the following conversation between a human and an assistant:"
_SPLIT = "\u0000principle\u0000"  # marks where the principle starts in the rendered prompt


@dataclass(frozen=True)
class OptionTokens:
    """How a tokenizer spells the answer: `cue` ends every scored context; `a` and `b` are
    the token ids that can start option A and option B right after it."""

    cue: tuple[int, ...]
    a: tuple[int, ...]
    b: tuple[int, ...]


def resolve_option_tokens(tokenizer, cue: str = ANSWER_CUE) -> OptionTokens:
    """Find the option tokens for any tokenizer.

    Each letter is tried in several spellings after the cue. Where the tokenizer merges the
    cue's last characters with the letter (`(A` as one token), the scoring point moves back
    to where the spellings part. Tokens that start both letters tell nothing and are dropped;
    if nothing is left for a letter, the tokenizer cannot tell A from B and we refuse it.
    """

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    cue_ids = encode(cue)
    spelled = {
        letter: [encode(cue + s.format(letter)) for s in OPTION_SPELLINGS] for letter in "AB"
    }
    keep = len(cue_ids)
    for ids in spelled["A"] + spelled["B"]:
        same = 0
        while same < min(len(ids), len(cue_ids)) and ids[same] == cue_ids[same]:
            same += 1
        keep = min(keep, same)
    starts = {
        letter: {ids[keep] for ids in rows if len(ids) > keep} for letter, rows in spelled.items()
    }
    shared = starts["A"] & starts["B"]
    a, b = starts["A"] - shared, starts["B"] - shared
    if not a or not b or not keep:
        names = sorted(tokenizer.convert_ids_to_tokens(sorted(shared))) if shared else []
        raise ModelError(
            f"This tokenizer spells the options A and B with the same tokens "
            f"({', '.join(map(repr, names)) or 'none found'}) after the cue "
            f"{cue!r}, so their probabilities cannot be told apart; pick another "
            "feedback model."
        )
    return OptionTokens(tuple(cue_ids[:keep]), tuple(sorted(a)), tuple(sorted(b)))


def question_parts(
    prompt: str, first: str, second: str, question: str, cot: bool = False
) -> tuple[str, str]:
    """The multiple-choice question's user turn in two parts: the conversation, both
    answers and the instruction (shared by every principle), then the principle's question
    alone. The principle comes *after* the answers so K principles share one prefix, and the
    part after it is kept short because it is computed once per principle."""
    shared = (
        f"{INTRO}\n\nHuman: {prompt.strip()}\n\nOptions:\n(A) {first.strip()}\n\n"
        f"(B) {second.strip()}\n\n{COT_REQUEST if cot else ANSWER_REQUEST}\n\n"
    )
    return shared, question.strip()


def render_question(tokenizer, shared: str, ask: str) -> tuple[str, str]:
    """The chat-rendered question (generation cue included) cut where the principle starts:
    (prefix text, principle text up to the assistant's turn)."""
    messages = [{"role": "user", "content": shared + _SPLIT + ask}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    head, _, tail = text.rpartition(_SPLIT)
    return head, tail


# --- pairs and labels ------------------------------------------------------------------------


def combine(
    pair: Pair,
    labels: list[PrincipleLabel],
    feedback_model: str,
    constitution: Constitution,
    cot: bool,
    flags: tuple[str, ...] = (),
) -> Preference:
    """The record of a pair from its principles' labels: their mean, clamped under CoT."""
    p_a = ensemble([x.ordered for x in labels])
    return Preference(
        pair,
        clamp_cot(p_a) if cot else p_a,
        tuple(labels),
        feedback_model,
        content_hash(constitution),
        cot,
        flags,
    )


def feedback_principles(
    constitution: Constitution, pair: Pair, config: FeedbackConfig
) -> list[Principle]:
    """The principles that judge one pair: the configured ids, or a weighted draw without
    replacement seeded by (seed, pair), so a pair gets the same principles in any batch."""
    if config.principle_ids:
        by_id = {p.id: p for p in constitution.principles}
        unknown = [i for i in config.principle_ids if i not in by_id]
        if unknown:
            raise ConstitutionError(f"'{constitution.name}' has no principle {', '.join(unknown)}.")
        return [by_id[i] for i in config.principle_ids]
    enabled = list(constitution.enabled_principles)
    if not enabled:
        raise ConstitutionError(
            f"Every principle of '{constitution.name}' is disabled; enable "
            "at least one to label pairs."
        )
    if config.ensemble == 0 or config.ensemble >= len(enabled):
        return enabled
    rng = random.Random(stable_int("feedback", config.seed, pair.id))
    keys = [rng.random() ** (1 / p.weight) for p in enabled]  # weighted sampling w/o replacement
    ranked = sorted(range(len(enabled)), key=lambda i: -keys[i])[: config.ensemble]
    return [enabled[i] for i in sorted(ranked)]


class Labeller:
    """Scores A/B questions with one feedback model."""

    def __init__(self, loaded: LoadedModel, config: FeedbackConfig):
        self.loaded, self.config = loaded, config
        self.tokenizer = loaded.tokenizer
        self.options = resolve_option_tokens(self.tokenizer)
        self.backend = TransformersBackend(loaded, max_batch_size=config.batch_size)

    @property
    def name(self) -> str:
        """The judge as its records name it."""
        return self.loaded.name

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def fit_answers(self, pair: Pair, questions: list[str]) -> tuple[str, str, bool]:
        """The two answers, cut so the longest question fits `max_tokens` (answers share the
        room evenly; a short one leaves its rest to the other)."""
        head, tail = render_question(
            self.tokenizer,
            *question_parts(pair.prompt, "", "", max(questions, key=len), self.config.cot),
        )
        fixed = len(self.encode(head)) + len(self.encode(tail)) + len(self.options.cue) + 8
        if self.config.cot:
            fixed += self.config.cot_max_tokens
        room = self.config.max_tokens - fixed
        a, b = self.encode(pair.response_a), self.encode(pair.response_b)
        if len(a) + len(b) <= room:
            return pair.response_a, pair.response_b, False
        if room < 32:
            raise DatasetError(
                f"The prompt of pair {pair.id} leaves {max(room, 0)} tokens for "
                f"the answers within max_tokens={self.config.max_tokens}; raise "
                "max_tokens or shorten the prompt."
            )
        cap_a = max(room // 2, room - len(b))
        cap_b = room - min(len(a), cap_a)
        cut = self.tokenizer.decode
        return cut(a[:cap_a]), cut(b[:cap_b]), True

    def items(
        self,
        pair: Pair,
        principles: list[Principle],
        rationales: dict[tuple[int, str], str] | None = None,
    ) -> tuple[list[ScoreItem], bool]:
        """Score items in the order (order, principle) for order AB then BA, and whether the
        answers were cut. With rationales (CoT), each item's suffix carries its rationale."""
        first, second, truncated = self.fit_answers(
            pair, [p.preference_question for p in principles]
        )
        items = []
        for order, (x, y) in enumerate([(first, second), (second, first)]):
            for principle in principles:
                shared, ask = question_parts(
                    pair.prompt, x, y, principle.preference_question, self.config.cot
                )
                head, tail = render_question(self.tokenizer, shared, ask)
                suffix = self.encode(tail)
                if rationales is not None:
                    suffix += self.encode(rationales[(order, principle.id)].strip() + "\n")
                items.append(ScoreItem(self.encode(head), suffix + self.options.cue))
        return items, truncated

    def rationales(
        self, pairs: list[Pair], principles: list[list[Principle]]
    ) -> list[dict[tuple[int, str], str]]:
        """CoT: one greedy rationale per (pair, order, principle)."""
        keys, conversations = [], []
        for n, (pair, chosen) in enumerate(zip(pairs, principles)):
            first, second, _ = self.fit_answers(pair, [p.preference_question for p in chosen])
            for order, (x, y) in enumerate([(first, second), (second, first)]):
                for principle in chosen:
                    shared, ask = question_parts(
                        pair.prompt, x, y, principle.preference_question, cot=True
                    )
                    keys.append((n, order, principle.id))
                    conversations.append([{"role": "user", "content": shared + ask}])
        sampling = SamplingConfig(max_new_tokens=self.config.cot_max_tokens, temperature=0.0)
        out: list[dict[tuple[int, str], str]] = [{} for _ in pairs]
        for (n, order, pid), gen in zip(keys, self.backend.generate(conversations, sampling)):
            out[n][(order, pid)] = gen.text
        return out

    def label(self, constitution: Constitution, pairs: list[Pair]) -> list[Preference]:
        """Soft labels for a batch of pairs: every (pair, order, principle) scored in one
        batched call, pairs with identical answers labelled 0.5 without asking."""
        todo = [p for p in pairs if not p.identical]
        chosen = [feedback_principles(constitution, p, self.config) for p in todo]
        labelled = {pref.pair.id: pref for pref in self.scored(constitution, todo, chosen)}
        return [labelled.get(p.id) or self.identical(p, constitution) for p in pairs]

    def label_stepwise(
        self, constitution: Constitution, pair: Pair, step: int = 4
    ) -> Iterator[Preference]:
        """One pair, `step` principles at a time, for a view that shows each principle's
        verdict as it comes: every yield is the record so far (its labels grow); the last is
        the record `label` gives."""
        if pair.identical:
            yield self.identical(pair, constitution)
            return
        principles = feedback_principles(constitution, pair, self.config)
        labels: list[PrincipleLabel] = []
        flags: set[str] = set()
        for start in range(0, len(principles), step):
            (part,) = self.scored(constitution, [pair], [principles[start : start + step]])
            labels += part.labels
            flags |= set(part.flags)
            yield combine(
                pair, labels, self.loaded.name, constitution, self.config.cot, tuple(sorted(flags))
            )

    def identical(self, pair: Pair, constitution: Constitution) -> Preference:
        """Identical answers carry no preference: 0.5, flagged, the model not asked."""
        return Preference(
            pair,
            0.5,
            (),
            self.loaded.name,
            content_hash(constitution),
            self.config.cot,
            ("identical",),
        )

    def scored(
        self, constitution: Constitution, pairs: list[Pair], chosen: list[list[Principle]]
    ) -> list[Preference]:
        """Each pair judged by its chosen principles, both orders, in one batched call."""
        rationales = (
            self.rationales(pairs, chosen) if self.config.cot and pairs else [None] * len(pairs)
        )
        items: list[ScoreItem] = []
        spans: list[tuple[int, int]] = []
        cut: list[bool] = []
        for pair, principles, why in zip(pairs, chosen, rationales):
            pair_items, truncated = self.items(pair, principles, why)
            spans.append((len(items), len(principles)))
            items += pair_items
            cut.append(truncated)
        scores = (
            option_logprobs(
                self.loaded, items, [self.options.a, self.options.b], self.config.batch_size
            )
            if items
            else []
        )
        records = []
        for pair, principles, why, (start, k), truncated in zip(
            pairs, chosen, rationales, spans, cut
        ):
            labels = []
            for j, principle in enumerate(principles):
                ab, ba = scores[start + j], scores[start + k + j]
                ordered = both_orders((ab[0], ab[1]), (ba[0], ba[1]))
                labels.append(
                    PrincipleLabel(
                        principle.id,
                        ordered.p_a_ab,
                        ordered.p_a_ba,
                        ordered.mass_ab,
                        ordered.mass_ba,
                        why[(0, principle.id)] if why else "",
                        why[(1, principle.id)] if why else "",
                    )
                )
            records.append(
                combine(
                    pair,
                    labels,
                    self.loaded.name,
                    constitution,
                    self.config.cot,
                    ("truncated",) if truncated else (),
                )
            )
        return records


class Judge(Protocol):
    """What labels pairs: the log-prob `Labeller` here, or the representation judge."""

    name: str
    config: FeedbackConfig

    def label(self, constitution: Constitution, pairs: list[Pair]) -> list[Preference]: ...


def make_pairs(
    backend: GenerationBackend,
    prompts: list[PromptRecord],
    sampling: SamplingConfig,
    places: list[int] | None = None,
) -> list[Pair]:
    """Two sampled answers per prompt from one policy: the prompt in place i of its set
    (`places`, default 0, 1, …) is seeded seed+2i and seed+2i+1, so a run sampled in chunks,
    or resumed, draws the same answers as one sampled at once."""
    places = list(range(len(prompts))) if places is None else places
    conversations = [[{"role": "user", "content": p.prompt}] for p in prompts for _ in range(2)]
    seeds = [sampling.seed + 2 * i + k for i in places for k in range(2)]
    answers = backend.generate(conversations, sampling, seeds=seeds)
    pairs = []
    for n, prompt in enumerate(prompts):
        a, b = answers[2 * n].text, answers[2 * n + 1].text
        if a.strip() and b.strip():
            pairs.append(Pair(prompt.prompt, a, b, prompt.category, prompt.split, backend.name))
    return pairs


def run_labelling(
    labeller: Judge,
    constitution: Constitution,
    pairs: list[Pair],
    out: str | Path,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[Preference]:
    """Label every pair not yet in `out/labels.jsonl`, a batch at a time (each batch
    appended as it finishes, so a cancelled run resumes), and return all the records."""
    out = Path(out)
    claim_run_folder(
        out,
        {
            "constitution": constitution.name,
            "constitution_hash": content_hash(constitution),
            "feedback_model": labeller.name,
            "feedback": asdict(labeller.config),
        },
    )
    log = LabelLog(out)
    done = log.done_ids()
    gone = done - {p.id for p in pairs}
    if gone:
        raise DatasetError(
            f"The pairs changed since {out} was labelled: {len(gone)} of its "
            f"{len(done)} labelled pairs (e.g. {sorted(gone)[0]}) are not among "
            "the pairs given now, so its labels would mix two pair sets. Label "
            "into a new folder, or give the pairs it was labelled on."
        )
    todo = [p for p in pairs if p.id not in done]
    per_batch = max(1, labeller.config.batch_size // 4)
    finished = len(pairs) - len(todo)
    for start in range(0, len(todo), per_batch):
        batch = todo[start : start + per_batch]
        log.append(labeller.label(constitution, batch))
        finished += len(batch)
        if on_batch:
            on_batch(finished, len(pairs))
    return log.read()
