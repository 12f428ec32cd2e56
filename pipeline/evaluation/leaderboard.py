"""Judges ranked by how well they agree with people, on the same human-labelled pairs.

Every judge gives a held-out P(A) for every pair: the judges that need no labels (the
log-prob A/B question, the constitution's direction in the hidden states, a preference
model) judge each pair as it is; a probe is fitted in nested cross-validation (its layer is
picked inside the training folds only, so no held-out label ever chooses anything). Each
judge's row carries its agreement with a 95% interval, its length-controlled agreement with
an interval (the mean of its agreement where people chose the longer answer and where they
chose the shorter), the always-longer/shorter baselines, its position bias and calibration,
and one plain verdict. Rows are sorted by the length-controlled lower bound: a judge earns
its place by agreeing with people beyond what answer length alone explains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch

from pipeline.cai.feedback import sigmoid
from pipeline.cai.trust import MIN_PAIRS, Verdict, agreement, ai_agrees, position_bias
from pipeline.core.errors import DatasetError
from pipeline.core.stats import LengthBaselines, length_control, wilson_interval
from pipeline.data.preferences import OrderedLabel, Preference
from pipeline.values import probes
from pipeline.values.features import LabelledPairs

MIN_GROUP = (
    5  # pairs where people chose the longer (and the shorter) answer, for a controlled interval
)
CONTROL_SAMPLES = 2000  # stratified bootstrap resamples of the length-controlled agreement
POSITION_DECIDED = 0.5  # a judge whose winner flips with the order this often is position-decided
AGREES = "agrees with people beyond length and chance"
LENGTH_ONLY = "no better than answer length"
CHANCE = "no better than chance"
POSITION = "position-decided"


@dataclass(frozen=True)
class Judged:
    """One judge's P(A) on each labelled pair (in the pairs' order), shown A-first and
    B-first (equal for a position-free judge); `note` says how it was obtained."""

    name: str
    kind: str  # logprob, representation, probe, pm
    p_a: tuple[float, ...]
    p_a_ab: tuple[float, ...]
    p_a_ba: tuple[float, ...]
    note: str = ""


def from_preferences(name: str, kind: str, prefs: list[Preference], note: str = "") -> Judged:
    """A judge's records (feedback.Labeller, RepresentationJudge, PMJudge) as held-out P(A)."""
    return Judged(
        name,
        kind,
        tuple(p.p_a for p in prefs),
        tuple(p.p_a_ab for p in prefs),
        tuple(p.p_a_ba for p in prefs),
        note,
    )


@dataclass(frozen=True)
class JudgeRow:
    """One judge measured against people."""

    judge: str
    kind: str
    compared: int
    agreement: float
    interval: tuple[float, float]  # 95% Wilson
    controlled: float | None  # length-controlled agreement (None: a length group is empty)
    controlled_interval: tuple[float, float] | None  # None: a group has under MIN_GROUP pairs
    always_longer: float | None
    always_shorter: float | None
    position_bias: float  # share of pairs whose winner flips with the order shown
    calibration_error: float | None  # None: not meaningful (one bin or too few pairs)
    verdict: Verdict
    note: str = ""

    @property
    def rank_key(self) -> tuple[float, float]:
        low = self.controlled_interval[0] if self.controlled_interval else -1.0
        return low, self.interval[0]

    @property
    def trusted(self) -> bool:
        """Whether `auto` may use it: its length-controlled lower bound is above 0.5."""
        return self.verdict.text.startswith(AGREES)

    @property
    def text(self) -> str:
        controlled = (
            "n/a"
            if self.controlled is None
            else f"{self.controlled:.0%}"
            + (
                ""
                if self.controlled_interval is None
                else f" ({self.controlled_interval[0]:.0%}–{self.controlled_interval[1]:.0%})"
            )
        )
        return (
            f"{self.agreement:.0%} ({self.interval[0]:.0%}–{self.interval[1]:.0%}) on "
            f"{self.compared} pairs, length-controlled {controlled}"
        )


def controlled_interval(
    outcomes: list[tuple[bool, bool]], seed: int = 0, samples: int = CONTROL_SAMPLES
) -> tuple[float, float] | None:
    """95% stratified bootstrap interval of the length-controlled agreement from (people
    chose the longer answer?, judge right?) rows; None when either group has fewer than
    MIN_GROUP pairs (the mean of a group of two is not an estimate)."""
    groups = [[right for longer, right in outcomes if longer is side] for side in (True, False)]
    if min(len(g) for g in groups) < MIN_GROUP:
        return None
    generator = torch.Generator().manual_seed(seed)
    longer, shorter = (probes.bootstrap_means(g, samples, generator) for g in groups)
    return probes.percentile_interval(((longer + shorter) / 2).tolist())


def length_outcomes(data: LabelledPairs, right: list[bool]) -> list[tuple[bool, bool]]:
    """(people chose the longer answer?, judge right?) for pairs whose answers differ in length."""
    return [(longer, r) for longer, r in zip(data.chose_longer, right) if longer is not None]


def verdict(
    compared: int,
    interval: tuple[float, float],
    length: LengthBaselines | None,
    controlled: tuple[float, float] | None,
    bias: float,
) -> Verdict:
    """The judge in one plain sentence, most damning finding first."""
    if compared < MIN_PAIRS:
        return Verdict(
            "unknown", f"too few pairs to say: {compared} compared, at least {MIN_PAIRS} needed"
        )
    if bias >= POSITION_DECIDED:
        return Verdict(
            "bad",
            f"{POSITION}: its winner flips with the order the answers are "
            f"shown in on {bias:.0%} of pairs",
        )
    if controlled is None:
        groups = (
            ""
            if length is None
            else f" (people chose the longer answer in "
            f"{length.preferred_longer} and the shorter in "
            f"{length.compared - length.preferred_longer} of these pairs)"
        )
        beyond = "beyond chance" if interval[0] > 0.5 else "not beyond chance"
        return Verdict(
            "warn",
            f"{beyond}, but length cannot be controlled: each side needs {MIN_GROUP} pairs{groups}",
        )
    if controlled[0] > 0.5:
        return Verdict(
            "ok",
            f"{AGREES}: length-controlled agreement is above 50% "
            f"({controlled[0]:.0%}–{controlled[1]:.0%})",
        )
    if interval[0] > 0.5:
        return Verdict(
            "warn",
            f"{LENGTH_ONLY}: it agrees with people beyond chance, but with "
            "length controlled its interval includes 50%",
        )
    return Verdict("bad", f"{CHANCE}: its agreement interval includes 50%")


def score(judged: Judged, data: LabelledPairs, seed: int = 0) -> JudgeRow:
    """A judge's row against the people who labelled `data`."""
    choices = ["A" if label else "B" for label in data.y.tolist()]
    found = agreement(list(zip(judged.p_a, choices)))
    if found is None:
        raise DatasetError("No pair has a person's A or B: nothing to compare the judge with.")
    right = [bool(ai_agrees(p, c)) for p, c in zip(judged.p_a, choices)]
    outcomes = length_outcomes(data, right)
    length = length_control(outcomes)
    control = controlled_interval(outcomes, seed)
    bias = position_bias(
        [OrderedLabel(ab, ba, 0, 0) for ab, ba in zip(judged.p_a_ab, judged.p_a_ba)]
    )
    interval = wilson_interval(found.agreeing, found.compared)
    return JudgeRow(
        judged.name,
        judged.kind,
        found.compared,
        found.accuracy,
        interval,
        length.controlled if length else None,
        control,
        length.longer if length else None,
        length.shorter if length else None,
        bias,
        found.ece if found.calibration_meaningful else None,
        verdict(found.compared, interval, length, control, bias),
        judged.note,
    )


def check_labels(data: LabelledPairs, folds: int) -> None:
    """Refuse labels no judge can be checked on, saying how many more are needed."""
    need = max(MIN_PAIRS, 2 * folds)
    n = len(data.pairs)
    if n < need:
        raise DatasetError(
            f"Comparing judges needs at least {need} human A/B labels ({folds} "
            f"cross-validation folds, each fitted on the others); these pairs "
            f"have {n}: label {need - n} more."
        )
    sides = [s for s in data.chose_longer if s is not None]
    if not sides:
        raise DatasetError(
            f"The answers of all {n} labelled pairs have the same length: "
            "length cannot be controlled and no judge can be checked beyond it."
        )
    if all(sides) or not any(sides):
        side = "longer" if all(sides) else "shorter"
        raise DatasetError(
            f"In every labelled pair whose answers differ in length people chose "
            f"the {side} answer ({len(sides)} pairs), so answer length alone "
            "decides these labels and no judge can be checked on them: label "
            f"pairs where people chose the {'shorter' if side == 'longer' else 'longer'}"
            " answer too."
        )


# --- a probe in nested cross-validation -------------------------------------------------------


def fit_many(d: torch.Tensor, y: torch.Tensor, counts: torch.Tensor, method: str) -> torch.Tensor:
    """One probe per row of `counts` [fits, pairs] (1 = in that fit's training set): [fits, dim]."""
    if method == "logistic":
        return probes.weighted_logistic(d, y, counts)
    if method == "mean_difference":
        return counts @ probes.oriented(d, y) / counts.sum(1, keepdim=True)
    raise ValueError(f"method must be one of {', '.join(probes.FITS)} (got {method!r}).")


@dataclass(frozen=True)
class NestedProbe:
    """Held-out P(A) per pair from probes that never saw it; per outer fold, the layer its
    training folds picked."""

    p_a: tuple[float, ...]
    layers: tuple[int, ...]


def nested_probe(
    d: torch.Tensor,
    y: torch.Tensor,
    layers: tuple[int, ...],
    method: str = "logistic",
    k: int = 5,
    seed: int = 0,
    on_layer: Callable[[int, int], None] | None = None,
) -> NestedProbe:
    """Nested k-fold CV of a probe on d [pairs, layers, hidden]: for each outer fold, every
    layer is cross-validated inside the training folds, the best one is fitted on them and
    its temperature calibrated on their inner held-out scores; only then is the held-out
    fold scored. All the fits of one layer run as one batched L-BFGS."""
    from pipeline.values.representation_judge import calibrated_tau

    n = len(y)
    outer = probes.folds(n, k, seed)
    trains = [sorted(set(range(n)) - set(held)) for held in outer]
    inner = [
        [[train[i] for i in fold] for fold in probes.folds(len(train), k, seed + 1 + o)]
        for o, train in enumerate(trains)
    ]
    rows = [(o, i) for o in range(k) for i in range(k)] + [(o, None) for o in range(k)]
    counts = torch.zeros(len(rows), n)
    for r, (o, i) in enumerate(rows):
        counts[r, trains[o]] = 1
        if i is not None:
            counts[r, inner[o][i]] = 0
    inner_scores = torch.zeros(len(layers), k, n)  # per layer and outer fold, inner held-out scores
    outer_scores = torch.zeros(len(layers), n)
    for li in range(len(layers)):
        scores = fit_many(d[:, li], y, counts, method) @ d[:, li].T  # [fits, pairs]
        for r, (o, i) in enumerate(rows):
            held = inner[o][i] if i is not None else outer[o]
            target = inner_scores[li, o] if i is not None else outer_scores[li]
            target[held] = scores[r, held]
        if on_layer:
            on_layer(li + 1, len(layers))
    p_a, picked = [0.5] * n, []
    for o in range(k):
        train = trains[o]
        y_train = y[train]
        accuracy = ((inner_scores[:, o, train] > 0) == y_train.bool()).float().mean(1)
        best = max(range(len(layers)), key=lambda li: (float(accuracy[li]), -li))
        picked.append(layers[best])
        tau = calibrated_tau(inner_scores[best, o, train].tolist(), y_train.tolist())
        for i in outer[o]:
            p_a[i] = sigmoid(float(outer_scores[best, i]) / tau)
    return NestedProbe(tuple(p_a), tuple(picked))


def probe_judged(nested: NestedProbe, method: str, k: int) -> Judged:
    layers = sorted(set(nested.layers))
    return Judged(
        f"probe ({method}, nested {k}-fold)",
        "probe",
        nested.p_a,
        nested.p_a,
        nested.p_a,
        f"each pair judged by a probe fitted without it; layers picked "
        f"inside the training folds: {', '.join(map(str, layers))}",
    )


# --- the board ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaderboard:
    """Every judge's row on the same labels, best first."""

    labels: str  # where the human labels came from
    pairs: int
    length: LengthBaselines | None  # what answer length alone scores on these labels
    rows: tuple[JudgeRow, ...]

    @property
    def best(self) -> JudgeRow | None:
        """The judge `auto` uses: the best length-controlled lower bound above 0.5, if any."""
        return next((r for r in self.rows if r.trusted), None)

    def as_json(self) -> dict:
        return {
            "labels": self.labels,
            "pairs": self.pairs,
            "length": asdict(self.length) if self.length else None,
            "rows": [{**asdict(r), "verdict": asdict(r.verdict)} for r in self.rows],
            "best": self.best.judge if self.best else None,
        }


def leaderboard(
    labels: str, data: LabelledPairs, judged: list[Judged], seed: int = 0
) -> Leaderboard:
    rows = sorted((score(j, data, seed) for j in judged), key=lambda r: r.rank_key, reverse=True)
    length = length_control([(s, False) for s in data.chose_longer if s is not None])
    return Leaderboard(labels, len(data.pairs), length, tuple(rows))


def format_board(board: Leaderboard) -> str:
    """The board as a reader needs it: each judge's numbers and its verdict."""
    lines = [f"Judges against people on {board.pairs} human-labelled pairs ({board.labels})"]
    if board.length:
        lines.append(
            f"answer length alone: always-longer {board.length.longer:.0%}, "
            f"always-shorter {board.length.shorter:.0%} "
            f"(people chose the longer answer in {board.length.preferred_longer} of "
            f"{board.length.compared} pairs of different lengths)"
        )
    for n, row in enumerate(board.rows, 1):
        calibration = "n/a" if row.calibration_error is None else f"{row.calibration_error:.3f}"
        lines.append(
            f"{n}. {row.judge} [{row.kind}]: {row.text}; position bias "
            f"{row.position_bias:.0%}; calibration error {calibration}"
        )
        lines.append(f"   → {row.verdict.text}")
        if row.note:
            lines.append(f"   ({row.note})")
    best = board.best
    lines.append(
        f"auto picks: {best.judge}"
        if best
        else "auto picks: none passes — labels from any judge here are unverified"
    )
    return "\n".join(lines)


def judged_all(
    loaded, constitution, data: LabelledPairs, job, step: Callable[[str], None]
) -> list[Judged]:
    """Every judge `job` (a JudgesCompareJob) names, on the labelled pairs: the log-prob
    judge, the constitution's direction, the nested-CV probe, and the PM when given."""
    from pipeline.cai.feedback import Labeller
    from pipeline.config.settings import FeedbackConfig
    from pipeline.evaluation.judges import PMJudge
    from pipeline.values.features import pair_features
    from pipeline.values.representation_judge import RepresentationJudge

    pairs = list(data.pairs)
    each = "every enabled principle" if job.ensemble == 0 else f"{job.ensemble} principle(s)"
    step(f"the log-prob judge: {len(pairs)} pairs, both orders, {each} per pair")
    logprob = Labeller(loaded, FeedbackConfig(ensemble=job.ensemble, seed=job.seed))
    judged = [
        from_preferences(
            f"log-prob A/B under {constitution.name}",
            "logprob",
            logprob.label(constitution, pairs),
            f"{each} per pair",
        )
    ]
    # every layer first: the direction's layer and the winning probe's fit then come from
    # the states cache instead of new passes over the same answers
    step("a probe in nested cross-validation: reading every layer")
    features = pair_features(loaded, pairs, job.pooling, job.layer_list)
    nested = nested_probe(features.d, data.y, features.layers, job.method, job.folds, job.seed)
    judged.append(probe_judged(nested, job.method, job.folds))
    step("the constitution's direction in the hidden states")
    direction = RepresentationJudge(loaded, pooling=job.pooling)
    judged.append(
        from_preferences(
            f"constitution direction (layer {direction.layer})",
            "representation",
            direction.label(constitution, pairs),
            "no labels used",
        )
    )
    if job.pm:
        step("the preference model")
        pm = PMJudge(job.pm)
        judged.append(from_preferences(pm.name, "pm", pm.label(None, pairs)))
    return judged
