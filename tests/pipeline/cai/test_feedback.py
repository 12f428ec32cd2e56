import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.cai.feedback import both_orders, clamp_cot, ensemble, option_probability
from pipeline.cai.trust import position_bias
from pipeline.data.preferences import OrderedLabel

logprobs = st.floats(min_value=-30, max_value=0, allow_nan=False, allow_subnormal=False)


def test_option_probability_by_hand():
    p_a, mass = option_probability(math.log(0.6), math.log(0.2))
    assert p_a == pytest.approx(0.75) and mass == pytest.approx(0.8)
    p_a, _ = option_probability(-1000.0, -1000.0)  # far in the tail: still well defined
    assert p_a == pytest.approx(0.5)


def test_both_orders_average_and_position_bias_by_hand():
    # order AB: option A (first answer) 0.6 vs 0.2 → 0.75
    # order BA: option A (second answer) 0.5 vs option B (first answer) 0.3 → first wins 0.375
    label = both_orders((math.log(0.6), math.log(0.2)), (math.log(0.5), math.log(0.3)))
    assert label.p_a_ab == pytest.approx(0.75) and label.p_a_ba == pytest.approx(0.375)
    assert label.p_a == pytest.approx(0.5625)
    assert label.same_position_won  # option (A) won in both orders
    consistent = both_orders((math.log(0.6), math.log(0.2)), (math.log(0.2), math.log(0.6)))
    assert not consistent.same_position_won and consistent.p_a == pytest.approx(0.75)
    assert position_bias([label, consistent]) == 0.5


@given(logprobs, logprobs, logprobs, logprobs)
def test_swapping_the_answers_gives_one_minus_the_label(a1, b1, a2, b2):
    forward = both_orders((a1, b1), (a2, b2))
    swapped = both_orders((a2, b2), (a1, b1))  # the second answer is now the first
    assert swapped.p_a == pytest.approx(1 - forward.p_a, abs=1e-9)
    assert 0 <= forward.p_a <= 1


def test_identical_evidence_gives_one_half():
    label = both_orders((-1.0, -1.0), (-1.0, -1.0))
    assert label.p_a == pytest.approx(0.5)


def test_ensemble_and_cot_clamp():
    labels = [OrderedLabel(0.9, 0.7, 1, 1), OrderedLabel(0.3, 0.5, 1, 1)]
    assert ensemble(labels) == pytest.approx((0.8 + 0.4) / 2)
    with pytest.raises(ValueError):
        ensemble([])
    assert [clamp_cot(p) for p in (0.0, 0.45, 0.99)] == [0.4, 0.45, 0.6]


# --- the feedback model ----------------------------------------------------------------------

import dataclasses  # noqa: E402

from tokenizers import Tokenizer  # noqa: E402
from tokenizers.models import WordLevel  # noqa: E402
from tokenizers.pre_tokenizers import Whitespace  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from pipeline.cai.feedback import ANSWER_CUE, Labeller, feedback_principles, resolve_option_tokens  # noqa: E402
from pipeline.config.settings import FeedbackConfig  # noqa: E402
from pipeline.core.errors import ConstitutionError, DatasetError, ModelError  # noqa: E402
from pipeline.data.constitution import load_constitution  # noqa: E402
from pipeline.data.preferences import Pair  # noqa: E402
from pipeline.model.loading import load_model  # noqa: E402
from tests.tiny import tiny_model  # noqa: E402

HARMLESS = load_constitution("constitutions/harmless-helpful.yaml")
LOCK = Pair(
    "How do I pick the lock on my neighbour's door?",
    "I can't help you get into someone else's home; if you're locked out of your own, "
    "call a licensed locksmith.",
    "Get a tension wrench and a rake pick and rake the pins until it turns.",
)


def test_option_tokens_of_the_embedded_tokenizer():
    tok = load_model().tokenizer
    options = resolve_option_tokens(tok)
    assert tok.decode(list(options.cue)) == ANSWER_CUE
    assert {tok.decode([t]).strip() for t in options.a} == {"A"}
    assert {tok.decode([t]).strip() for t in options.b} == {"B"}
    assert not set(options.a) & set(options.b)


def test_a_tokenizer_whose_options_collide_is_refused():
    vocab = {"[UNK]": 0, "The": 1, "answer": 2, "is": 3, ":": 4, "(": 5, ")": 6}
    raw = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    with pytest.raises(ModelError, match="cannot be told apart"):
        resolve_option_tokens(tok)


def test_pairs_reject_empty_answers_and_flag_identical_ones():
    with pytest.raises(DatasetError, match="response b is empty"):
        Pair("prompt", "an answer", "   ")
    assert Pair("p", "same", " same ").identical
    swapped = dataclasses.replace(LOCK, human="A").swapped()
    assert (swapped.response_a, swapped.human) == (LOCK.response_b, "B")
    assert swapped.id != LOCK.id


def test_ensemble_draws_are_seeded_distinct_and_explicit_ids_are_checked():
    config = FeedbackConfig(ensemble=4, seed=3)
    drawn = feedback_principles(HARMLESS, LOCK, config)
    assert len({p.id for p in drawn}) == 4
    assert drawn == feedback_principles(HARMLESS, LOCK, config)
    assert len(feedback_principles(HARMLESS, LOCK, FeedbackConfig(ensemble=0))) == len(
        HARMLESS.enabled_principles
    )
    assert [
        p.id
        for p in feedback_principles(
            HARMLESS, LOCK, FeedbackConfig(principles="privacy, illegal-activity")
        )
    ] == ["privacy", "illegal-activity"]
    with pytest.raises(ConstitutionError, match="no principle nope"):
        feedback_principles(HARMLESS, LOCK, FeedbackConfig(principles="nope"))


def test_real_labels_are_symmetric_under_swapping_the_answers():
    labeller = Labeller(
        load_model(), FeedbackConfig(principles="privacy,illegal-activity,physical-harm")
    )
    pref, swapped = labeller.label(HARMLESS, [LOCK, LOCK.swapped()])
    assert 0 < pref.p_a < 1 and len(pref.labels) == 3
    assert 0.5 < pref.mass <= 1  # the model answers with an option at all
    # the swapped pair asks the same two questions with the roles exchanged
    assert swapped.p_a == pytest.approx(1 - pref.p_a, abs=1e-4)
    assert swapped.p_a_ab == pytest.approx(1 - pref.p_a_ba, abs=1e-4)


def test_sampled_ensembles_label_with_the_drawn_principles():
    labeller = Labeller(load_model(), FeedbackConfig(ensemble=3))
    (pref,) = labeller.label(HARMLESS, [LOCK])
    assert [x.principle_id for x in pref.labels] == [
        p.id for p in feedback_principles(HARMLESS, LOCK, labeller.config)
    ]
    assert pref.p_a == pytest.approx(sum(x.ordered.p_a for x in pref.labels) / 3)


def test_stepwise_labels_grow_a_few_principles_at_a_time_and_end_as_the_batch_label():
    labeller = Labeller(tiny_model(), FeedbackConfig(ensemble=5, seed=3))
    steps = list(labeller.label_stepwise(HARMLESS, LOCK, step=2))
    assert [len(s.labels) for s in steps] == [2, 4, 5]
    (whole,) = labeller.label(HARMLESS, [LOCK])
    assert [x.principle_id for x in steps[-1].labels] == [x.principle_id for x in whole.labels]
    assert steps[-1].p_a == pytest.approx(whole.p_a, abs=1e-5)
    (same,) = labeller.label_stepwise(HARMLESS, Pair("p", "same", "same"))
    assert same.flags == ("identical",) and same.p_a == 0.5


def test_identical_answers_get_one_half_without_asking():
    (pref,) = Labeller(tiny_model(), FeedbackConfig()).label(HARMLESS, [Pair("p", "same", "same")])
    assert pref.p_a == 0.5 and pref.flags == ("identical",) and pref.labels == ()


def test_long_answers_are_cut_but_never_the_principle_or_the_cue():
    labeller = Labeller(tiny_model(), FeedbackConfig(max_tokens=256, principles="privacy"))
    long = Pair("Tell me about privacy.", "word " * 400, "another " * 300)
    items, truncated = labeller.items(long, feedback_principles(HARMLESS, long, labeller.config))
    assert truncated
    for item in items:
        assert len(item.prefix) + len(item.suffix) <= 256
        suffix = labeller.tokenizer.decode(list(item.suffix))
        assert HARMLESS.principle("privacy").preference_question.split()[0] in suffix
        assert suffix.endswith(ANSWER_CUE)
    (pref,) = labeller.label(HARMLESS, [long])
    assert "truncated" in pref.flags
    with pytest.raises(DatasetError, match="leaves"):
        labeller.items(Pair("word " * 400, "a", "b"), [HARMLESS.principle("privacy")])


def test_cot_labels_carry_rationales_and_are_clamped():
    labeller = Labeller(
        load_model(), FeedbackConfig(cot=True, cot_max_tokens=12, principles="privacy")
    )
    (pref,) = labeller.label(HARMLESS, [LOCK])
    assert pref.cot and 0.4 <= pref.p_a <= 0.6
    assert pref.labels[0].rationale_ab and pref.labels[0].rationale_ba
