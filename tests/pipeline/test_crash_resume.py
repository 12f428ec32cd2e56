"""kill -9 a real job at a random point (seeded), then run it again: revise, label and the
preference model on its labels each finish whole, with every item done once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cai.critique import ChainLog
from pipeline.core.files import is_complete
from pipeline.core.job_folder import read_status
from pipeline.data.preferences import LabelLog
from pipeline.train.runtime import read_metrics

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def run_killed(args: list[str], ws: Path, out: Path, rng: random.Random) -> None:
    """Start the job, wait until it has started working (progress written), SIGKILL it a
    random moment later, then run it again to the end."""
    command = [sys.executable, "-m", "pipeline", "--workspace", str(ws), *args, "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 180
    while time.time() < deadline and not (out / "progress.json").exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_status(out)[0] == "succeeded"


@pytest.mark.parametrize("seed", [0, 1])
def test_revise_label_and_reward_survive_kill_9_at_random_points(tmp_path, tiny_folder, seed):
    rng = random.Random(seed)
    ws = tmp_path / "ws"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"Tell me fact number {i}.\n" for i in range(8)))
    model = ["--model", str(tiny_folder)]

    chains = tmp_path / "chains"
    run_killed(
        [
            "revise",
            "--constitution",
            "harmless-helpful",
            "--prompts",
            str(prompts),
            *model,
            "--rounds",
            "1",
            "--no-few-shot",
            "--batch-size",
            "2",
            "--max-new-tokens",
            "16",
        ],
        ws,
        chains,
        rng,
    )
    ids = [c.id for c in ChainLog(chains).read()]
    assert len(ids) == len(set(ids)) == 8

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"p{i}",
                    "prompt": f"Question {i}?",
                    "response_a": f"Yes, answer {i}.",
                    "response_b": f"No answer {i}.",
                }
            )
            + "\n"
            for i in range(12)
        )
    )
    labels = tmp_path / "labels"
    run_killed(
        [
            "label",
            "--pairs",
            str(pairs),
            "--constitution",
            "harmless-helpful",
            *model,
            "--batch-size",
            "2",
        ],
        ws,
        labels,
        rng,
    )
    done = [r.pair.id for r in LabelLog(labels).read()]
    assert sorted(done) == sorted(f"p{i}" for i in range(12))

    pm = tmp_path / "pm"
    run_killed(
        [
            "reward",
            "--data",
            str(labels),
            *model,
            "--max-steps",
            "6",
            "--batch-size",
            "2",
            "--save-every",
            "1",
            "--max-length",
            "64",
            "--eval-fraction",
            "0.0",
        ],
        ws,
        pm,
        rng,
    )
    assert is_complete(pm / "adapter")
    steps = [r["step"] for r in read_metrics(pm) if "loss" in r]
    assert steps == list(range(1, 7))
