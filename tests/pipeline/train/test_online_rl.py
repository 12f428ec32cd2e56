"""trl's GRPO and RLOO as stages: from the SFT policy against the PM, through the command
line; each logs its reward and KL per step, saves the SFT adapter trained further, resumes
after a finished run without a step more and after a cancel from its checkpoint, and is the
alignment stage of run-all when asked."""

from __future__ import annotations

import math
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.cli import main
from pipeline.config.commands import GRPOJob, RLOOJob, RunAllJob
from pipeline.core.job_folder import JobCancelled
from pipeline.runner.run_all import plan
from pipeline.train.online_rl import train_online
from pipeline.train.runtime import CancelFlag, read_metrics
from tests.tiny import small_vocab_stages

WEIGHTS = "adapter_model.safetensors"


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    return small_vocab_stages(tmp_path_factory.mktemp("online"))


def online(stage: str, stages, out, steps: int = 3) -> list[str]:
    base, sft, pm = stages
    args = [stage, "--model", str(base), "--policy-adapter", str(sft), "--reward-adapter", str(pm)]
    args += ["--steps", str(steps), "--rollouts", "4", "--generations", "2"]
    return [*args, "--max-new-tokens", "6", "--out", str(out)]


def small(cls, stages, **changes):
    """A 3-step run of 4 answers a step, 2 per prompt, from the SFT policy against the PM."""
    base, sft, pm = stages
    values = dict(model=str(base), policy_adapter=str(sft), reward_adapter=str(pm), steps=3)
    return cls(**{**values, "rollouts": 4, "generations": 2, "max_new_tokens": 6, **changes})


@pytest.mark.integration
@pytest.mark.parametrize("stage", ["grpo", "rloo"])
def test_an_online_stage_trains_the_sft_policy_against_the_pm(stage, stages, tmp_path):
    ws = ["--workspace", str(tmp_path / "ws")]
    assert main([*ws, *online(stage, stages, tmp_path / stage)]) == 0
    rows = read_metrics(tmp_path / stage)
    assert [r["step"] for r in rows if "reward" in r] == [1, 2, 3]
    assert all(
        torch.isfinite(torch.tensor([r["reward"], r["kl"], r["loss"]])).all()
        for r in rows
        if "reward" in r
    )
    trained = load_file(tmp_path / stage / "adapter" / WEIGHTS)
    started = load_file(stages[1] / WEIGHTS)
    assert trained.keys() == started.keys()  # the SFT adapter, trained further
    assert any(not torch.equal(trained[k], started[k]) for k in trained)
    card = (tmp_path / stage / "adapter" / "README.md").read_text()
    assert f"({stage.upper()}, trl)" in card
    assert main([*ws, *online(stage, stages, tmp_path / stage)]) == 0  # finished: no step more
    assert len(read_metrics(tmp_path / stage)) == len(rows)


@pytest.mark.integration
def test_a_cancelled_grpo_run_resumes_from_its_checkpoint(stages, tmp_path):
    job = small(GRPOJob, stages, steps=30, save_every=100)
    out, cancel = tmp_path / "grpo", CancelFlag()

    def cancel_after_the_first_step():
        while not read_metrics(out):
            time.sleep(0.01)
        cancel.set()

    threading.Thread(target=cancel_after_the_first_step, daemon=True).start()
    with pytest.raises(JobCancelled):
        train_online(job, out, cancel, "grpo")
    stopped = max(r["step"] for r in read_metrics(out))
    assert stopped < 30 and list((out / "checkpoint").glob("checkpoint-*"))
    train_online(job, out, CancelFlag(), "grpo")
    steps = [r["step"] for r in read_metrics(out) if "reward" in r]
    assert steps == list(range(1, 31))  # each step once: the rows after the checkpoint rewound


def test_settings_are_checked_and_run_all_can_align_with_either():
    assert RLOOJob(reward_adapter="pm", rollouts=6, generations=4).problems() == [
        "rollouts must be a multiple of generations (4) (got 6)"
    ]
    assert GRPOJob(reward_adapter="pm", generations=1).problems() == [
        "generations must be at least 2 (got 1)"
    ]
    assert GRPOJob().problems() == ["reward_adapter is required"]
    stages = plan(RunAllJob(constitution="c.yaml", alignment="rloo"), Path("/r"))
    aligned = next(s for s in stages if s.name == "rloo")
    assert aligned.kind == "rloo" and "--preset" in aligned.args
    assert aligned.args[aligned.args.index("--policy-adapter") + 1] == "/r/sft/adapter"
    assert aligned.args[aligned.args.index("--reward-adapter") + 1] == "/r/reward/adapter"


@pytest.mark.integration
def test_a_preference_model_scoring_nan_stops_the_run_and_saves_nothing(stages, tmp_path):
    from pipeline.cai.reward_model import HEAD_FILE
    from pipeline.train.runtime import TrainingDiverged

    pm = stages[2]
    broken = tmp_path / "broken-pm"
    shutil.copytree(pm, broken)
    head = torch.load(broken / HEAD_FILE, weights_only=True)
    torch.save({k: torch.full_like(v, math.nan) for k, v in head.items()}, broken / HEAD_FILE)
    job = small(RLOOJob, stages, reward_adapter=str(broken))
    with pytest.raises(
        TrainingDiverged, match="the reward \\(PM score\\) became NaN/inf at step 1"
    ):
        train_online(job, tmp_path / "rloo", CancelFlag(), "rloo")
    assert not (tmp_path / "rloo" / "adapter").exists()
