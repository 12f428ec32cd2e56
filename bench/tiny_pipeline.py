"""The one-click tiny pipeline (`run-all`, tiny preset), stage by stage: this tree against the
code at `--before` (a git revision, checked out into a temporary worktree), same machine,
same run.

Both run `python -m pipeline run-all --constitution harmless-helpful` with the same amount of
work (the preset's prompts, rounds and steps), each in a fresh workspace and a fresh cache
(only the embedded model's converted weights are shared, so neither pays the one-time
conversion and neither finds the other's cached hidden states, likelihoods or int8 model).
The default `--before` is the last commit before the pipeline's speed work began (issue 28).

Prints each stage's seconds (from the job records: start to end of the stage's process) for
both, the totals (wall clock of the whole command), and `ratio=<before / ours>` (larger is
better; the issue's aim is ≥ 1.6, five minutes from eight). Takes two pipelines' time: run it
with nothing else on the machine. Flags it does not know go to `run-all` (e.g. `--model
FOLDER --no-few-shot` to check the bench itself on a tiny model in minutes). (Not named
bench/pipeline.py: run as a script, that name would hide the `pipeline` package.)
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from pipeline.data.store import WORKSPACE_ENV
from pipeline.model.loading import CACHE_ENV, cache_root, embedded_model_dir

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "9e563a5"  # the last commit before issue 28's work on the pipeline's speed
STAGES = ("revise", "sft-data", "sft", "pairs", "label", "reward", "ppo", "evaluate")


def stage_seconds(workspace: Path) -> dict[str, float]:
    """Seconds of each stage job, read from the workspace's job table (by SQL, so the same
    code reads what either revision wrote)."""
    with sqlite3.connect(workspace / "studio.db") as db:
        rows = db.execute("SELECT kind, started_at, finished_at FROM jobs WHERE kind != 'run-all'")
        return {
            kind: (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
            for kind, start, end in rows
            if start and end
        }


def run_pipeline(tree: Path, scratch: Path, extra: list[str]) -> tuple[float, dict[str, float]]:
    """Run-all from `tree` in its own workspace and cache; (total seconds, stage seconds)."""
    workspace, cache = scratch / "workspace", scratch / "cache"
    cache.mkdir(parents=True)
    (cache / "models").symlink_to(embedded_model_dir().parent)  # converted once, shared
    env = {**os.environ, WORKSPACE_ENV: str(workspace), CACHE_ENV: str(cache)}
    env["PYTHONPATH"] = str(tree)  # that revision's package, not the installed one
    argv = [sys.executable, "-m", "pipeline", "run-all", "--constitution", "harmless-helpful"]
    start = time.perf_counter()
    with open(scratch / "run-all.log", "w") as log:
        subprocess.run(
            [*argv, "--out", str(scratch / "run"), *extra],
            cwd=tree,
            env=env,
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return time.perf_counter() - start, stage_seconds(workspace)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="git revision of the baseline")
    parser.add_argument("--alignment", default="ppo", help="ppo, dpo or rahf")
    parser.add_argument("--only-ours", action="store_true", help="skip the baseline")
    args, passed = parser.parse_known_args()  # any other flag goes to run-all as it is
    extra = ["--alignment", args.alignment, *passed]
    print(f"cache of the embedded model: {embedded_model_dir()} (under {cache_root()})")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        scratch = Path(tmp)
        results = {}
        if not args.only_ours:
            old = scratch / "before-tree"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(old), args.before],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            try:
                results[f"before ({args.before})"] = run_pipeline(old, scratch / "before", extra)
            finally:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False
                )
        results["ours"] = run_pipeline(ROOT, scratch / "ours", extra)
    names = list(results)
    print(f"tiny pipeline, alignment {args.alignment} {' '.join(passed)}: seconds per stage")
    print(f"{'stage':<10}" + "".join(f"{n:>22}" for n in names))
    for stage in (*STAGES[:-2], args.alignment, "evaluate"):
        print(f"{stage:<10}" + "".join(f"{results[n][1].get(stage, 0.0):>22.1f}" for n in names))
    print(f"{'total':<10}" + "".join(f"{results[n][0]:>22.1f}" for n in names))
    if len(names) == 2:
        print(f"ratio={results[names[0]][0] / results['ours'][0]:.2f}")


if __name__ == "__main__":
    main()
