"""Batched generation vs one prompt at a time, on the embedded model, in the same run.

32 red-team prompts, 64 new tokens each, greedy. Both paths use the same engine and
settings; the baseline simply calls it with one prompt at a time. Prints both throughputs
and ends with `ratio=<batched / one-at-a-time>` (larger is better; the target is ≥ 6).
"""

from __future__ import annotations

import argparse
import time

from pipeline.config.settings import SamplingConfig  # noqa: E402
from pipeline.data.prompts import load_prompts  # noqa: E402
from pipeline.model.engines import backend_for  # noqa: E402
from pipeline.model.generation import chat  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--model", default="embedded")
    args = parser.parse_args()

    backend = backend_for(args.model, max_batch_size=args.prompts)
    conversations = [chat(r.prompt) for r in load_prompts("red-team")[: args.prompts]]
    config = SamplingConfig(temperature=0.0, max_new_tokens=args.new_tokens)
    backend.generate(conversations[:2], config)  # warm-up: first calls allocate and compile

    start = time.perf_counter()
    batched = backend.generate(conversations, config)
    batched_s = time.perf_counter() - start

    start = time.perf_counter()
    single = [backend.generate([c], config)[0] for c in conversations]
    single_s = time.perf_counter() - start

    batched_tokens = sum(g.new_tokens for g in batched)
    single_tokens = sum(g.new_tokens for g in single)
    same = sum(a.text == b.text for a, b in zip(batched, single))
    rows = [
        ("batched engine", batched_tokens, batched_s),
        ("one prompt at a time", single_tokens, single_s),
    ]
    print(
        f"{args.prompts} red-team prompts, {args.new_tokens} new tokens max, greedy, "
        f"model={args.model}"
    )
    print(f"{'path':<22}{'tokens':>8}{'seconds':>10}{'tokens/s':>10}")
    for name, tokens, seconds in rows:
        print(f"{name:<22}{tokens:>8}{seconds:>10.1f}{tokens / seconds:>10.1f}")
    print(f"identical answers: {same}/{len(conversations)}")
    print(f"ratio={(batched_tokens / batched_s) / (single_tokens / single_s):.2f}")


if __name__ == "__main__":
    main()
