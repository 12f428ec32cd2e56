"""trl's GRPO and RLOO as stages: from the SFT policy against the PM, through the command
line; each logs its reward and KL per step, saves the SFT adapter trained further, resumes
after a finished run without a step more and after a cancel from its checkpoint, and is the
alignment stage of run-all when asked; the representation judge (a probe from `values fit`)
rewards them instead of the PM on the judge's own scale."""

from __future__ import annotations

import json
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
from pipeline.core.errors import ModelError
from pipeline.core.job_folder import JobCancelled
from pipeline.data.constitution import new_constitution
from pipeline.data.preferences import Pair
from pipeline.model.loading import load_model
from pipeline.runner.lineage import lineage
from pipeline.runner.run_all import plan
from pipeline.train.online_rl import probe_reward, train_online
from pipeline.train.runtime import CancelFlag, read_metrics
from pipeline.values.representation_judge import RepresentationJudge, load_probe
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
    assert GRPOJob().problems() == [
        "reward_adapter or reward_probe is required (a PM, or a probe from values fit)"
    ]
    assert GRPOJob(reward_adapter="pm", reward_probe="fit/probe").problems() == [
        "reward_probe and reward_adapter: give one reward, not both"
    ]
    assert GRPOJob(reward_probe="fit/probe").problems() == []
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


@pytest.fixture(scope="module")
def probe(stages, tmp_path_factory):
    """A probe fitted by `values fit` on the small base from pairs people labelled: the
    kind words chosen over the unkind ones."""
    root = tmp_path_factory.mktemp("probe")
    kind = ["good kind", "glad to help", "yes sure", "thanks fine", "great safe"]
    unkind = ["bad harm", "rude mean", "never hate", "ugly awful", "wrong no"]
    rows = [
        {"prompt": f"q{i} {j}", "chosen": a, "rejected": b}
        for i, a in enumerate(kind)
        for j, b in enumerate(unkind)
    ]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fit = ["values", "fit", "--model", str(stages[0]), "--pairs", str(root / "pairs.jsonl")]
    assert main(["--workspace", str(root / "ws"), *fit, "--out", str(root / "fit")]) == 0
    return root / "fit" / "probe"


def test_a_probe_rewards_on_the_representation_judges_own_scale(stages, probe, tiny_folder):
    reward = probe_reward(str(stages[0]), str(probe))
    assert reward.__name__ == "representation_judge"  # trl logs the reward by this name
    prompt, a, b = "q", "good kind", "bad harm"
    r_a, r_b = reward([prompt, prompt], [[{"role": "assistant", "content": x}] for x in (a, b)])
    loaded = load_model(str(stages[0]))
    judged = RepresentationJudge(loaded, load_probe(probe, loaded)).label(
        new_constitution("any"), [Pair(prompt, a, b)]
    )[0]
    assert judged.p_a == pytest.approx(1 / (1 + math.exp(r_b - r_a)), abs=1e-5)
    assert r_a > r_b  # the probe learnt the labels: the kind answer is rewarded more
    with pytest.raises(ModelError, match="fit one for this model"):
        probe_reward(str(tiny_folder), str(probe))  # fitted on another model's states


@pytest.mark.integration
def test_grpo_from_the_command_line_rewarded_by_a_probe(stages, probe, tmp_path):
    base, sft, _ = stages
    args = online("grpo", stages, tmp_path / "grpo")
    args[args.index("--reward-adapter") : args.index("--reward-adapter") + 2] = [
        "--reward-probe",
        str(probe),
    ]
    assert main(["--workspace", str(tmp_path / "ws"), *args]) == 0
    rows = [r for r in read_metrics(tmp_path / "grpo") if "reward" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["reward"]) for r in rows)
    trained = load_file(tmp_path / "grpo" / "adapter" / WEIGHTS)
    assert any(not torch.equal(v, load_file(sft / WEIGHTS)[k]) for k, v in trained.items())
    facts = lineage(GRPOJob(model=str(base), reward_probe=str(probe)))
    assert facts["reward_probe"] == str(probe)
    assert facts["probe_agreement"].startswith(
        f"{load_probe(probe, load_model(str(base))).cv_accuracy:.0%}"
    )
