"""One Accuracy for every judge: its interval, the pairs it rests on, its length control."""

import math

import pytest

from pipeline.core.stats import Accuracy, counted_accuracy, wilson_interval, with_length


def test_wilson_interval_by_hand():
    low, high = wilson_interval(0, 2)
    assert low == 0 and high == pytest.approx(0.6576, abs=1e-3)
    low, high = wilson_interval(12, 100)
    assert (low, high) == (pytest.approx(0.0700, abs=1e-3), pytest.approx(0.1981, abs=1e-3))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_a_counted_accuracy_has_its_wilson_interval_pairs_and_length_control():
    # 4 pairs: people chose the longer answer in the first three (the judge right in 2 of
    # them), the shorter in the last (the judge right); one pair of equal lengths
    acc = counted_accuracy([True, True, False, True, False], [True, True, True, False, None])
    assert acc.value == 0.6 and (acc.low, acc.high) == wilson_interval(3, 5)
    assert acc.compared == 5 and acc.longer == 0.75
    assert acc.controlled == pytest.approx((2 / 3 + 1) / 2)
    assert acc.text == (
        "60% (95% interval 23%–88%) on 5 pairs, length-controlled 83%; always-longer 75%"
    )


def test_without_a_pair_the_accuracy_says_so_and_one_side_gives_no_control():
    empty = counted_accuracy([], [])
    assert math.isnan(empty.value) and empty.text == "n/a (no decided comparisons)"
    one_side = counted_accuracy([True, False], [True, True])
    assert one_side.controlled is None and one_side.longer == 1.0
    assert "length-controlled n/a; always-longer 100%" in one_side.text


def test_a_bootstrap_interval_is_kept_and_an_old_record_reads_without_pairs():
    acc = with_length(Accuracy(0.5, 0.3, 0.7, None), [True, False], [True, False])
    assert (acc.low, acc.high, acc.compared, acc.controlled) == (0.3, 0.7, 2, 0.5)
    assert Accuracy(0.5, 0.4, 0.6, 0.5).text == "50% (95% interval 40%–60%), length-controlled 50%"
