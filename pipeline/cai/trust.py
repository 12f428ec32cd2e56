"""Can these AI labels be trusted? Position bias, option mass, label entropy, and agreement
with people (accuracy of the argmax and calibration of P(A)), from preference records; and
each number's plain-language verdict, so nobody reads 12% agreement or a calibration error
over one bin as good news."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.core.stats import LengthBaselines, chose_longer, length_control, wilson_interval
from pipeline.data.preferences import OrderedLabel, Preference, human_choice


def position_bias(labels: list[OrderedLabel]) -> float:
    """Fraction of labels whose winner was decided by position rather than content."""
    return sum(label.same_position_won for label in labels) / len(labels) if labels else 0.0


ENTROPY_BINS = 5  # histogram of label entropy in bits, over [0, 1]
CALIBRATION_BINS = 5
NO_PREFERENCE = 0.05  # a label within this of 0.5 prefers neither answer
MIN_PAIRS = 10  # fewer human-compared pairs than this: too few to say anything


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
class Verdict:
    """What a number means, in words: `kind` is a short tag the UI styles ("ok", "warn",
    "bad", "unknown"), `text` the sentence a person reads."""

    kind: str
    text: str


def position_decided(p_a_ab: float, p_a_ba: float) -> bool:
    """The winner flips with the order the answers were shown in."""
    return (p_a_ab > 0.5) != (p_a_ba > 0.5)


def label_verdict(p_a: float, p_a_ab: float, p_a_ba: float, identical: bool = False) -> Verdict:
    """One label in words: identical answers, position-decided (the winner flips with the
    order), no preference (P(A) near 0.5), or which answer it prefers."""
    if identical:
        return Verdict("unknown", "identical answers: there is nothing to prefer")
    if position_decided(p_a_ab, p_a_ba):
        position = "first" if p_a_ab > 0.5 else "second"
        return Verdict(
            "bad",
            f"position-decided: the judge picks whichever answer is shown "
            f"{position} (P(A) {p_a_ab:.2f} with A "
            f"first, {p_a_ba:.2f} with B first), so this label says nothing "
            "about the answers",
        )
    if abs(p_a - 0.5) < NO_PREFERENCE:
        return Verdict(
            "warn", f"no preference: P(A) = {p_a:.3f} is within {NO_PREFERENCE} of a coin flip"
        )
    winner = "A" if p_a > 0.5 else "B"
    return Verdict("ok", f"prefers {winner} in both orders (P(A) = {p_a:.3f})")


def agreement_verdict(agreeing: int, compared: int) -> Verdict:
    """Agreement with people in words: its 95% interval and whether that excludes chance
    (50%), or that there are too few pairs to say."""
    if compared < MIN_PAIRS:
        return Verdict(
            "unknown",
            f"too few pairs to say: {compared} compared, at least "
            f"{MIN_PAIRS} needed before agreement means anything",
        )
    low, high = wilson_interval(agreeing, compared)
    span = f"{agreeing / compared:.0%} (95% interval {low:.0%}–{high:.0%}, n = {compared})"
    if low > 0.5:
        return Verdict("ok", f"{span}: better than a coin flip")
    if high < 0.5:
        return Verdict(
            "bad",
            f"{span}: worse than a coin flip — the judge tends to prefer "
            "the answer people rejected",
        )
    return Verdict("warn", f"{span}: cannot be told from a coin flip (50%)")


@dataclass(frozen=True)
class Agreement:
    compared: int  # pairs with a human A or B (ties are left out)
    ties: int
    agreeing: int  # pairs where the AI argmax matches the person
    bins: tuple[CalibrationBin, ...]
    ece: float  # expected calibration error: count-weighted |mean P(A) − human A rate|

    @property
    def accuracy(self) -> float:
        return self.agreeing / self.compared

    @property
    def verdict(self) -> Verdict:
        return agreement_verdict(self.agreeing, self.compared)

    @property
    def calibration_meaningful(self) -> bool:
        """A calibration error needs labels spread over bins and enough pairs; with every
        label in one bin it only measures the base rate."""
        return len(self.bins) > 1 and self.compared >= MIN_PAIRS

    @property
    def calibration_note(self) -> str:
        if self.calibration_meaningful:
            return (
                f"calibration error {self.ece:.3f} (0 = the judge's P(A) matches how often "
                "people chose A)"
            )
        why = (
            "every label sits in one bin of P(A)"
            if len(self.bins) <= 1
            else f"fewer than {MIN_PAIRS} pairs"
        )
        return f"calibration error not meaningful: {why}"


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
        inside = [
            (p, a)
            for p, a in decided
            if low <= p < high or (k == CALIBRATION_BINS - 1 and p == 1.0)
        ]
        if inside:
            bins.append(
                CalibrationBin(
                    low,
                    high,
                    len(inside),
                    sum(p for p, _ in inside) / len(inside),
                    sum(a for _, a in inside) / len(inside),
                )
            )
    ece = sum(b.count * abs(b.mean_p_a - b.human_a) for b in bins) / len(decided)
    return Agreement(len(decided), ties, correct, tuple(bins), ece)


def length_baselines(rows: list[tuple[float, str, str, str]]) -> LengthBaselines | None:
    """From (P(A), human choice, answer A, answer B) rows; None without a human A/B pair of
    answers of different lengths."""
    return length_control(
        [
            (longer, bool(ai_agrees(p_a, choice)))
            for p_a, choice, a, b in rows
            if (longer := chose_longer(choice, a, b)) is not None
        ]
    )


@dataclass(frozen=True)
class TrustReport:
    labels: int
    identical: int
    truncated: int
    position_bias: float  # fraction of labels decided by position (winner flips with order)
    mean_mass: float  # mean probability on the two options at all
    entropy_histogram: tuple[int, ...]
    agreement: Agreement | None
    length: LengthBaselines | None = None

    @property
    def position_verdict(self) -> Verdict:
        if self.position_bias >= 0.5:
            return Verdict(
                "bad", "most labels follow the order the answers are shown in, not the answers"
            )
        if self.position_bias >= 0.2:
            return Verdict("warn", "many labels follow the order the answers are shown in")
        return Verdict("ok", "few labels depend on the order")

    @property
    def mass_verdict(self) -> Verdict:
        if self.mean_mass < 0.5:
            return Verdict(
                "warn",
                "the model mostly did not answer with (A) or (B): its labels "
                "rest on a small share of its probability",
            )
        return Verdict("ok", "the model answers the question with (A) or (B)")


def trust_report(prefs: list[Preference], human_labels: dict[str, str]) -> TrustReport:
    """The trust metrics of a set of labelled pairs; human choices come from the store
    (`human_labels`, pair id → choice) or from the pairs file."""
    scored = [p for p in prefs if p.labels]
    ordered = [OrderedLabel(p.p_a_ab, p.p_a_ba, 0, 0) for p in scored]
    humans = [(p, human_choice(p.pair, human_labels)) for p in prefs]
    return TrustReport(
        labels=len(prefs),
        identical=sum("identical" in p.flags for p in prefs),
        truncated=sum("truncated" in p.flags for p in prefs),
        position_bias=position_bias(ordered),
        mean_mass=sum(p.mass for p in scored) / len(scored) if scored else 0.0,
        entropy_histogram=tuple(histogram([entropy_bits(p.p_a) for p in scored], ENTROPY_BINS)),
        agreement=agreement([(p.p_a, c) for p, c in humans if c is not None]),
        length=length_baselines(
            [(p.p_a, c, p.pair.response_a, p.pair.response_b) for p, c in humans if c is not None]
        ),
    )


def format_report(report: TrustReport) -> str:
    """The report as text for the CLI."""
    lines = [
        f"labelled pairs      {report.labels} ({report.identical} identical, "
        f"{report.truncated} truncated)",
        f"position bias       {report.position_bias:.1%} of labels flip with the order: "
        f"{report.position_verdict.text}",
        f"option mass         {report.mean_mass:.3f} mean probability on (A)/(B): "
        f"{report.mass_verdict.text}",
        "label entropy (bits, 0 = certain … 1 = coin flip):",
    ]
    for k, count in enumerate(report.entropy_histogram):
        lo, hi = k / ENTROPY_BINS, (k + 1) / ENTROPY_BINS
        lines.append(f"  {lo:.1f}–{hi:.1f}  {count:5d}  {'#' * min(count, 60)}")
    a = report.agreement
    if a is None:
        lines.append("human agreement     no human labels yet")
    else:
        lines += [
            f"human agreement     {a.verdict.text} ({a.ties} ties left out)",
            f"calibration         {a.calibration_note}",
        ]
        if report.length:
            lines.append(f"length baselines    {report.length.text}")
        if a.calibration_meaningful:
            lines.append("calibration (AI P(A) bin → mean P(A), human chose A):")
            lines += [
                f"  {b.low:.1f}–{b.high:.1f}  n={b.count:4d}  {b.mean_p_a:.2f}  {b.human_a:.2f}"
                for b in a.bins
            ]
    return "\n".join(lines)


# --- views for people checking the labels ---------------------------------------------------
