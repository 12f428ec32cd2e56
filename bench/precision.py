"""Training arithmetic on this CPU: fp32 against bf16 autocast, same run, same model.

What `precision: auto` decides by the CPU's flags (bf16 autocast where it names
`avx512_bf16` or `amx_bf16`), measured: a LoRA training step of the model (forward, backward
and AdamW on a batch of `--batch` × `--tokens` tokens, the SFT stage's tiny-preset LoRA)
and a PM-style scoring pass without gradients (the hidden states of the same
batch), each the median of `--runs` after a warm-up, under each precision in turn. Prints
the seconds, the first step's loss under each (they should agree to bf16's precision), what
`auto` picks here and `ratio=<fp32 / bf16 step time>` (larger: bf16 pays).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from peft import get_peft_model

from pipeline.config.commands import SFTJob, build_job, preset
from pipeline.core.precision import computing, described
from pipeline.model.hidden import backbone
from pipeline.model.loading import load_model
from pipeline.train.runtime import lora_config


def timings(model, ids: torch.Tensor, precision: str, runs: int) -> tuple[float, float, float]:
    """(median step seconds, median scoring seconds, the first step's loss)."""
    trained = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in trained]
    optimizer = torch.optim.AdamW(trained, lr=1e-4)
    steps, scores, losses = [], [], []
    for _ in range(runs + 1):  # the first is a warm-up
        start = time.perf_counter()
        with computing(precision, "cpu"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        steps.append(time.perf_counter() - start)
        losses.append(loss.item())
        start = time.perf_counter()
        with torch.inference_mode(), computing(precision, "cpu"):
            backbone(model)(input_ids=ids)
        scores.append(time.perf_counter() - start)
    with torch.no_grad():  # the other precision starts from the same adapter
        for p, s in zip(trained, saved):
            p.copy_(s)
    return statistics.median(steps[1:]), statistics.median(scores[1:]), losses[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if min(args.batch, args.tokens, args.runs) < 1:
        parser.error("--batch, --tokens and --runs must be at least 1")
    torch.set_flush_denormal(True)
    loaded = load_model(args.model, device="cpu")
    job = build_job(SFTJob, {**preset("sft", "tiny"), "data": "-", "lora_dropout": 0.0})
    model = get_peft_model(loaded.model, lora_config(job))
    model.train()
    vocab = loaded.model.config.vocab_size
    ids = torch.randint(
        0, vocab, (args.batch, args.tokens), generator=torch.Generator().manual_seed(0)
    )
    threads = torch.get_num_threads()
    print(f"model {args.model}, batch {args.batch} x {args.tokens} tokens, {threads} threads")
    print(f"auto here: {described('auto', True)}")
    results = {p: timings(model, ids, p, args.runs) for p in ("fp32", "bf16")}
    for name, (step, score, loss) in results.items():
        print(
            f"{name:>5}: LoRA step {step:.2f} s, scoring pass {score:.2f} s, first loss {loss:.4f}"
        )
    print(f"scoring_ratio={results['fp32'][1] / results['bf16'][1]:.2f}")
    print(f"ratio={results['fp32'][0] / results['bf16'][0]:.2f}")


if __name__ == "__main__":
    main()
