"""The statistics behind every number the studio shows beside people's choices: a proportion's
95% Wilson interval, what answer length alone scores on the same pairs, and one `Accuracy`
record for any judge (AI labels, a probe, a direction, a preference model) — so every
accuracy reads the same way: its interval, the pairs it rests on, and its length control."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959964  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound at small n and at 0% or 100%)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class LengthBaselines:
    """What answer length alone scores on the same human-labelled pairs, and the judge's
    agreement with length controlled for: a judge is only worth its agreement above these."""

    compared: int  # human A/B pairs whose answers differ in length (words)
    longer: float  # agreement of "always pick the longer answer"
    shorter: float
    preferred_longer: int  # pairs where people chose the longer answer
    controlled: float | None  # mean of the judge's agreement where people chose the longer
    # and where they chose the shorter answer; None when either group is empty

    @property
    def text(self) -> str:
        base = (
            f"length alone: always-longer {self.longer:.0%}, always-shorter "
            f"{self.shorter:.0%} on {self.compared} pairs"
        )
        if self.controlled is None:
            return (
                base + "; length-controlled agreement needs pairs where people chose the "
                "longer and pairs where they chose the shorter answer"
            )
        return base + f"; the judge's length-controlled agreement {self.controlled:.0%}"


def length_control(outcomes: list[tuple[bool, bool]]) -> LengthBaselines | None:
    """From (people chose the longer answer?, the judge was right?) per pair whose answers
    differ in length; None without such a pair."""
    if not outcomes:
        return None
    groups = {
        side: [right for longer, right in outcomes if longer == side] for side in (True, False)
    }
    n = len(outcomes)
    controlled = None
    if groups[True] and groups[False]:
        controlled = sum(sum(g) / len(g) for g in groups.values()) / 2
    return LengthBaselines(
        n, len(groups[True]) / n, len(groups[False]) / n, len(groups[True]), controlled
    )


def chose_longer(choice: str, a: str, b: str) -> bool | None:
    """Whether the person chose the longer answer (words); None for a tie or equal lengths."""
    words_a, words_b = len(a.split()), len(b.split())
    if choice not in ("A", "B") or words_a == words_b:
        return None
    return (choice == "A") == (words_a > words_b)


@dataclass(frozen=True)
class Accuracy:
    """How often a judge picks the answer people (or held-out labels) preferred, with its 95%
    interval — Wilson for a plain count, a bootstrap where the judge is refitted — the pairs it
    rests on, and what length alone scores on them: an accuracy is never shown without these."""

    value: float
    low: float
    high: float
    controlled: float | None  # mean accuracy where people chose the longer / the shorter
    compared: int | None = None  # pairs it was measured on (None: not recorded)
    longer: float | None = None  # what "always pick the longer answer" scores on them

    @property
    def text(self) -> str:
        if self.compared == 0:
            return "n/a (no decided comparisons)"
        controlled = "n/a" if self.controlled is None else f"{self.controlled:.0%}"
        on = "" if self.compared is None else f" on {self.compared} pairs"
        interval = f"95% interval {self.low:.0%}–{self.high:.0%}"
        base = f"{self.value:.0%} ({interval}){on}, length-controlled {controlled}"
        return base if self.longer is None else f"{base}; always-longer {self.longer:.0%}"


def counted_accuracy(right: list[bool], longer: list[bool | None]) -> Accuracy:
    """The accuracy of a fixed judge from its outcome per pair, with a Wilson interval;
    `longer` says per pair whether people chose the longer answer (None: equal or a tie)."""
    if not right:
        return Accuracy(float("nan"), 0.0, 1.0, None, 0)
    low, high = wilson_interval(sum(right), len(right))
    return with_length(Accuracy(sum(right) / len(right), low, high, None), right, longer)


def with_length(acc: Accuracy, right: list[bool], longer: list[bool | None]) -> Accuracy:
    """`acc` with the pairs it rests on and its length control, from the outcome per pair."""
    control = length_control([(side, ok) for side, ok in zip(longer, right) if side is not None])
    return Accuracy(
        acc.value,
        acc.low,
        acc.high,
        control.controlled if control else None,
        len(right),
        control.longer if control else None,
    )
