import dataclasses
import json

import pytest

from pipeline.cai.critique import ChainLog
from pipeline.config.commands import SFTJob, build_job, preset
from pipeline.core.errors import DatasetError, JobError
from pipeline.train.runtime import read_metrics
from pipeline.train.sft import sft_examples, train_sft
from tests.records import chain_record


def write_sft(path, rows):
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows))
    return path


def test_configs_refuse_unknown_fields_and_impossible_values():
    with pytest.raises(JobError, match="The sft settings have no field lr"):
        build_job(SFTJob, {"lr": 1, "data": "x"})
    with pytest.raises(JobError, match="learning_rate must be > 0"):
        build_job(SFTJob, {"learning_rate": -1.0, "data": "x"})
    with pytest.raises(JobError, match="batch_size must be int"):
        build_job(SFTJob, {"batch_size": "four", "data": "x"})
    job = build_job(SFTJob, {**preset("sft", "tiny"), "data": "x", "learning_rate": 1})
    assert job.learning_rate == 1.0 and job.max_steps == 24


def test_sft_data_of_the_wrong_shape_is_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(DatasetError, match="line 1: not an SFT example"):
        sft_examples(bad)


def test_a_chain_run_folder_feeds_sft_with_its_accepted_final_revisions(tmp_path):
    good = chain_record("Pick it with a rake.", ["Ask a locksmith to open it."])
    failed = dataclasses.replace(chain_record("Pick it.", [""]), id="c2")
    ChainLog(tmp_path / "chains").append([good, failed])
    examples = sft_examples(tmp_path / "chains")
    assert examples == [
        {
            "prompt": [{"role": "user", "content": good.prompt}],
            "completion": [{"role": "assistant", "content": "Ask a locksmith to open it."}],
        }
    ]
    ChainLog(tmp_path / "none").append([failed])
    with pytest.raises(DatasetError, match="no chain with an accepted revision"):
        sft_examples(tmp_path / "none")


def test_sft_loss_falls_and_the_adapter_loads(tmp_path, tiny_folder):
    rows = [
        [
            {"role": "user", "content": f"Say the word number {i}."},
            {"role": "assistant", "content": "I am sorry, but I can help with that safely."},
        ]
        for i in range(8)
    ]
    data = write_sft(tmp_path / "sft.jsonl", rows)
    job = SFTJob(
        model=str(tiny_folder),
        data=str(data),
        max_steps=12,
        batch_size=4,
        learning_rate=3e-2,
        save_every=100,
        lora_targets="q_proj,v_proj,up_proj,down_proj",
    )
    adapter = train_sft(job, tmp_path / "run")
    losses = [r["loss"] for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert len(losses) >= 10 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3
    assert (adapter / "adapter_config.json").exists() and "final loss" in (
        adapter / "README.md"
    ).read_text()
    from pipeline.model.loading import load_model

    merged = load_model(str(adapter), device="cpu")
    assert merged.model.config.num_hidden_layers == 2
