import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.feedback import (OrderedLabel, both_orders, clamp_cot, ensemble, option_probability,
                               position_bias)

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
