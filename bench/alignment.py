"""Our PPO against trl's GRPO and RLOO, same run: the same SFT policy, the same preference
model, the same prompts and the tiny preset's amount of sampling (steps × rollouts answers).

Each stage runs as the command a user types (`python -m pipeline STAGE --preset tiny …`) in
its own process; then every policy, and the SFT policy it started from, answers the held-out
red-team prompts (sampled at temperature 1, the same seeds for all) and the PM scores them.
Printed per stage: seconds in all and per answer trained on, the process's peak memory (its
max RSS), the PM-score gain over the SFT policy with a paired bootstrap 95% interval over
prompts, and the KL to the reference (the base) measured the same way for all three: the
mean over those answers of log π(answer) − log π_ref(answer). No target: this is the
comparison a user asks for.

    python bench/alignment.py --run WORKSPACE/runs/run-all-…   (its sft/ and reward/)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pipeline.cai.reward_model import load_head, scores_by_length
from pipeline.config.commands import PRESETS
from pipeline.config.settings import SamplingConfig
from pipeline.data.prompts import load_prompts
from pipeline.model.generation import TransformersBackend, chat
from pipeline.model.loading import load_model
from pipeline.model.scoring import sequence_logprobs

STAGES = ("ppo", "grpo", "rloo")


def train(stage: str, sft: Path, pm: Path, model: str, scratch: Path) -> tuple[float, float]:
    """Run one stage as its command; (seconds, peak RSS in MB of its process)."""
    argv = [sys.executable, "-m", "pipeline", "--workspace", str(scratch / "ws"), stage]
    argv += ["--preset", "tiny", "--model", model, "--policy-adapter", str(sft)]
    argv += ["--reward-adapter", str(pm), "--out", str(scratch / stage)]
    start = time.perf_counter()
    with open(scratch / f"{stage}.log", "w") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{stage} failed: see {scratch / f'{stage}.log'}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def answers(policy: str, prompts: list[str], new_tokens: int) -> tuple[list[list[int]], ...]:
    """Sampled answers (temperature 1, one seed per prompt, the same for every policy):
    (prompt ids, answer ids)."""
    backend = TransformersBackend(load_model(policy), max_batch_size=16)
    config = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=new_tokens, seed=0)
    sampled = backend.sample_ids([chat(p) for p in prompts], config)
    return [q for q, _ in sampled], [a for _, a in sampled]


def paired_interval(diffs: list[float], resamples: int = 2000) -> tuple[float, float]:
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choice(diffs) for _ in diffs) for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run-all folder (its sft/ and reward/)")
    parser.add_argument("--sft", type=Path, help="the SFT adapter (instead of --run)")
    parser.add_argument("--pm", type=Path, help="the preference model (instead of --run)")
    parser.add_argument("--model", default="embedded", help="their base model")
    parser.add_argument("--eval-prompts", type=int, default=16)
    args = parser.parse_args()
    sft = args.sft or (args.run / "sft" / "adapter" if args.run else None)
    pm = args.pm or (args.run / "reward" / "adapter" if args.run else None)
    if not (sft and pm):
        sys.exit("give --run, or --sft and --pm")
    torch.set_flush_denormal(True)
    tiny = PRESETS["tiny"]
    new_tokens = tiny["ppo"]["max_new_tokens"]
    prompts = [p.prompt for p in load_prompts("red-team", "test")][: args.eval_prompts]
    with tempfile.TemporaryDirectory(prefix="bench-alignment-") as tmp:
        scratch = Path(tmp)
        trained = {stage: train(stage, sft, pm, args.model, scratch) for stage in STAGES}
        scorer = load_model(str(pm))
        head = load_head(pm, scorer)
        reference = load_model(args.model)

        def scored(policy: Path) -> tuple[list[float], list[float]]:
            """PM score and log π − log π_ref of each prompt's sampled answer."""
            contexts, continuations = answers(str(policy), prompts, new_tokens)
            tok = scorer.tokenizer
            texts = [tok.decode(a, skip_special_tokens=True).strip() for a in continuations]
            pm_scores = scores_by_length(scorer.model, head, tok, prompts, texts).tolist()
            mine = sequence_logprobs(load_model(str(policy)), contexts, continuations)
            ref = sequence_logprobs(reference, contexts, continuations)
            return pm_scores, [m.logprob - r.logprob for m, r in zip(mine, ref)]

        base_scores, base_kl = scored(sft)
        print(
            f"{len(prompts)} held-out red-team prompts, {new_tokens} new tokens; SFT policy: "
            f"PM {statistics.fmean(base_scores):+.4f}, "
            f"KL to the base {statistics.fmean(base_kl):.3f}"
        )
        print(
            f"{'stage':<6}{'seconds':>9}{'s/answer':>10}{'peak MB':>9}"
            f"{'PM gain over SFT (95% CI)':>34}{'KL to base':>12}"
        )
        for stage in STAGES:
            seconds, peak = trained[stage]
            config = tiny[stage]
            trained_on = config["steps"] * config["rollouts"]
            scores, kl = scored(scratch / stage / "adapter")
            diffs = [a - b for a, b in zip(scores, base_scores)]
            low, high = paired_interval(diffs)
            gain = f"{statistics.fmean(diffs):+.4f} ({low:+.4f} … {high:+.4f})"
            print(
                f"{stage:<6}{seconds:>9.0f}{seconds / trained_on:>10.2f}{peak:>9.0f}"
                f"{gain:>34}{statistics.fmean(kl):>12.3f}"
            )


if __name__ == "__main__":
    main()
