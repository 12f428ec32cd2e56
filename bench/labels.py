"""How many human labels a trustworthy probe needs: learning curves of the labelling queue's
active order against random order, in the same run.

The pairs (the gold set, or `--pairs FILE` with human labels) are read once by the model at
one layer. For each seed they are split into a pool a simulated person labels (their label is
the pair's own) and a held-out test set. Each order labels the pool one pair at a time — the
active order refits its probe every few labels, as the studio's queue does — and after each
label a probe fitted on the labels so far is scored on the test set: its accuracy and its
length-controlled accuracy (the mean over test pairs where people chose the longer and the
shorter answer). Curves are averaged over seeds. The target is 95% of what a probe fitted on
the whole pool scores (length-controlled when the test sets allow it); the bench prints the
labels each order needs to reach it and ends with `ratio=<random / active labels>` (larger is
better; the issue's target is ≥ 1.5).
"""

from __future__ import annotations

import argparse
import random
import statistics

import torch

from pipeline.config.settings import DEFAULT_MODEL
from pipeline.core.stats import chose_longer, length_control  # noqa: E402
from pipeline.data.preferences import Pair, gold_pairs, read_pairs  # noqa: E402
from pipeline.evaluation.labelling_queue import REFIT_EVERY, fit_queue, next_pair  # noqa: E402
from pipeline.model.loading import load_model  # noqa: E402
from pipeline.values import probes  # noqa: E402
from pipeline.values.features import pair_features  # noqa: E402


def test_scores(
    d: torch.Tensor, pairs: list[Pair], train: list[int], test: list[int], humans: dict[str, str]
) -> tuple[float, float | None]:
    """(accuracy, length-controlled accuracy) on `test` of a probe fitted on `train`."""
    y = torch.tensor([1 if humans[pairs[i].id] == "A" else 0 for i in train])
    if len(set(y.tolist())) < 2:
        return 0.5, 0.5
    w = probes.logistic(d[train], y)
    outcomes, right = [], []
    for i in test:
        pair = pairs[i]
        ok = (float(d[i] @ w) > 0) == (pair.human == "A")
        right.append(ok)
        side = chose_longer(pair.human, pair.response_a, pair.response_b)
        if side is not None:
            outcomes.append((side, ok))
    control = length_control(outcomes)
    return sum(right) / len(right), control.controlled if control else None


def curve(
    d: torch.Tensor, pairs: list[Pair], pool: list[int], test: list[int], order: str, seed: int
) -> list[tuple[float, float | None]]:
    """Test scores after 1, 2, … labels of the pool, labelled in `order`."""
    subset = [pairs[i] for i in pool]
    oracle = {p.id: p.human for p in subset}
    humans: dict[str, str] = {}
    fit, fitted_at, out = None, -REFIT_EVERY, []
    for n in range(len(pool)):
        if order == "active" and n - fitted_at >= REFIT_EVERY:
            fit, fitted_at = fit_queue(d[pool], subset, humans, check=False), n
        chosen = next_pair(subset, humans, order, fit.scores if fit else None, seed=seed + n)
        humans[chosen.id] = oracle[chosen.id]
        train = [pool[k] for k, p in enumerate(subset) if p.id in humans]
        out.append(test_scores(d, pairs, train, test, {**humans}))
    return out


def needed(mean_curve: list[float], target: float) -> int:
    """Labels after which the mean curve first reaches the target (the pool size if never)."""
    return next((n + 1 for n, v in enumerate(mean_curve) if v >= target), len(mean_curve))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="gold", help="gold, or a pairs file with human labels")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--test-share", type=float, default=0.3)
    args = parser.parse_args()
    pairs = [
        p
        for p in (gold_pairs() if args.pairs == "gold" else read_pairs(args.pairs))
        if p.human in ("A", "B") and not p.identical
    ]
    torch.set_flush_denormal(True)
    loaded = load_model(args.model)
    d = pair_features(loaded, pairs, "answer_mean", [args.layer]).d[:, 0]
    curves = {"active": [], "random": []}
    for seed in range(args.seeds):
        flat = list(range(len(pairs)))
        random.Random(seed).shuffle(flat)
        cut = int(len(pairs) * args.test_share)
        test, pool = flat[:cut], flat[cut:]
        for name in curves:
            curves[name].append(curve(d, pairs, pool, test, name, seed))
    controlled = all(s[1] is not None for c in curves.values() for run in c for s in run)
    pick = 1 if controlled else 0
    means = {
        name: [statistics.mean(run[n][pick] for run in runs) for n in range(len(runs[0]))]
        for name, runs in curves.items()
    }
    full = statistics.mean([means["active"][-1], means["random"][-1]])
    target = 0.95 * full
    what = "length-controlled accuracy" if controlled else "accuracy (length control undefined)"
    print(
        f"{len(pairs)} pairs ({args.pairs}), layer {args.layer}, {args.seeds} seeds; "
        f"held-out {what}; the whole pool reaches {full:.1%}, target {target:.1%}"
    )
    for n in (5, 10, 15, 20, 30, 40):
        if n <= len(means["active"]):
            print(
                f"  {n:>3} labels: active {means['active'][n - 1]:.1%}  random "
                f"{means['random'][n - 1]:.1%}"
            )
    active, random_ = needed(means["active"], target), needed(means["random"], target)
    print(f"labels to reach the target: active {active}, random {random_}")
    print(f"ratio={random_ / active:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
