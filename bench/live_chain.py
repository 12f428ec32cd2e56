"""The live chain (batch 1, as the Chains tab runs one prompt): each step's prompt starts
with the step before, and the engine keeps that start's keys and values instead of computing
them again; and it drafts the next tokens by prompt lookup (a revision repeats much of what
it revises) and checks them in one pass. Same run, same engine: the baseline keeps nothing
between calls and decodes one token a pass (`KEEP_ROWS = 0`, `LOOKUP_DRAFT = 0`: the engine
before issue 28).

Red-team prompts under harmless-helpful with its few-shot chains, the Chains tab's
defaults (4 rounds, 96 new tokens, temperature 0.7, seed 0; `--temperature 0` for greedy),
the embedded model; each path runs `--repeats`
times and the fastest counts. Every run starts with nothing kept (the first chain of a
fresh studio); the studio keeps prompts per model between runs, so a later chain (another
prompt's chain ran first, and left its few-shot start) is timed too. Prints seconds for
both (and, as sampled chains differ in length from engine to engine, each chain's tokens
and milliseconds a token), whether the chains are identical, and `ratio=<baseline seconds /
ours>` (larger is better) for the Chains tab's default engine, `auto` (greedy: int8 for
short prompts, fp32 for long ones; sampled: every step on int8, on a fresh engine of the
run's own so the seed reproduces; fp32 where ctranslate2 is not installed), summed over
`--prompts` first chains (one sampled chain's length is one draw: engines that sample
differently draw chains of different lengths, and several prompts keep one draw from
deciding the ratio); the int8 engine (`engine: int8`) is timed too, and a sampled chain's
seed is checked to reproduce (int8's chain and auto's, both seeded, are the same text).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline.core import cpu

cpu.use_physical_cores()  # before torch loads, as the studio sets its process up

import pipeline.model.generation as generation  # noqa: E402
from pipeline.cai.critique import Chain, ChainRequest, run_chains  # noqa: E402
from pipeline.config.settings import DEFAULT_SAMPLING, ChainConfig, SamplingConfig  # noqa: E402
from pipeline.data.constitution import load_constitution  # noqa: E402
from pipeline.data.prompts import load_prompts  # noqa: E402
from pipeline.model.ct2_engine import INSTALL, available  # noqa: E402
from pipeline.model.engines import backend_for, forget_kept  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KEPT = (generation.KEEP_ROWS, generation.LOOKUP_DRAFT)


def timed(
    request: ChainRequest,
    config,
    sampling,
    repeats: int,
    engine: str = "fp32",
    before=False,
    after: ChainRequest | None = None,
) -> tuple[Chain, float]:
    """The chain and the fastest of `repeats` runs, each on a fresh backend with nothing
    kept; `after`: that chain runs first, untimed (a later chain in a running studio);
    `before`: as the engine was before issue 28."""
    generation.KEEP_ROWS, generation.LOOKUP_DRAFT = (0, 0) if before else KEPT
    best, chain = float("inf"), None
    for _ in range(repeats):
        forget_kept(backend_for("embedded").loaded)  # nothing kept by either engine
        greedy = sampling.temperature == 0  # as the Chains tab asks (a live run)
        if after is not None:
            warm = backend_for("embedded", engine=engine, greedy=greedy, live=True)
            list(run_chains(warm, [after], config, sampling))
        backend = backend_for("embedded", engine=engine, greedy=greedy, live=True)
        start = time.perf_counter()
        chain = list(run_chains(backend, [request], config, sampling))[-1][0]
        best = min(best, time.perf_counter() - start)
    assert chain is not None
    return chain, best


def texts(chain: Chain) -> list[str]:
    return [chain.initial_answer] + [t for r in chain.rounds for t in (r.critique, r.revision)]


def per_token(chain: Chain, seconds: float) -> str:
    """Milliseconds a generated token: sampled chains of two engines differ in text and
    length, so their seconds alone compare draws as much as engines."""
    tokenizer = backend_for("embedded").loaded.tokenizer
    tokens = sum(
        len(tokenizer(t or "", add_special_tokens=False)["input_ids"]) for t in texts(chain)
    )
    return f"{tokens} tokens, {1000 * seconds / max(1, tokens):.1f} ms a token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=3, help="first chains the ratio sums")
    parser.add_argument("--temperature", type=float, default=DEFAULT_SAMPLING.temperature)
    args = parser.parse_args()
    if args.prompts < 1:
        parser.error("--prompts must be at least 1")

    constitution = load_constitution(ROOT / "constitutions" / "harmless-helpful.yaml")
    prompts = load_prompts("red-team")[: args.prompts + 1]
    requests = [ChainRequest(prompt, constitution) for prompt in prompts]
    request, others, earlier = requests[0], requests[1:-1], requests[-1]
    config = ChainConfig(rounds=args.rounds, batch_size=1)
    sampling = SamplingConfig(
        temperature=args.temperature, max_new_tokens=args.new_tokens, seed=DEFAULT_SAMPLING.seed
    )
    backend_for("embedded")  # load (and convert, the first time) outside the timings
    kept, kept_s = timed(request, config, sampling, args.repeats)
    plain, plain_s = timed(request, config, sampling, args.repeats, before=True)
    print(
        f"{args.prompts} red-team prompts x {args.rounds} rounds, {args.new_tokens} new tokens "
        f"per step, temperature {args.temperature:g}, few-shot on, embedded model, batch 1"
    )
    print(f"the first prompt\n{'engine':<44}{'seconds':>9}{'later chain':>13}")
    warm_s = timed(request, config, sampling, args.repeats, after=earlier)[1]
    print(f"{'fp32, keeps prompts, drafts':<44}{kept_s:>9.1f}{warm_s:>13.1f}")
    print(
        f"{'fp32 before issue 28 (every prompt whole)':<44}{plain_s:>9.1f}"
        f"  ({per_token(plain, plain_s)})"
    )
    default = "auto" if available() else "fp32"  # the Chains tab's default engine
    chains, default_s = {}, kept_s
    for engine in ("int8", "auto") if available() else ():
        chains[engine], seconds = timed(request, config, sampling, args.repeats, engine)
        default_s = seconds if engine == default else default_s
        later = timed(request, config, sampling, args.repeats, engine, after=earlier)[1]
        print(
            f"{'engine: ' + engine:<44}{seconds:>9.1f}{later:>13.1f}  "
            f"({plain_s / seconds:.2f}x before; later chain {plain_s / later:.2f}x; "
            f"{per_token(chains[engine], seconds)})"
        )
    if not chains:
        print(f"int8 engine: not installed ({INSTALL})")
    elif sampling.temperature > 0:
        again = texts(chains["int8"]) == texts(chains["auto"])
        print(f"int8 seed reproduces (int8's chain == auto's): {again}")
    same = texts(kept) == texts(plain)
    print(f"identical chains (fp32 against before): {same}")
    befores, defaults = [plain_s], [default_s]
    for i, other in enumerate(others, start=2):
        chain, before_s = timed(other, config, sampling, args.repeats, before=True)
        ours, ours_s = timed(other, config, sampling, args.repeats, default)
        befores.append(before_s)
        defaults.append(ours_s)
        print(
            f"prompt {i}: before {before_s:.1f} s ({per_token(chain, before_s)}); "
            f"{default} {ours_s:.1f} s ({per_token(ours, ours_s)}); {before_s / ours_s:.2f}x"
        )
    print(
        f"ratio={sum(befores) / sum(defaults):.2f}  (engine {default}, the first chain of "
        f"{len(befores)} prompts: {sum(befores):.1f} s before, {sum(defaults):.1f} s ours)"
    )


if __name__ == "__main__":
    main()
