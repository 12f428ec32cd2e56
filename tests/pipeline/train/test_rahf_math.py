"""RAHF's losses, by hand."""

import math

import pytest
import torch

from pipeline.train.rahf_math import (
    activity_pattern,
    mean_token_logprob,
    representation_loss,
    representation_target,
    scit_loss,
)


def test_the_target_is_the_base_moved_by_alpha_times_the_pattern():
    h_good, h_bad = torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 1.0]])
    v = activity_pattern(h_good, h_bad)
    assert v.tolist() == [[2.0, 0.0]]
    assert representation_target(torch.tensor([[0.5, -1.0]]), v, 5.0).tolist() == [[10.5, -1.0]]


def test_the_representation_loss_is_the_mean_token_distance_over_answer_tokens():
    # 2 layers, 1 row, 3 tokens, 2 dims; the first token is the prompt's (masked out)
    target = torch.zeros(2, 1, 3, 2)
    h = torch.zeros(2, 1, 3, 2)
    h[0, 0, 0] = torch.tensor([100.0, 0.0])  # masked: does not count
    h[0, 0, 1] = torch.tensor([3.0, 4.0])  # distance 5
    h[1, 0, 2] = torch.tensor([0.0, 1.0])  # distance 1; the other two answer tokens 0
    mask = torch.tensor([[0, 1, 1]])
    assert representation_loss(h, target, mask).item() == pytest.approx((5 + 0 + 0 + 1) / 4)
    assert representation_loss(target, target, mask).item() == 0.0


def test_mean_token_logprob_averages_the_masked_tokens():
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    targets = torch.tensor([[0, 1, 1]])
    got = mean_token_logprob(logits, targets, torch.tensor([[0, 1, 1]]))
    assert got.item() == pytest.approx((math.log(0.75) + math.log(0.1)) / 2, rel=1e-5)


def test_the_scit_loss_is_the_two_likelihoods_plus_the_hinges():
    t = torch.tensor
    # preferred: −1 under good, −3 under bad (gap 2 ≥ margin 1: no hinge);
    # dispreferred: −2 under bad, −2.5 under good (gap 0.5 < 1: hinge 0.5)
    loss = scit_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.5]), margin=1.0)
    assert loss.item() == pytest.approx(1.0 + 2.0 + 0.0 + 0.5)
    flipped = scit_loss(t([-3.0]), t([-1.0]), t([-2.0]), t([-2.5]), margin=1.0)
    assert flipped.item() == pytest.approx(3.0 + 2.0 + 3.0 + 0.5)  # preferred likelier under bad
