"""RL health warnings and reward outliers, from hand-made metrics; the nearest PM training
pairs on the tiny model."""

import pytest

from pipeline.data.preferences import Pair, Preference
from pipeline.train.health import nearest_pairs, reward_outliers, rl_health
from tests.tiny import tiny_model


def rows(rewards, kls, lengths, refusals):
    return [
        {"step": n + 1, "reward_mean": r, "kl": k, "answer_length": a, "refusal_rate": f}
        for n, (r, k, a, f) in enumerate(zip(rewards, kls, lengths, refusals))
    ]


def test_a_healthy_run_has_no_warning():
    assert (
        rl_health(rows([0.1, 0.2, 0.3, 0.4], [0.5, 1, 1.5, 2], [30, 31, 33, 32], [0, 0, 0.1, 0]))
        == []
    )
    assert rl_health(rows([0.1], [9], [30], [0])) == []  # one step says nothing


def test_reward_up_with_kl_past_the_limit_length_drift_and_evasiveness_are_named():
    found = rl_health(
        rows([0.1, 0.1, 0.5, 0.6], [1, 2, 7, 8], [20, 20, 35, 40], [0.0, 0.0, 0.25, 0.5])
    )
    kinds = [w.kind for w in found]
    assert kinds == ["reward-hacking", "length-drift", "evasiveness"]
    assert "0.100 → 0.550" in found[0].text and "7.5 nats" in found[0].text
    assert "from 20 to 38 tokens" in found[1].text and "0% to 38%" in found[2].text
    assert rl_health(rows([0.5, 0.5, 0.1, 0.1], [1, 2, 7, 8], [20] * 4, [0] * 4)) == []


def test_reward_outliers_are_each_steps_highest_and_lowest():
    samples = [
        {"step": 1, "reward": r, "prompt": "p", "answer": a}
        for r, a in ((0.2, "mid"), (0.9, "top"), (-0.4, "bottom"))
    ]
    samples.append({"step": 2, "reward": 0.1, "prompt": "p", "answer": "only"})
    out = reward_outliers(samples)
    assert [(o["step"], o["extreme"], o["answer"]) for o in out] == [
        (1, "highest", "top"),
        (1, "lowest", "bottom"),
        (2, "highest", "only"),
    ]


def test_the_nearest_training_pair_of_a_sample_is_its_own_text():
    labels = [
        Preference(
            Pair(f"Topic {i}?", f"Answer about topic {i}, at length.", "No."), 0.9, (), "j", "h"
        )
        for i in range(5)
    ]
    near = nearest_pairs(tiny_model(), "Topic 3?", "Answer about topic 3, at length.", labels, k=2)
    assert len(near) == 2 and near[0][1] is labels[3] and near[0][0] > 0.999


def test_the_pm_is_checked_against_the_ai_judge_it_learned_from(tmp_path, tiny_folder):
    import json

    from peft import get_peft_model

    from pipeline.cai.reward_model import new_head, save_pm
    from pipeline.config.commands import LabelJob, PPOJob, RewardJob, job_yaml
    from pipeline.core.errors import DatasetError
    from pipeline.data.preferences import LabelLog
    from pipeline.model.loading import load_model
    from pipeline.train.health import pm_judge_disagreement
    from pipeline.train.runtime import lora_config
    from tests.records import SHIPPED

    loaded = load_model(str(tiny_folder))
    pm = tmp_path / "reward" / "adapter"
    save_pm(
        get_peft_model(__import__("copy").deepcopy(loaded.model), lora_config(RewardJob())),
        new_head(loaded),
        pm,
        str(tiny_folder),
    )
    labels = tmp_path / "labels"
    LabelLog(labels).append([Preference(Pair("Hi?", "Hello.", "No."), 0.8, (), "j", "h")])
    (labels / "job.yaml").write_text(
        job_yaml(
            LabelJob(
                pairs="p",
                constitution=str(SHIPPED / "harmless-helpful.yaml"),
                model=str(tiny_folder),
                ensemble=1,
            )
        )
    )
    (tmp_path / "reward" / "job.yaml").write_text(
        job_yaml(RewardJob(model=str(tiny_folder), data=str(labels)))
    )
    ppo = tmp_path / "ppo"
    ppo.mkdir()
    (ppo / "job.yaml").write_text(
        job_yaml(PPOJob(model=str(tiny_folder), reward_adapter=str(pm), max_new_tokens=6))
    )
    with pytest.raises(DatasetError, match="no samples"):
        pm_judge_disagreement(ppo)
    samples = [
        {"step": 1, "prompt": f"Question {i}?", "answer": f"Answer {i}.", "reward": i / 10}
        for i in range(3)
    ]
    (ppo / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in samples))
    check = pm_judge_disagreement(ppo)
    assert check.compared <= 2 and 0 <= check.disagreeing <= check.compared  # step 1's extremes
    assert "disagree on" in check.text and str(tiny_folder) in check.judge
    with pytest.raises(DatasetError, match="cannot be traced"):
        pm_judge_disagreement(tmp_path / "labels")
