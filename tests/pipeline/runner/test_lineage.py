"""A run's lineage: the base, the inputs, the data's hash and the constitution behind it."""

import json

from pipeline.config.commands import PPOJob, SFTJob
from pipeline.runner.lineage import data_hash, lineage, run_config


def test_lineage_names_the_data_its_hash_and_its_constitution(tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "labels.jsonl").write_text('{"id": "a"}\n')
    (labels / "run.json").write_text(
        json.dumps({"constitution": "honest", "constitution_hash": "h1"})
    )
    facts = lineage(SFTJob(model="embedded", data=str(labels)))
    assert facts == {
        "base_model": "embedded",
        "data": str(labels),
        "data_hash": data_hash(labels),
        "constitution": "honest",
        "constitution_hash": "h1",
    }
    before = data_hash(labels)
    (labels / "labels.jsonl").write_text('{"id": "b"}\n')  # other records: another hash
    assert data_hash(labels) != before


def test_sft_data_carries_its_constitution_in_its_records(tmp_path):
    data = tmp_path / "sft-data"
    data.mkdir()
    (data / "sft.jsonl").write_text(json.dumps({"constitution_hash": "h2", "messages": []}) + "\n")
    assert lineage(SFTJob(data=str(data)))["constitution_hash"] == "h2"


def test_a_run_config_holds_the_settings_the_stage_and_the_lineage(tmp_path):
    job = PPOJob(reward_adapter="runs/reward/adapter", policy_adapter="runs/sft/adapter")
    config = run_config("ppo", job, tmp_path / "ppo-1")
    assert config["stage"] == "ppo" and config["kl_coef"] == job.kl_coef
    assert config["lineage"]["reward_adapter"] == "runs/reward/adapter"
    assert config["lineage"]["prompts"] == "red-team" and "data_hash" not in config["lineage"]
