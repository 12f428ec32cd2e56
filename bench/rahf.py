"""One RAHF run against one PPO run on the embedded model, same prompts and base, tiny presets,
each in a fresh process, in the same run.

Both train on the gold pairs' prompts: RAHF (Dual) on the pairs' human labels — two SFT
pattern adapters, then the representation loss; PPO with rollouts on the same prompts
against a preference model (an untrained LoRA + head: its cost, not its quality, is what is
measured). Wall clock covers everything a run does after loading the base (for RAHF both
phases); peak memory is the rise of peak resident memory (VmHWM) over the process's
footprint once the base is loaded (on a GPU, the CUDA allocator's peak).

"Per prompt" divides by the prompts each run trains on: PPO's steps × rollouts (each a
sampled answer scored and trained on) and RAHF's phase-2 steps × batch size (each a pair's
two answers moved). Ends with `ratio=<PPO / RAHF seconds per prompt>` (larger is better;
RAHF should be ≥ 3× faster per prompt: it generates nothing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch  # noqa: E402
from ppo import make_pm, on_gpu, peak_mb, start_measuring, status_mb  # bench/ppo.py

from pipeline.config.commands import PPOJob, RAHFJob, build_job, preset  # noqa: E402
from pipeline.config.settings import DEFAULT_MODEL
from pipeline.data.preferences import gold_pairs  # noqa: E402
from pipeline.model.loading import load_model  # noqa: E402
from pipeline.train.runtime import read_metrics  # noqa: E402


def jobs(model: str, pm: Path, prompts: Path) -> dict[str, object]:
    return {
        "ppo": build_job(
            PPOJob,
            {
                **preset("ppo", "tiny"),
                "model": model,
                "prompts": str(prompts),
                "reward_adapter": str(pm),
                "save_every": 1000,
            },
        ),
        "rahf": build_job(
            RAHFJob, {**preset("rahf", "tiny"), "model": model, "data": "gold", "save_every": 1000}
        ),
    }


def prompts_trained(kind: str, job) -> int:
    return job.steps * job.rollouts if kind == "ppo" else job.max_steps * job.batch_size


def worker(kind: str, model: str, pm: Path, prompts: Path, out: Path) -> None:
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    before = 0.0 if on_gpu() else status_mb("VmRSS")
    load_model(model)
    start_measuring()
    job = jobs(model, pm, prompts)[kind]
    started = time.perf_counter()
    if kind == "ppo":
        from pipeline.train.ppo import train_ppo

        train_ppo(job, out)
    else:
        from pipeline.train.rahf import train_rahf

        train_rahf(job, out)
    seconds = time.perf_counter() - started
    phase2 = read_metrics(out) if kind == "rahf" else []
    print(
        json.dumps(
            {
                "rise_mb": peak_mb() - before,
                "seconds": seconds,
                "prompts": prompts_trained(kind, job),
                # phase 2's steps, from its metrics' clock (the first step's own time
                # estimated as the mean of the others')
                "phase2": (phase2[-1]["time"] - phase2[0]["time"])
                * len(phase2)
                / max(len(phase2) - 1, 1)
                if len(phase2) > 1
                else None,
            }
        )
    )


def run_worker(kind: str, model: str, pm: Path, prompts: Path, out: Path) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            kind,
            "--model",
            model,
            "--pm",
            str(pm),
            "--prompts",
            str(prompts),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", choices=("ppo", "rahf"))
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--pm", type=Path)
    parser.add_argument("--prompts", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.model, args.pm, args.prompts, args.out)
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "gold-prompts.txt"
        prompts.write_text(
            "\n".join(dict.fromkeys(p.prompt.replace("\n", " ") for p in gold_pairs())) + "\n"
        )
        pm = make_pm(Path(tmp) / "pm", args.model)
        runs = {
            kind: run_worker(kind, args.model, pm, prompts, Path(tmp) / kind)
            for kind in ("ppo", "rahf")
        }
    where = f"GPU ({torch.cuda.get_device_name()})" if on_gpu() else "CPU"
    print(f"model {args.model}, {where}, tiny presets, the gold pairs' prompts")
    print(f"{'run':<6}{'prompts':>9}{'seconds':>10}{'s/prompt':>10}{'peak MB':>10}")
    for kind, run in runs.items():
        print(
            f"{kind:<6}{run['prompts']:>9}{run['seconds']:>10.1f}"
            f"{run['seconds'] / run['prompts']:>10.2f}{run['rise_mb']:>10.0f}"
        )
    ppo, rahf = runs["ppo"], runs["rahf"]
    if rahf.get("phase2"):
        print(
            f"RAHF phases: pattern adapters {rahf['seconds'] - rahf['phase2']:.1f} s, "
            f"representation loss {rahf['phase2']:.1f} s"
        )
    print(f"wall-clock ratio (PPO / RAHF, whole runs) = {ppo['seconds'] / rahf['seconds']:.2f}")
    print(f"peak memory ratio (RAHF / PPO) = {rahf['rise_mb'] / ppo['rise_mb']:.2f}")
    per_prompt = (ppo["seconds"] / ppo["prompts"]) / (rahf["seconds"] / rahf["prompts"])
    print(f"ratio={per_prompt:.2f}")


if __name__ == "__main__":
    main()
