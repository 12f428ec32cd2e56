"""The constitution direction w_c and the generation labels behind w_g.

w_c from the constitution alone, no labels: for each enabled principle our code writes two
instructions — one that follows it (its revision request read as an instruction) and one
that asks for the opposite — the model answers a few prompts under each, and those answers
are read back in the plain conversation (no instruction), the way pair answers are read.
The principle's direction is the mean of (following − opposing) answer states; w_c is the
principles' weighted mean. Its sign is fixed by construction: it points to what the
constitution asks for.

Generation labels: the policy's own preference between two answers is its length-normalised
log-likelihood margin; a probe fitted on those labels is w_g, the direction generation
already follows."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from pipeline.config.settings import SamplingConfig
from pipeline.core.errors import ConstitutionError
from pipeline.data.constitution import Constitution, Principle, as_instruction
from pipeline.data.preferences import Pair
from pipeline.model.generation import TransformersBackend, chat
from pipeline.model.loading import LoadedModel
from pipeline.model.scoring import sequence_logprobs
from pipeline.model.states_cache import cached_answers
from pipeline.values.features import answer_states

STIMULUS_PROMPTS = (
    "How can I get into my neighbour's house while they are away?",
    "My coworker keeps taking credit for my work. What should I do?",
    "What household chemicals should never be mixed?",
    "Tell me about the health benefits of drinking bleach.",
)
STIMULUS_SAMPLING = SamplingConfig(max_new_tokens=48, temperature=0.0)


def instructions(p: Principle) -> tuple[str, str]:
    """(follow, oppose): the principle as an instruction, and its opposite."""
    follow = as_instruction(p.revision_request)
    return follow, f"Do the opposite of this instruction: {follow}"


@dataclass(frozen=True)
class ConstitutionDirection:
    """w_c per layer [layers, hidden], the per-principle directions, and the answers the
    model wrote under each principle's two instructions (shown, so a reader can check that
    the stimuli differ)."""

    total: torch.Tensor
    principles: dict[str, torch.Tensor]
    weights: dict[str, float]
    examples: dict[str, tuple[str, str]]  # principle id → (following answer, opposing answer)


def constitution_direction(
    loaded: LoadedModel,
    constitution: Constitution,
    pooling: str,
    layers: list[int] | None = None,
    prompts: tuple[str, ...] = STIMULUS_PROMPTS,
    batch_size: int = 16,
) -> ConstitutionDirection:
    principles = list(constitution.enabled_principles)
    if not principles:
        raise ConstitutionError(
            f"Every principle of '{constitution.name}' is disabled; enable "
            "at least one to read its direction."
        )
    backend = TransformersBackend(loaded, max_batch_size=batch_size)
    conversations, rows = [], []
    for p in principles:
        for side, instruction in zip((0, 1), instructions(p)):
            for prompt in prompts:
                conversations.append(chat(prompt, instruction))
                rows.append((p.id, side, prompt))

    def write(rows: list[int]) -> list[str]:
        todo = [conversations[i] for i in rows]
        return [
            g.text or "…" for g in backend.generate(todo, STIMULUS_SAMPLING, seeds=[0] * len(todo))
        ]

    sampling = asdict(STIMULUS_SAMPLING)
    answers = cached_answers(loaded, [[c, sampling, 0] for c in conversations], write)
    states = answer_states(
        loaded, [prompt for _, _, prompt in rows], answers, pooling, layers, batch_size
    )
    per_principle, examples = {}, {}
    k = len(prompts)
    for n, p in enumerate(principles):
        start = 2 * k * n
        follow, oppose = states[start : start + k], states[start + k : start + 2 * k]
        per_principle[p.id] = (follow - oppose).mean(0)
        examples[p.id] = (answers[start], answers[start + k])
    weights = {p.id: p.weight for p in principles}
    total = torch.stack([weights[i] * v for i, v in per_principle.items()]).sum(0) / sum(
        weights.values()
    )
    return ConstitutionDirection(total, per_principle, weights, examples)


def generation_margins(
    loaded: LoadedModel, pairs: tuple[Pair, ...] | list[Pair], batch_size: int = 8
) -> list[float]:
    """Per pair, the policy's mean log-probability per token of answer A minus that of B."""
    tok = loaded.tokenizer
    contexts, continuations = [], []
    for answer_of in ("response_a", "response_b"):
        for p in pairs:
            head = tok.apply_chat_template(
                [{"role": "user", "content": p.prompt}], add_generation_prompt=True, tokenize=False
            )
            contexts.append(tok(head, add_special_tokens=False)["input_ids"])
            continuations.append(
                tok(getattr(p, answer_of), add_special_tokens=False)["input_ids"]
                or [tok.eos_token_id]
            )
    scores = sequence_logprobs(loaded, contexts, continuations, batch_size)
    n = len(pairs)
    return [scores[i].mean - scores[n + i].mean for i in range(n)]
