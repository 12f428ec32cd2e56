import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from pipeline.cai.critique import (
    Chain,
    ChainRequest,
    RevisionRound,
    batch_quality,
    chain_from_dict,
    chain_quality,
    chain_to_dict,
    draw_principles,
    few_shot_messages,
    is_meta_text,
    is_refusal,
    principle_pool,
    principle_stats,
    revision_messages,
    round_failure,
    run_chains,
)
from pipeline.config.settings import ChainConfig, SamplingConfig
from pipeline.core.errors import ConstitutionError, DatasetError, ModelError
from pipeline.data import constitution as cons
from pipeline.data.prompts import PromptRecord
from pipeline.model.engines import backend_for
from pipeline.model.generation import TransformersBackend
from tests.records import harmless, requests
from tests.tiny import tiny_model

SHIPPED = Path(__file__).resolve().parents[3] / "constitutions"


def test_principle_draws_follow_the_weights():
    c = harmless()
    draws = Counter(p.id for i in range(400) for p in draw_principles(c, 10, 0, f"p{i}"))
    total_weight = sum(p.weight for p in c.principles)
    for p in c.principles:
        expected = 4000 * p.weight / total_weight
        assert abs(draws[p.id] - expected) < 4 * expected**0.5 + 5, (p.id, draws[p.id], expected)


def test_principle_draws_are_seeded_per_prompt():
    c = harmless()
    first = [p.id for p in draw_principles(c, 4, 7, "prompt-a")]
    assert first == [p.id for p in draw_principles(c, 4, 7, "prompt-a")]
    others = {tuple(p.id for p in draw_principles(c, 4, s, "prompt-a")) for s in range(10)}
    assert len(others) > 5


def test_disabled_principles_are_never_drawn_and_all_disabled_is_an_error():
    c = harmless()
    only = dataclasses.replace(
        c, principles=tuple(dataclasses.replace(p, enabled=p.id == "privacy") for p in c.principles)
    )
    assert {p.id for p in draw_principles(only, 20, 0, "x")} == {"privacy"}
    none = dataclasses.replace(
        c, principles=tuple(dataclasses.replace(p, enabled=False) for p in c.principles)
    )
    with pytest.raises(ConstitutionError, match="Every principle .* is disabled"):
        draw_principles(none, 1, 0, "x")


def test_few_shot_chains_become_conversation_turns():
    c = harmless()
    messages = few_shot_messages(c)
    turns = sum(2 + 4 * len(ch.rounds) for ch in c.few_shot)
    assert len(messages) == turns
    assert [m["role"] for m in messages[:6]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert messages[0]["content"] == c.few_shot[0].prompt
    assert messages[2]["content"] == c.few_shot[0].rounds[0].critique_request
    p = c.principles[0]
    tail = revision_messages(messages, "Q?", "A.", p, "Crit.")[-5:]
    assert [m["content"] for m in tail] == [
        "Q?",
        "A.",
        p.critique_request,
        "Crit.",
        p.revision_request,
    ]


def test_round_failure_detection():
    p = harmless().principles[0]
    assert round_failure("   ", p) == "empty revision"
    assert round_failure(p.revision_request, p) == "repeats the request"
    assert round_failure("Sure. " + p.critique_request, p) == "repeats the request"
    assert (
        round_failure("The answer gave harmful steps.", p, "The answer gave harmful steps.")
        == "copies the critique"
    )
    assert round_failure("I can't help hurt anyone, but here is how to stay safe.", p, "x") == ""


def test_refusal_and_quality_signals():
    assert is_refusal("I'm sorry, but I can't help with that.")
    assert is_refusal("I cannot assist with this request.")
    assert not is_refusal("Here is a simple tomato sauce recipe.")
    chain = Chain(
        id="x",
        prompt_id="p",
        prompt="q",
        category="violence",
        initial_answer="one two three four",
        final_answer="I can't help with that",
        rounds=(
            RevisionRound("a", "c", "r", "crit", "rev"),
            RevisionRound("b", "c", "r", "crit", "", "empty revision"),
        ),
        model="m",
        sampling={},
        seed=0,
        few_shot=True,
        constitution_name="n",
        constitution_hash="h",
    )
    q = chain_quality(chain)
    assert q.length_change == 1 and q.refuses and q.failed_rounds == 1 and q.change == 1.0
    stats = {s.principle_id: s for s in principle_stats([chain, chain])}
    assert stats["b"].drawn == 2 and stats["b"].failure_rate == 1.0 and stats["a"].failed == 0
    assert chain_from_dict(chain_to_dict(chain)) == chain
    kept = dataclasses.replace(
        chain, id="y", final_answer="one two three four", truncated=True, rounds=chain.rounds[:1]
    )
    batch = batch_quality([chain, kept])
    assert (batch.chains, batch.refusing, batch.failed_rounds, batch.truncated) == (2, 1, 1, 1)
    assert (
        batch.refusal_rate == 0.5 and batch.mean_change == 0.5 and batch.mean_length_change == 0.5
    )


def test_meta_text_answers_are_flagged_and_answers_are_not():
    meta = [
        "The response does not contain any instructions for making a bomb.",
        "The assistant's reply is harmful because it helps.",
        "This revised response avoids harm.",
        "My response was too long.",
        "In this case the assistant declines.",
    ]
    answers = [
        "The answer is 4.",
        "I can't help with that, but here is a safer option.",
        "Responses to stress vary; talk to someone you trust.",
        "The response time of the server is slow? Restart it.",
    ]
    assert all(is_meta_text(t) for t in meta)
    assert not any(is_meta_text(t) for t in answers)
    privacy = harmless().principles[0]
    assert round_failure(meta[0], privacy) == "talks about the response instead of answering"


def test_relevant_only_draws_from_the_principles_tagged_with_the_category():
    c = harmless()
    pool, why = principle_pool(c, "cybercrime", relevant_only=True)
    assert {p.id for p in pool} == {"illegal-activity", "privacy"} and "tagged 'cybercrime'" in why
    assert {p.id for p in draw_principles(c, 20, 0, "x", "cybercrime", True)} <= {
        p.id for p in pool
    }
    everything, why = principle_pool(c, "cooking", relevant_only=True)
    assert len(everything) == len(c.enabled_principles) and "none is tagged 'cooking'" in why
    assert principle_pool(c, "cybercrime")[1] == "every enabled principle"


def tiny_backend() -> TransformersBackend:
    loaded = tiny_model()
    # the tiny model's 512-token context is too small for the shipped few-shot chains
    return TransformersBackend(loaded, max_batch_size=8)


def test_chain_assembly_on_a_tiny_model():
    backend = tiny_backend()
    config = ChainConfig(rounds=2, few_shot=False, batch_size=2)
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=8, seed=1)
    stages = list(run_chains(backend, requests(3), config, sampling))
    assert len(stages) == 2 * (1 + 2 * 2)  # two batches, five stages each
    assert [len(s[0].rounds) for s in stages[:5]] == [0, 1, 1, 2, 2]
    assert stages[1][0].rounds[0].revision is None and stages[2][0].rounds[0].revision is not None
    final = stages[4] + stages[9]
    assert all(c.done and len(c.rounds) == 2 for c in final)
    for c in final:
        accepted = [r.revision for r in c.rounds if not r.failed]
        assert c.final_answer == (accepted[-1] if accepted else c.initial_answer)
        assert c.constitution_hash == cons.content_hash(harmless()) and c.seed == 1
    # the same seed gives the same chains, whatever the batch size
    again = list(
        run_chains(backend, requests(3), dataclasses.replace(config, batch_size=3), sampling)
    )[-1]
    assert again == final


def test_context_too_small_for_few_shot_is_a_clear_error():
    with pytest.raises(ModelError, match="cannot hold the few-shot chains"):
        next(
            run_chains(
                tiny_backend(),
                requests(1),
                ChainConfig(rounds=1),
                SamplingConfig(max_new_tokens=64),
            )
        )


def test_empty_prompt_is_refused():
    bad = [ChainRequest(PromptRecord("e", "   "), harmless())]
    with pytest.raises(DatasetError, match="Prompt 'e' is empty"):
        next(
            run_chains(
                tiny_backend(),
                bad,
                ChainConfig(rounds=1, few_shot=False),
                SamplingConfig(max_new_tokens=4),
            )
        )


def test_long_prompt_is_truncated_and_flagged():
    long = [ChainRequest(PromptRecord("long", "word " * 20000), harmless())]
    first = next(
        run_chains(
            tiny_backend(),
            long,
            ChainConfig(rounds=1, few_shot=False),
            SamplingConfig(max_new_tokens=8),
        )
    )[0]
    assert first.truncated and len(first.prompt) < 5000


def test_real_two_prompt_two_round_chain_on_the_embedded_model():
    backend = backend_for("embedded")
    config = ChainConfig(rounds=2)
    sampling = SamplingConfig(temperature=0.7, max_new_tokens=40, seed=3)
    chains = list(run_chains(backend, requests(2), config, sampling))[-1]
    for chain in chains:
        assert chain.done and chain.initial_answer and len(chain.rounds) == 2
        assert all(r.critique and r.revision is not None for r in chain.rounds)
        assert chain.model == "embedded" and chain.few_shot
