"""PPO terms on hand-computed tensors."""

import math

import pytest
import torch

from pipeline.train.ppo_math import (
    AdaptiveKL,
    entropy,
    gae,
    per_token_kl,
    policy_loss,
    token_rewards,
    value_loss,
    whiten,
)

MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_per_token_kl_and_rewards():
    kl = per_token_kl(
        torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -9.0]]),
        torch.tensor([[-1.5, -2.0, -1.0], [-0.5, -1.0, -1.0]]),
    )
    assert torch.allclose(kl, torch.tensor([[0.5, 0.0, 0.5], [-0.5, 0.0, -8.0]]))
    rewards = token_rewards(torch.tensor([2.0, -1.0]), kl, beta=0.1, mask=MASK)
    # −β·KL everywhere real, the score added at each answer's last real token, 0 on padding
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.0, 1.95], [0.05, -1.0, 0.0]]))


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, 2.0, 0.0]])
    values = torch.tensor([[0.5, 0.4, 0.3], [1.0, 1.0, 7.0]])  # 7.0 sits on padding
    gamma, lam = 0.9, 0.8
    adv, ret = gae(rewards, values, MASK, gamma, lam)
    # row 0: δ2 = 1 − 0.3 = 0.7; δ1 = 0 + 0.9·0.3 − 0.4 = −0.13; δ0 = 0 + 0.9·0.4 − 0.5 = −0.14
    a2 = 0.7
    a1 = -0.13 + gamma * lam * a2
    a0 = -0.14 + gamma * lam * a1
    # row 1 ends at t=1: δ1 = 2 + 0.9·0 − 1 = 1; δ0 = 0.5 + 0.9·1 − 1 = 0.4
    b1 = 1.0
    b0 = 0.4 + gamma * lam * b1
    assert torch.allclose(adv, torch.tensor([[a0, a1, a2], [b0, b1, 0.0]]))
    assert torch.allclose(ret, adv + torch.tensor([[0.5, 0.4, 0.3], [1.0, 1.0, 0.0]]))


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 0.25, 0.125]])
    adv, _ = gae(rewards, values, torch.ones(1, 3), 1.0, 1.0)
    assert torch.allclose(adv, torch.tensor([[6 - 0.5, 5 - 0.25, 3 - 0.125]]))


def test_whitening():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])
    w = whiten(x, MASK)
    real = w[MASK.bool()]
    assert real.mean().item() == pytest.approx(0, abs=1e-6)
    assert real.pow(2).mean().item() == pytest.approx(1, abs=1e-4)
    assert w[1, 2] == 0  # padding stays out of the statistics and at zero
    kept = whiten(x, MASK, shift_mean=False)[MASK.bool()]
    assert kept.mean().item() == pytest.approx(3.0, abs=1e-5)


def test_clipped_policy_loss_by_hand():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.9, 0.5]]))  # ratios 1.5, 0.9, 0.5
    adv = torch.tensor([[1.0, 1.0, -2.0]])
    parts = policy_loss(new, old, adv, torch.ones(1, 3), clip=0.2)
    # token 0: min(1.5·1, 1.2·1) = 1.2; token 1: min(0.9, 0.9) = 0.9;
    # token 2: min(0.5·−2, 0.8·−2) = −1.6  → loss = −(1.2 + 0.9 − 1.6)/3
    assert parts.loss.item() == pytest.approx(-(1.2 + 0.9 - 1.6) / 3, rel=1e-6)
    assert parts.clip_fraction == pytest.approx(2 / 3)
    expected_kl = sum(0.5 * math.log(r) ** 2 for r in (1.5, 0.9, 0.5)) / 3
    assert parts.approx_kl == pytest.approx(expected_kl, rel=1e-5)


def test_policy_gradient_is_zero_where_clipped():
    new = torch.log(torch.tensor([[1.5]])).requires_grad_()
    policy_loss(new, torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), 0.2).loss.backward()
    assert new.grad.item() == 0


def test_clipped_value_loss_by_hand():
    old = torch.tensor([[1.0, 1.0]])
    new = torch.tensor([[2.0, 0.9]])
    ret = torch.tensor([[3.0, 0.0]])
    # token 0: max((2−3)², (1.2−3)²) = 3.24; token 1: max(0.81, 0.81) = 0.81
    assert value_loss(new, old, ret, torch.ones(1, 2), clip=0.2).item() == pytest.approx(
        0.5 * (3.24 + 0.81) / 2
    )


def test_entropy_of_uniform_and_certain():
    logits = torch.stack([torch.zeros(4), torch.tensor([100.0, 0, 0, 0])])[None]
    assert entropy(logits, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(math.log(4))
    assert entropy(logits, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(0, abs=1e-6)


def test_adaptive_kl_moves_beta_towards_the_target():
    ctl = AdaptiveKL(beta=0.1, target=6.0, horizon=100)
    assert ctl.update(kl=12.0, samples=10) == pytest.approx(0.1 * 1.02)  # error clipped at 0.2
    assert ctl.update(kl=3.0, samples=10) == pytest.approx(0.1 * 1.02 * 0.98)
