"""Our generation engine against its peers, same prompts, same settings, same run.

Red-team prompts, greedy, `--new-tokens` new tokens, the embedded model, two regimes:
**batch 1** (`--single` prompts one at a time: the live chain, the playground, one pair) and
**batch 32** (`--batch` prompts in one call: jobs). Engines: ours in fp32 and in int8
(`engine: int8`: CTranslate2 in int8 behind our prompts, thread layout and kept starts),
Hugging Face `model.generate` (left padding), and CTranslate2 in fp32 and int8 when
`ctranslate2` is installed (the embedded model converted once into the cache). Every
engine renders prompts with the same chat template, so they answer the same tokens.

The engines take turns for `--repeats` rounds and each keeps its fastest. Prints tokens/s
per engine and regime, the share of answers identical to our fp32 engine's,
and per regime `ratio=` our fastest engine over the fastest peer; the last line is the worse
of the two (≥ 1.0: we are at least as fast as the best peer).
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from pipeline.config.settings import SamplingConfig
from pipeline.data.prompts import load_prompts
from pipeline.model import ct2_engine
from pipeline.model.engines import backend_for
from pipeline.model.generation import Message, chat, prompt_ids, stop_ids
from pipeline.model.loading import load_model

# conversations → each one's answer: its text and its new tokens, the end of turn left out
Answer = Callable[[list[list[Message]]], list[tuple[str, int]]]


def answered(tok, rows: list[list[int]], stops: set[int]) -> list[tuple[str, int]]:
    kept = [[t for t in row if t not in stops] for row in rows]
    return [(tok.decode(row, skip_special_tokens=True).strip(), len(row)) for row in kept]


def ours(engine: str) -> Answer:
    backend = backend_for("embedded", max_batch_size=ARGS.batch, engine=engine)
    config = SamplingConfig(temperature=0.0, max_new_tokens=ARGS.new_tokens)

    def answer(conversations: list[list[Message]]) -> list[tuple[str, int]]:
        return [
            (g.text, g.new_tokens - (g.finish_reason == "stop"))
            for g in backend.generate(conversations, config)
        ]

    return answer


def hf_generate() -> Answer:
    loaded = load_model("embedded")
    tok, model = loaded.tokenizer, loaded.model
    stops = set(stop_ids(loaded))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def answer(conversations: list[list[Message]]) -> list[tuple[str, int]]:
        rows = [prompt_ids(tok, c) for c in conversations]
        width = max(map(len, rows))
        with torch.inference_mode():
            out = model.generate(
                input_ids=torch.tensor([[pad] * (width - len(r)) + r for r in rows]),
                attention_mask=torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows]),
                max_new_tokens=ARGS.new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
        return answered(tok, [row[width:].tolist() for row in out], stops | {pad})

    return answer


def ctranslate2_engine(compute: str) -> Answer | None:
    if not ct2_engine.available():
        return None
    ctranslate2 = ct2_engine.library()
    loaded = load_model("embedded")
    tok = loaded.tokenizer
    stops = stop_ids(loaded)
    generator = ctranslate2.Generator(
        str(ct2_engine.converted(loaded)),
        device="cpu",
        compute_type=compute,
        intra_threads=torch.get_num_threads(),
    )

    def answer(conversations: list[list[Message]]) -> list[tuple[str, int]]:
        results = generator.generate_batch(
            [tok.convert_ids_to_tokens(prompt_ids(tok, c)) for c in conversations],
            max_length=ARGS.new_tokens,
            sampling_topk=1,
            include_prompt_in_result=False,
            end_token=tok.convert_ids_to_tokens(stops),
        )
        return answered(tok, [r.sequences_ids[0] for r in results], set(stops))

    return answer


def run(answer: Answer, conversations: list, batch: int) -> tuple[list[tuple[str, int]], float]:
    answer(conversations[:1])  # warm-up
    start = time.perf_counter()
    out: list[tuple[str, int]] = []
    for i in range(0, len(conversations), batch):
        out += answer(conversations[i : i + batch])
    return out, time.perf_counter() - start


def main() -> None:
    torch.set_flush_denormal(True)
    conversations = [chat(r.prompt) for r in load_prompts("red-team")[: ARGS.batch]]
    regimes = {
        "batch 1": (conversations[: ARGS.single], 1),
        "batch 32": (conversations, ARGS.batch),
    }
    makers: dict[str, Callable[[], Answer | None]] = {
        "ours fp32": lambda: ours("fp32"),
        "ours int8": lambda: ours("int8") if ct2_engine.available() else None,
        "HF generate": hf_generate,
        "CTranslate2 fp32": lambda: ctranslate2_engine("float32"),
        "CTranslate2 int8": lambda: ctranslate2_engine("int8"),
    }
    print(
        f"red-team prompts, greedy, {ARGS.new_tokens} new tokens, embedded model, "
        f"{torch.get_num_threads()} threads; batch 1 = {ARGS.single} prompts one at a time, "
        f"batch 32 = {ARGS.batch} prompts in one call"
    )
    made = {name: make() for name, make in makers.items()}
    for name in [n for n, answer in made.items() if answer is None]:
        print(f"{name:<20}not installed ({ct2_engine.INSTALL})")
    answers = {name: answer for name, answer in made.items() if answer is not None}
    # the engines take turns, `--repeats` rounds, and each keeps its fastest: this machine's
    # speed drifts over minutes, and a drift must not pass for one engine's gain
    speed: dict[tuple[str, str], float] = {}
    reference: dict[str, list[str]] = {}
    same: dict[tuple[str, str], str] = {}
    for _ in range(ARGS.repeats):
        for name, answer in answers.items():
            for regime, (chosen, batch) in regimes.items():
                out, seconds = run(answer, chosen, batch)
                texts = [text for text, _ in out]
                reference.setdefault(regime, texts)  # ours fp32 runs first
                agree = sum(a == b for a, b in zip(texts, reference[regime]))
                same[name, regime] = f"{agree}/{len(out)}"
                rate = sum(n for _, n in out) / seconds
                speed[name, regime] = max(rate, speed.get((name, regime), 0.0))
    print(f"{'engine':<20}{'regime':<10}{'tokens/s':>10}{'same as ours fp32':>20}")
    for (name, regime), rate in speed.items():
        print(f"{name:<20}{regime:<10}{rate:>10.1f}{same[name, regime]:>20}")
    ratios = []
    for regime in regimes:
        mine = [v for (n, r), v in speed.items() if r == regime and n.startswith("ours")]
        peers = [v for (n, r), v in speed.items() if r == regime and not n.startswith("ours")]
        ratios.append(max(mine) / max(peers))
        print(f"{regime}: ours {max(mine):.1f} tokens/s, best peer {max(peers):.1f}")
    print(f"ratio={min(ratios):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--single", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each engine's best counts")
    ARGS = parser.parse_args()
    main()
