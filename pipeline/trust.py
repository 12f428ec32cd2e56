"""Can these AI labels be trusted? Position bias, option mass, label entropy, and agreement
with people (accuracy of the argmax and calibration of P(A)), from preference records."""
from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.feedback import position_bias
from pipeline.preferences import OrderedLabel, Preference
from pipeline.preferences import human_choice

ENTROPY_BINS = 5  # histogram of label entropy in bits, over [0, 1]
CALIBRATION_BINS = 5


def entropy_bits(p: float) -> float:
    """Entropy of a soft label in bits: 0 for a certain label, 1 for a coin flip."""
    if p <= 0 or p >= 1:
        return 0.0
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def histogram(values: list[float], bins: int) -> list[int]:
    """Counts of values in `bins` equal bins over [0, 1] (1.0 falls in the last)."""
    counts = [0] * bins
    for v in values:
        counts[min(int(v * bins), bins - 1)] += 1
    return counts


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    count: int
    mean_p_a: float  # mean AI P(A) of the pairs in the bin
    human_a: float  # fraction of them where the person chose A


@dataclass(frozen=True)
class Agreement:
    compared: int  # pairs with a human A or B (ties are left out)
    ties: int
    accuracy: float  # AI argmax matches the person
    bins: tuple[CalibrationBin, ...]
    ece: float  # expected calibration error: count-weighted |mean P(A) − human A rate|


def ai_agrees(p_a: float, choice: str | None) -> bool | None:
    """Whether the AI label picks the answer a person chose; None when either has no
    preference (a tie, no label, P(A) exactly 0.5)."""
    if choice not in ("A", "B") or p_a == 0.5:
        return None
    return (p_a > 0.5) == (choice == "A")


def agreement(pairs: list[tuple[float, str]]) -> Agreement | None:
    """Agreement of AI soft labels with human choices, from (p_a, choice) pairs; None when
    no person has chosen A or B yet."""
    decided = [(p, c == "A") for p, c in pairs if c in ("A", "B")]
    ties = sum(c == "tie" for _, c in pairs)
    if not decided:
        return None
    correct = sum(bool(ai_agrees(p, c)) for p, c in pairs)
    bins = []
    for k in range(CALIBRATION_BINS):
        low, high = k / CALIBRATION_BINS, (k + 1) / CALIBRATION_BINS
        inside = [(p, a) for p, a in decided
                  if low <= p < high or (k == CALIBRATION_BINS - 1 and p == 1.0)]
        if inside:
            bins.append(CalibrationBin(low, high, len(inside), sum(p for p, _ in inside) / len(inside),
                                       sum(a for _, a in inside) / len(inside)))
    ece = sum(b.count * abs(b.mean_p_a - b.human_a) for b in bins) / len(decided)
    return Agreement(len(decided), ties, correct / len(decided), tuple(bins), ece)


@dataclass(frozen=True)
class TrustReport:
    labels: int
    identical: int
    truncated: int
    position_bias: float  # fraction of labels decided by position (winner flips with order)
    mean_mass: float  # mean probability on the two options at all
    entropy_histogram: tuple[int, ...]
    agreement: Agreement | None


def trust_report(prefs: list[Preference], human_labels: dict[str, str]) -> TrustReport:
    """The trust metrics of a set of labelled pairs; human choices come from the store
    (`human_labels`, pair id → choice) or from the pairs file."""
    scored = [p for p in prefs if p.labels]
    ordered = [OrderedLabel(p.p_a_ab, p.p_a_ba, 0, 0) for p in scored]
    humans = [(p.p_a, human_choice(p.pair, human_labels)) for p in prefs]
    return TrustReport(
        labels=len(prefs), identical=sum("identical" in p.flags for p in prefs),
        truncated=sum("truncated" in p.flags for p in prefs),
        position_bias=position_bias(ordered),
        mean_mass=sum(p.mass for p in scored) / len(scored) if scored else 0.0,
        entropy_histogram=tuple(histogram([entropy_bits(p.p_a) for p in scored], ENTROPY_BINS)),
        agreement=agreement([(p, c) for p, c in humans if c is not None]))


def format_report(report: TrustReport) -> str:
    """The report as text for the CLI."""
    lines = [f"labelled pairs      {report.labels} ({report.identical} identical, "
             f"{report.truncated} truncated)",
             f"position bias       {report.position_bias:.1%} of labels flip with the order",
             f"option mass         {report.mean_mass:.3f} mean probability on (A)/(B)",
             "label entropy (bits, 0 = certain … 1 = coin flip):"]
    for k, count in enumerate(report.entropy_histogram):
        lo, hi = k / ENTROPY_BINS, (k + 1) / ENTROPY_BINS
        lines.append(f"  {lo:.1f}–{hi:.1f}  {count:5d}  {'#' * min(count, 60)}")
    a = report.agreement
    if a is None:
        lines.append("human agreement     no human labels yet")
    else:
        lines += [f"human agreement     {a.accuracy:.1%} of {a.compared} pairs ({a.ties} ties left "
                  f"out), calibration error {a.ece:.3f}",
                  "calibration (AI P(A) bin → mean P(A), human chose A):"]
        lines += [f"  {b.low:.1f}–{b.high:.1f}  n={b.count:4d}  {b.mean_p_a:.2f}  {b.human_a:.2f}"
                  for b in a.bins]
    return "\n".join(lines)


# --- views for people checking the labels ---------------------------------------------------

VIEWS = ["all", "most uncertain", "most position-biased", "AI vs human disagreements",
         "not yet labelled by a person"]


def view_rows(prefs: list[Preference], humans: dict[str, str], view: str) -> list[Preference]:
    """The records a table view shows, in its order."""
    def human(p: Preference) -> str | None:
        return human_choice(p.pair, humans)

    if view == "most uncertain":
        return sorted(prefs, key=lambda p: abs(p.p_a - 0.5))
    if view == "most position-biased":
        return sorted(prefs, key=lambda p: -abs(p.p_a_ab - p.p_a_ba))
    if view == "AI vs human disagreements":
        return [p for p in prefs if ai_agrees(p.p_a, human(p)) is False]
    if view == "not yet labelled by a person":
        return [p for p in prefs if human(p) is None]
    return prefs


def next_in_queue(prefs: list[Preference], humans: dict[str, str], current: str) -> Preference | None:
    """The spot-check queue: pairs no person has labelled, most uncertain first."""
    waiting = [p for p in view_rows(prefs, humans, "most uncertain")
               if human_choice(p.pair, humans) is None and p.pair.id != current
               and "identical" not in p.flags]
    return waiting[0] if waiting else None
