"""Batched critique–revision chains vs a prompt-by-prompt loop, embedded model, same run.

16 red-team prompts × 2 rounds under harmless-helpful with its few-shot chains, greedy,
64 new tokens per step. The baseline runs the same engine with one prompt per batch.
Prints chains/minute for both and ends with `ratio=<batched / prompt-by-prompt>`
(larger is better; the target is ≥ 4).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from pipeline.cai.critique import ChainRequest, run_chains  # noqa: E402
from pipeline.config.settings import ChainConfig, SamplingConfig  # noqa: E402
from pipeline.data.constitution import load_constitution  # noqa: E402
from pipeline.data.prompts import load_prompts  # noqa: E402
from pipeline.model.engines import backend_for  # noqa: E402


def timed(backend, requests, config, sampling) -> tuple[list, float]:
    start = time.perf_counter()
    chains = []
    for stage in run_chains(backend, requests, config, sampling):
        if all(c.done for c in stage):
            chains += stage
    return chains, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()

    backend = backend_for("embedded", max_batch_size=args.prompts)
    constitution = load_constitution(ROOT / "constitutions" / "harmless-helpful.yaml")
    requests = [ChainRequest(p, constitution) for p in load_prompts("red-team")[: args.prompts]]
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=args.new_tokens)
    timed(backend, requests[:1], ChainConfig(rounds=1, batch_size=1), sampling)  # warm-up

    batched, batched_s = timed(
        backend, requests, ChainConfig(rounds=args.rounds, batch_size=args.prompts), sampling
    )
    single, single_s = timed(
        backend, requests, ChainConfig(rounds=args.rounds, batch_size=1), sampling
    )
    same = sum(a.final_answer == b.final_answer for a, b in zip(batched, single))
    print(
        f"{args.prompts} red-team prompts x {args.rounds} rounds, {args.new_tokens} new tokens "
        "per step, greedy, few-shot on, embedded model"
    )
    print(f"{'path':<22}{'chains':>8}{'seconds':>10}{'chains/min':>12}")
    for name, chains, seconds in (
        ("batched engine", batched, batched_s),
        ("prompt by prompt", single, single_s),
    ):
        print(f"{name:<22}{len(chains):>8}{seconds:>10.1f}{60 * len(chains) / seconds:>12.2f}")
    print(f"identical final answers: {same}/{len(requests)}")
    print(f"ratio={(len(batched) / batched_s) / (len(single) / single_s):.2f}")


if __name__ == "__main__":
    main()
