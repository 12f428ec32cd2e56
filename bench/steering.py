"""Steered vs unsteered batched generation on the embedded model, in the same run.

32 red-team prompts, 64 new tokens each, greedy, one batch: the same engine (shared-prefix
cache, preallocated KV cache, finished rows leaving the batch) once plain and once steered
by the harmless-helpful constitution's direction at three layers (coefficient 4). The
steered run must keep batching and the caches: its answers differ, its cost should not.
A coefficient-4 push changes how long answers run, so the time per generated token is
compared (tokens/s), as well as the wall clock. Ends with `ratio=<steered / unsteered
seconds per token>` (smaller is better; the target is ≤ 1.15).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from pipeline.config.settings import SamplingConfig  # noqa: E402
from pipeline.data.constitution import load_constitution  # noqa: E402
from pipeline.data.prompts import load_prompts  # noqa: E402
from pipeline.model.engines import backend_for  # noqa: E402
from pipeline.model.generation import chat  # noqa: E402
from pipeline.model.steering import Steering  # noqa: E402
from pipeline.steering.extraction import extract_from_constitution  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--layers", default="12,15,18")
    parser.add_argument("--coefficient", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each (best kept)")
    args = parser.parse_args()

    backend = backend_for(args.model, max_batch_size=args.prompts)
    constitution = load_constitution(ROOT / "constitutions" / "harmless-helpful.yaml")
    train = [p.prompt for p in load_prompts("red-team", "train")][:8]
    layers = tuple(int(x) for x in args.layers.split(","))
    direction = extract_from_constitution(backend.loaded, constitution, train, list(layers))
    steering = Steering(direction, args.coefficient, layers)
    conversations = [chat(r.prompt) for r in load_prompts("red-team", "test")[: args.prompts]]
    config = SamplingConfig(temperature=0.0, max_new_tokens=args.new_tokens)
    backend.generate(conversations[:2], config)  # warm-up

    def timed(with_steering):
        best = None
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = backend.generate(conversations, config, steering=with_steering)
            seconds = time.perf_counter() - start
            best = min(best or (seconds, out), (seconds, out), key=lambda r: r[0])
        return best

    plain_s, plain = timed(None)
    steered_s, steered = timed(steering)
    rows = [
        ("unsteered", sum(g.new_tokens for g in plain), plain_s),
        (f"steered ({steering.text})", sum(g.new_tokens for g in steered), steered_s),
    ]
    print(
        f"{len(conversations)} red-team test prompts, one batch, {args.new_tokens} new tokens "
        f"max, greedy, model={args.model}"
    )
    print(f"{'path':<24}{'tokens':>8}{'seconds':>10}{'tokens/s':>10}")
    for name, tokens, seconds in rows:
        print(f"{name[:24]:<24}{tokens:>8}{seconds:>10.2f}{tokens / seconds:>10.1f}")
    print(
        f"answers changed by steering: {sum(a.text != b.text for a, b in zip(plain, steered))}"
        f"/{len(conversations)}"
    )
    print(f"wall-clock ratio (steered / unsteered) = {steered_s / plain_s:.3f}")
    per_token = (steered_s / rows[1][1]) / (plain_s / rows[0][1])
    print(f"ratio={per_token:.3f}")


if __name__ == "__main__":
    main()
