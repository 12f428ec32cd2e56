"""Kill -9 a training run at a chosen point of a save, for the crash-safety tests.

`python -m tests.crashing SCENARIO OUT MODEL [PM] --kill-at POINT:N` runs one small training
run in a child process and SIGKILLs it at the N-th time it reaches POINT:

  mark      a folder's files are written, its completeness marker not yet
  rename    an os.rename (folder → .old, or .new → folder)
  rmtree    deleting a leftover folder that exists (.old, or an older trl checkpoint)
  optimizer writing optimizer.pt (trl: mid-checkpoint, the folder half written)

The test then resumes the same run in its own process and checks it finishes whole.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
from pathlib import Path

from pipeline.cai.reward_model import Comparison  # noqa: E402
from pipeline.config.commands import PPOJob, RewardJob, SFTJob  # noqa: E402


def sft_job(out: Path, model: str) -> SFTJob:
    data = out.parent / "sft.jsonl"
    if not data.exists():
        rows = [
            f'{{"messages": [{{"role": "user", "content": "Say {i}."}}, '
            f'{{"role": "assistant", "content": "Sure, glad to help."}}]}}\n'
            for i in range(8)
        ]
        data.write_text("".join(rows))
    return SFTJob(
        model=model, data=str(data), max_steps=3, batch_size=2, save_every=1, max_length=64
    )


def comparisons() -> list[Comparison]:
    return [Comparison(f"q{i}", "yes glad", "no never", 1.0) for i in range(6)]


def pm_job(model: str) -> RewardJob:
    return RewardJob(
        model=model, data="synthetic", max_steps=3, batch_size=2, save_every=1, max_length=32
    )


def ppo_job(model: str, pm: str) -> PPOJob:
    return PPOJob(
        model=model,
        reward_adapter=pm,
        steps=3,
        rollouts=4,
        minibatch_size=2,
        max_new_tokens=4,
        save_every=1,
        steady_heap=False,
    )


def run(scenario: str, out: Path, model: str, pm: str = "") -> Path:
    """Train one scenario into `out` (resuming whatever is there); returns the adapter."""
    if scenario == "sft":
        from pipeline.train.sft import train_sft

        return train_sft(sft_job(out, model), out)
    if scenario == "pm":
        from pipeline.train.reward import train_preference_model

        return train_preference_model(pm_job(model), comparisons(), {}, out)
    from pipeline.train.ppo import train_ppo

    return train_ppo(
        ppo_job(model, pm),
        out,
        reward_fn=lambda prompts, answers: __import__("torch").zeros(len(answers)),
    )


def install_kill(point: str, nth: int) -> None:
    """Wrap the functions a save goes through so the process dies at the nth `point`."""
    import torch

    import pipeline.core.files as files
    import pipeline.train.runtime as runtime

    seen = {"n": 0}

    def maybe_die(hit: bool) -> None:
        if hit:
            seen["n"] += 1
            if seen["n"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    def wrap(original, hit):
        def wrapped(*args, **kwargs):
            maybe_die(hit(*args, **kwargs))
            return original(*args, **kwargs)

        return wrapped

    if point == "mark":
        files.mark_complete = runtime.mark_complete = wrap(files.mark_complete, lambda *a: True)
    elif point == "rename":
        os.rename = wrap(os.rename, lambda *a: True)
    elif point == "rmtree":
        shutil.rmtree = wrap(shutil.rmtree, lambda path, *a, **k: Path(path).exists())
    elif point == "optimizer":
        torch.save = wrap(torch.save, lambda obj, f, *a, **k: str(f).endswith("optimizer.pt"))
    else:
        raise SystemExit(f"unknown kill point {point}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=("sft", "pm", "ppo"))
    parser.add_argument("out")
    parser.add_argument("model")
    parser.add_argument("pm", nargs="?", default="")
    parser.add_argument("--kill-at", required=True, help="POINT:N")
    args = parser.parse_args()
    point, _, nth = args.kill_at.partition(":")
    install_kill(point, int(nth))
    run(args.scenario, Path(args.out), args.model, args.pm)


if __name__ == "__main__":
    main()
