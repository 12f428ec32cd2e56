"""AI feedback: soft A/B preference labels from option log-probabilities (RL-CAI labels).

The feedback model reads a multiple-choice question — the conversation, a principle's
preference question, `(A) …`, `(B) …`, an answer cue — and we read the log-probabilities
of the option tokens instead of generating. This module holds the label maths, written out
term by term; it needs no model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

COT_CLAMP = (0.4, 0.6)  # chain-of-thought labels are overconfident; the RLAIF paper clamps them


def option_probability(logprob_a: float, logprob_b: float) -> tuple[float, float]:
    """P(A) normalised over the two options, and the probability mass that landed on the
    options at all (how much the model's answer was one of them)."""
    top = max(logprob_a, logprob_b)
    # softmax over the two options, shifted by the larger log-prob for numerical safety
    exp_a, exp_b = math.exp(logprob_a - top), math.exp(logprob_b - top)
    p_a = exp_a / (exp_a + exp_b)
    mass = math.exp(logprob_a) + math.exp(logprob_b)
    return p_a, min(mass, 1.0)


@dataclass(frozen=True)
class OrderedLabel:
    """One pair scored in both orders under one principle."""

    p_a_ab: float  # P(first answer wins) when it is shown as (A)
    p_a_ba: float  # P(first answer wins) when it is shown as (B): 1 − P(option A) in that order
    mass_ab: float
    mass_ba: float

    @property
    def p_a(self) -> float:
        """The debiased soft label: the mean of the two orders."""
        return (self.p_a_ab + self.p_a_ba) / 2

    @property
    def same_position_won(self) -> bool:
        """True when the winner flipped with the order, i.e. the position, not the answer,
        decided (the position-bias count of the RLAIF paper)."""
        return (self.p_a_ab > 0.5) != (self.p_a_ba > 0.5)


def both_orders(logprobs_ab: tuple[float, float], logprobs_ba: tuple[float, float]) -> OrderedLabel:
    """Label from the option log-probs of the question asked in order (A=first, B=second)
    and in the swapped order (A=second, B=first)."""
    p_option_a_ab, mass_ab = option_probability(*logprobs_ab)
    p_option_a_ba, mass_ba = option_probability(*logprobs_ba)
    # in the swapped order the first answer is option (B)
    return OrderedLabel(p_a_ab=p_option_a_ab, p_a_ba=1 - p_option_a_ba, mass_ab=mass_ab,
                        mass_ba=mass_ba)


def ensemble(labels: list[OrderedLabel]) -> float:
    """The soft label of a principle ensemble: the mean of the principles' debiased labels."""
    if not labels:
        raise ValueError("an ensemble needs at least one principle's label")
    return sum(label.p_a for label in labels) / len(labels)


def clamp_cot(p_a: float) -> float:
    """Chain-of-thought labels clamped to COT_CLAMP."""
    low, high = COT_CLAMP
    return min(max(p_a, low), high)


def position_bias(labels: list[OrderedLabel]) -> float:
    """Fraction of labels whose winner was decided by position rather than content."""
    return sum(label.same_position_won for label in labels) / len(labels) if labels else 0.0
