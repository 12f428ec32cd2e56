"""RAHF's losses as pure functions on tensors (arXiv 2312.15997), tested by hand.

The activity pattern at a layer is the difference of two hidden states over the same answer
tokens — a "good" and a "bad" model on the same input (Dual), or one model under a good and
a bad instruction (SCIT). A fresh LoRA on the base is then trained so that its state at each
target layer reaches the base's state moved by α times that pattern.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def activity_pattern(h_good: torch.Tensor, h_bad: torch.Tensor) -> torch.Tensor:
    """v = h_good − h_bad, token by token ([layers, rows, tokens, hidden])."""
    return h_good - h_bad


def representation_target(
    h_base: torch.Tensor, pattern: torch.Tensor, alpha: float
) -> torch.Tensor:
    """h_base + α·v: where the trained model's states should be."""
    return h_base + alpha * pattern


def representation_loss(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean over target layers and answer tokens of ‖h − target‖₂ (one norm per token);
    h and target are [layers, rows, tokens, hidden], mask [rows, tokens] (1 = answer token)."""
    distance = (h - target).norm(dim=-1)  # [layers, rows, tokens]
    weights = mask.to(distance.dtype)[None].expand_as(distance)
    return (distance * weights).sum() / weights.sum().clamp_min(1)


def mean_token_logprob(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per row, the mean log-probability of the masked target tokens ([rows]); logits
    [rows, tokens, vocab] predict targets [rows, tokens]."""
    logp = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None]).squeeze(-1)
    m = mask.to(logp.dtype)
    return (logp * m).sum(-1) / m.sum(-1).clamp_min(1)


def scit_loss(
    good_on_preferred: torch.Tensor,
    bad_on_preferred: torch.Tensor,
    bad_on_dispreferred: torch.Tensor,
    good_on_dispreferred: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """SCIT's contrastive-instruction loss on mean token log-probabilities: the preferred
    answer likely under the good instruction and the dispreferred under the bad one (their
    negative log-likelihoods), each by at least `margin` more than under the other
    instruction (hinge terms)."""
    nll = -(good_on_preferred + bad_on_dispreferred)
    contrast = F.relu(margin - (good_on_preferred - bad_on_preferred)) + F.relu(
        margin - (bad_on_dispreferred - good_on_dispreferred)
    )
    return (nll + contrast).mean()
