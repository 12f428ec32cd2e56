"""How long a small job takes from Launch to its end, started cold (a fresh `python -m
pipeline` process, as before the warm launcher) against forked from the warm launcher
(pipeline/runner/warm.py), same machine, same run.

The job is a small real one: one critique-revision round on two prompts with the embedded
model (8 new tokens), so most of a cold start's time is its start-up (importing torch,
transformers, peft and trl) — what every job of a one-click pipeline pays once. Runs
`--runs` jobs each way, alternating, in one fresh workspace (the embedded model's cache is
built first) and prints the medians and what the warm start saved; then the same job typed
as a command (`python -m pipeline revise …` in a subprocess, waited for), cold against run
attached from the launcher: `command_ratio=`. Ends with `ratio=<cold / warm>` of the queued
job (larger is better).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.data.store import Store
from pipeline.model.loading import embedded_model_dir
from pipeline.runner import jobs, warm


def job_args(out: Path, prompts: Path) -> list[str]:
    return [
        "revise",
        *("--constitution", "harmless-helpful", "--prompts", str(prompts)),
        *("--rounds", "1", "--no-few-shot", "--max-new-tokens", "8", "--out", str(out)),
    ]


def timed_job(store: Store, out: Path, prompts: Path) -> float:
    """Seconds from queueing the job to its end."""
    start = time.perf_counter()
    job = jobs.launch(store, "revise", job_args(out, prompts), out)
    while (ended := next(j for j in jobs.refresh(store) if j.id == job.id)).active:
        time.sleep(0.02)
    if ended.status != "succeeded":
        raise SystemExit(f"the job failed: {ended.error}")
    return time.perf_counter() - start


def timed_command(workspace: Path, out: Path, prompts: Path) -> float:
    """Seconds of the same job typed as a command, from its start to its exit."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "pipeline", "--workspace", str(workspace)]
    subprocess.run([*command, *job_args(out, prompts)], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    embedded_model_dir()  # converted once, outside the timings
    folder = Path(tempfile.mkdtemp(prefix="job-start-"))
    prompts = folder / "prompts.txt"
    prompts.write_text("Tell me about the moon.\nHow do I boil an egg?\n")
    store = Store(folder / "workspace")
    store.seed()
    os.environ[warm.SWITCH_ENV] = "1"  # the warm runs' environment, the one it serves
    env = dict(os.environ)
    warm.warm_up(env)
    while (launcher := warm.launcher(env)) is None:
        time.sleep(0.5)
    rows: dict[str, list[float]] = {"cold": [], "warm": []}
    typed: dict[str, list[float]] = {"cold": [], "warm": []}
    for run in range(args.runs):
        for way in rows:
            os.environ[warm.SWITCH_ENV] = "0" if way == "cold" else "1"
            rows[way].append(timed_job(store, folder / f"{way}-{run}", prompts))
            out = folder / f"typed-{way}-{run}"
            typed[way].append(timed_command(folder / "workspace", out, prompts))
    os.environ.pop(warm.SWITCH_ENV)
    os.kill(launcher, signal.SIGTERM)
    cold, hot = (statistics.median(rows[way]) for way in ("cold", "warm"))
    cold_typed, hot_typed = (statistics.median(typed[way]) for way in ("cold", "warm"))
    print(f"a small job, cold start     {cold:6.2f} s")
    print(f"a small job, warm start     {hot:6.2f} s  ({cold - hot:.2f} s of start-up saved)")
    print(f"typed command, cold         {cold_typed:6.2f} s")
    print(f"typed command, attached     {hot_typed:6.2f} s")
    print(f"command_ratio={cold_typed / hot_typed:.2f}")
    print(f"ratio={cold / hot:.2f}")


if __name__ == "__main__":
    main()
