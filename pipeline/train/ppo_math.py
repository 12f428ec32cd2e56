"""The maths of PPO for language models, term by term, on plain tensors.

Shapes: `[batch, tokens]` over the answer tokens, with `mask` 1 on real tokens and 0 on
padding after an answer's end. Every function is pure so each term is tested by hand.
The conventions follow Ziegler et al. (2019) and Stiennon et al. (2020), as in the CAI
paper: the reward of an answer is the preference model's score at its last token minus
β·KL(policy ‖ reference) at every token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise to unit variance over the real tokens (and zero mean unless `shift_mean`
    is False, which keeps the sign of rewards)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return (out if shift_mean else out + mean) * mask


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """KL estimate per sampled token: log π(t) − log π_ref(t) (its mean over samples from
    π is KL(π ‖ π_ref))."""
    return logprobs - ref_logprobs


def token_rewards(
    score: torch.Tensor, kl: torch.Tensor, beta: float, mask: torch.Tensor
) -> torch.Tensor:
    """−β·KL at every token, plus the preference model's score at each answer's last token."""
    rewards = -beta * kl * mask
    last = mask.sum(dim=1).long().clamp(min=1) - 1
    rewards[torch.arange(len(score)), last] += score
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation, from the last token back:
    δ_t = r_t + γ·V_{t+1} − V_t,  A_t = δ_t + γλ·A_{t+1}; returns = A + V.
    Past an answer's end the value and advantage are 0."""
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


@dataclass(frozen=True)
class PolicyLossParts:
    loss: torch.Tensor
    clip_fraction: float  # share of tokens whose ratio left [1 − ε, 1 + ε]
    approx_kl: float  # mean of ½(log ratio)², how far this update moved the policy


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> PolicyLossParts:
    """The clipped surrogate: −min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A), ρ = π/π_old."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).float(), mask).item()
        approx_kl = masked_mean(0.5 * log_ratio**2, mask).item()
    return PolicyLossParts(loss, clip_fraction, approx_kl)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """½·max((V − R)², (clip(V, V_old ± ε) − R)²): the value may not move more than ε per
    update away from where it was when the rollout was made."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the policy's next-token distributions over the real tokens."""
    logp = torch.log_softmax(logits, dim=-1)
    return masked_mean(-(logp.exp() * logp).sum(-1), mask)


@dataclass
class AdaptiveKL:
    """Ziegler et al.'s controller: β grows when the KL is above target and shrinks when
    below, by at most 20% of the error per `horizon` samples."""

    beta: float
    target: float
    horizon: int = 10000

    def update(self, kl: float, samples: int) -> float:
        error = max(min(kl / self.target - 1, 0.2), -0.2)
        self.beta *= 1 + error * samples / self.horizon
        return self.beta
