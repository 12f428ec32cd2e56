"""Could a tournament have seen an effect, and what did training change?

A tournament compares two policies on each of its prompts (both orders); the bootstrap
resamples prompts, so the prompts are the sample size. With n prompts a win rate must lie
beyond 0.5 ± (z₀.₉₇₅ + z₀.₈)·0.5/√n to be told from a coin flip with 80% power at 5%
(two-sided, a normal approximation that treats each prompt's comparison as one coin); an
observed win rate p would need (z₀.₉₇₅ + z₀.₈)²·0.25/(p − 0.5)² prompts. The one-click run's
summary leads with these beside what changed: ratings with intervals, refusals on helpful
prompts and answer length — a policy that only got shorter is called out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

Z_ALPHA = 1.959964  # two-sided 5%
Z_POWER = 0.841621  # 80% power
LENGTH_DRIFT = 0.2  # a mean answer length change beyond this share is worth a warning


def detectable_win_rate(prompts: int) -> float:
    """The smallest win rate (above 0.5) n prompts can tell from a coin flip."""
    if prompts < 1:
        return 1.0
    return min(1.0, 0.5 + (Z_ALPHA + Z_POWER) * 0.5 / math.sqrt(prompts))


def prompts_needed(win_rate: float) -> int | None:
    """Prompts a true win rate of `win_rate` needs to be seen (None at exactly 0.5)."""
    if abs(win_rate - 0.5) < 1e-9:
        return None
    return math.ceil(((Z_ALPHA + Z_POWER) * 0.5 / (win_rate - 0.5)) ** 2)


def elo(win_rate: float) -> float:
    p = min(max(win_rate, 1e-3), 1 - 1e-3)
    return 400 * math.log10(p / (1 - p))


@dataclass(frozen=True)
class PowerLine:
    axis: str
    a: str
    b: str
    prompts: int
    win_rate: float  # a's mean score against b

    @property
    def text(self) -> str:
        edge = detectable_win_rate(self.prompts)
        need = prompts_needed(self.win_rate)
        rate = f"{self.win_rate:.1%}" if abs(self.win_rate - 0.5) < 0.01 else f"{self.win_rate:.0%}"
        if need is None:
            seen = "no effect was measured"
        else:
            count = "more than 100,000" if need > 100_000 else f"{need:,}"
            seen = f"an effect of this size ({rate}) would need {count} prompts"
        verdict = (
            "beyond what this size can detect"
            if abs(self.win_rate - 0.5) >= edge - 0.5
            else "within what this size cannot tell from chance"
        )
        limit = (
            f"only a win rate beyond {edge:.0%} (Elo ±{elo(edge):.0f}) could be seen"
            if edge < 0.995
            else "not even winning every comparison could be seen"
        )
        return (
            f"{self.axis}, {self.a} vs {self.b}: won {self.win_rate:.0%} on {self.prompts} "
            f"prompts, {verdict}; at this size {limit} (80% power, 5% two-sided); {seen}"
        )


def prompts_per_pair(comparisons: int, policies: int) -> int:
    """Prompts on which each pair of policies met (every pair meets on every prompt up to
    ALL_PAIRS_UP_TO policies)."""
    pairs = len(list(combinations(range(policies), 2))) or 1
    return comparisons // pairs


def power_lines(result, judge: int = 0, against: str | None = None) -> list[PowerLine]:
    """For one judge of a TournamentResult: each policy against `against` (the base by
    default) on every axis."""
    base = against or result.policies[0]
    j = result.judges[judge]
    lines = []
    for axis in j.axes:
        n = prompts_per_pair(axis.comparisons, len(result.policies))
        row = result.policies.index(base)
        for k, name in enumerate(result.policies):
            rate = axis.matrix[k][row]
            if name != base and rate is not None:
                lines.append(PowerLine(axis.axis, name, base, n, rate))
    return lines


def change_summary(result, aligned: str, judge_note: str = "") -> str:
    """What the one-click run changed, for its report: the judge, the aligned policy against
    the base and the SFT policy on each axis under the first judge (with intervals), refusals
    on helpful prompts, answer length (length drift called out) and the power lines."""
    j = result.judges[0]
    lines = ["## What training changed", ""]
    if judge_note:
        lines += [judge_note, ""]
    lines.append(
        f"Under the judge {j.judge} ({j.position_decided:.0%} of its comparisons position-decided):"
    )
    moved = False
    for axis in j.axes:
        rating = {r["name"]: r for r in axis.ratings}
        if aligned not in rating:
            continue
        r = rating[aligned]
        moved |= r["low"] > 0 or r["high"] < 0
        parts = [f"{aligned} vs base Elo {r['elo']:+.0f} (95% {r['low']:+.0f} … {r['high']:+.0f})"]
        if "sft" in rating and aligned != "sft":
            k, s = result.policies.index(aligned), result.policies.index("sft")
            rate = axis.matrix[k][s]
            parts.append(f"vs sft: wins {rate:.0%}" if rate is not None else "vs sft: never met")
        lines.append(f"- {axis.axis}: " + "; ".join(parts))
    stats = {s.name: s for s in result.stats}
    base = result.policies[0]
    if aligned in stats and base in stats:
        a, b = stats[aligned], stats[base]
        if a.refusal_rate is not None and b.refusal_rate is not None:
            lines.append(
                f"- refusals on helpful prompts: {base} {b.refusal_rate:.0%}, "
                + (
                    f"sft {stats['sft'].refusal_rate:.0%}, "
                    if "sft" in stats and stats["sft"].refusal_rate is not None
                    else ""
                )
                + f"{aligned} {a.refusal_rate:.0%}"
            )
        change = (a.mean_words - b.mean_words) / b.mean_words if b.mean_words else 0.0
        lines.append(
            f"- answer length: {base} {b.mean_words:.1f} words → {aligned} "
            f"{a.mean_words:.1f} ({change:+.0%})"
        )
        if abs(change) > LENGTH_DRIFT and not moved:
            lines.append(
                f"  **{aligned} mostly changed its answer length** "
                f"({'shorter' if change < 0 else 'longer'}) with no rating change this "
                "tournament can see: length drift is the trap here."
            )
    lines += ["", "Power:"] + [f"- {p.text}" for p in power_lines(result) if p.a == aligned]
    return "\n".join(lines)
