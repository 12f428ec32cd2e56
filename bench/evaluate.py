"""The tournament's judging, batched against one judge call per comparison, same run, on the
embedded model.

4 policies (the base and the base steered by harmless-helpful's direction at three
coefficients, so their answers differ without training) answer 16 red-team test prompts
(not timed); the log-prob judge (ensemble 2, both orders) then labels the 6 pairs of
policies on every prompt — 96 comparisons, 384 A/B questions — once through the
tournament's batched loop and once one comparison per judge call; both give the same
labels. The same for the representation judge, whose batched loop reads each answer once
for all the comparisons it is in (a prompt's answers sharing one pass over it). Also prints
the width of the 95% bootstrap interval of the ratings. Ends with
`ratio=<one call per comparison / batched seconds>` of the faster-batching judge (larger is
better; target ≥ 3).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from pipeline.config.settings import FeedbackConfig, SamplingConfig  # noqa: E402
from pipeline.data.constitution import load_constitution  # noqa: E402
from pipeline.data.preferences import Pair  # noqa: E402
from pipeline.evaluation.judges import make_judge  # noqa: E402
from pipeline.evaluation.ratings import schedule  # noqa: E402
from pipeline.evaluation.tournament import (
    AnswerLog,
    ComparisonLog,
    answer_all,  # noqa: E402
    judge_all,
    results,
    tournament_prompts,
)
from pipeline.model.loading import load_model  # noqa: E402
from pipeline.model.steering import save_direction  # noqa: E402
from pipeline.steering.extraction import extract_from_constitution  # noqa: E402
from pipeline.train.runtime import CancelFlag  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    args = parser.parse_args()

    constitution = load_constitution(ROOT / "constitutions" / "harmless-helpful.yaml")
    loaded = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        train = ["How do I pick a lock?", "Insult my coworker.", "What is a healthy breakfast?"]
        direction = save_direction(
            extract_from_constitution(loaded, constitution, train, [15]), out / "direction"
        )
        policies = {
            "base": args.model,
            **{f"steered{c:+g}": f"{args.model}@steer:{direction}:{c}:15" for c in (-4, 4, 8)},
        }
        prompts = tournament_prompts(["red-team"], "test", args.prompts)
        sampling = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0.0)
        answer_all(policies, args.model, prompts, sampling, out, CancelFlag(), lambda _: None)
        timings = {}
        for method in ("logprob", "representation"):
            judge = make_judge(method, args.model, config=FeedbackConfig(ensemble=2))
            judge.label(constitution, [Pair("warm up", "a", "b")])
            timings[method] = time_judging(judge, method, policies, prompts, constitution, out)
        rated = results(out, policies, prompts, {}, 1000, 0)
        widths = [
            r["high"] - r["low"]
            for j in rated.judges
            for axis in j.axes
            for r in axis.ratings
            if r["name"] != "base"
        ]
    plan = len(schedule(list(policies), [p.id for p in prompts]))
    print(
        f"{len(policies)} policies × {len(prompts)} red-team test prompts = {plan} comparisons, "
        f"both orders, model={args.model}"
    )
    print(f"{'judge':<16}{'batched s':>10}{'one call each s':>17}{'ratio':>8}{'same labels':>13}")
    for method, (batched, single, same) in timings.items():
        print(
            f"{method:<16}{batched:>10.1f}{single:>17.1f}{single / batched:>8.2f}"
            f"{f'{same}/{plan}':>13}"
        )
    print(
        f"95% bootstrap interval width (Elo, 1000 resamples over {len(prompts)} prompts): "
        f"mean {sum(widths) / len(widths):.0f}, widest {max(widths):.0f}"
    )
    best = max(single / batched for batched, single, _ in timings.values())
    print(f"ratio={best:.2f}")


def time_judging(
    judge, method: str, policies: dict, prompts: list, constitution, out: Path
) -> tuple[float, float, int]:
    """(seconds of the tournament's batched loop, seconds of one judge call per comparison,
    comparisons labelled the same by both)."""
    started = time.perf_counter()
    judge_all(
        {method: judge},
        list(policies),
        prompts,
        constitution,
        0,
        out,
        CancelFlag(),
        lambda *a: None,
    )
    batched = time.perf_counter() - started
    answers = {a.key: a.text for a in AnswerLog(out).read()}
    by_id = {p.id: p for p in prompts}
    plan = schedule(list(policies), [p.id for p in prompts])
    started = time.perf_counter()
    single = [
        judge.label(
            constitution, [Pair(by_id[q].prompt, answers[f"{a}\t{q}"], answers[f"{b}\t{q}"])]
        )[0]
        for q, a, b in plan
    ]
    one_by_one = time.perf_counter() - started
    logged = {
        (c.prompt_id, c.a, c.b): c.preference.p_a
        for c in ComparisonLog(out).read()
        if c.judge == method
    }
    same = sum(abs(logged[q, a, b] - s.p_a) < 1e-4 for (q, a, b), s in zip(plan, single))
    return batched, one_by_one, same


if __name__ == "__main__":
    main()
