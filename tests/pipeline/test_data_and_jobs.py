import json

import pytest

from pipeline.cai.critique import ChainLog, export_chains, run_chains
from pipeline.cai.sft_data import build_sft_dataset
from pipeline.config.settings import ChainConfig, SamplingConfig
from pipeline.core.errors import DatasetError
from pipeline.core.job_folder import claim_run_folder
from pipeline.model.generation import TransformersBackend
from tests.records import requests
from tests.tiny import fresh_tiny_model, tiny_model

SAMPLING = SamplingConfig(temperature=1.0, max_new_tokens=6, seed=0)


@pytest.fixture(scope="module")
def chains():
    backend = TransformersBackend(tiny_model())
    return list(run_chains(backend, requests(4), ChainConfig(rounds=1, few_shot=False), SAMPLING))[
        -1
    ]


def test_chain_log_appends_reads_and_repairs_a_torn_line(tmp_path, chains):
    log = ChainLog(tmp_path)
    log.append(chains[:2])
    with open(log.path, "a") as f:
        f.write('{"id": "half-writ')  # a crash in the middle of a write
    assert log.done_ids() == {c.id for c in chains[:2]}
    log.append(chains[2:])
    assert log.read() == chains
    dataset = export_chains(tmp_path)
    from datasets import load_from_disk

    assert load_from_disk(str(dataset))["id"] == [c.id for c in chains]


def test_a_corrupt_middle_line_is_an_error(tmp_path, chains):
    log = ChainLog(tmp_path)
    log.append(chains[:1])
    with open(log.path, "a") as f:
        f.write("garbage\n")
    log.append(chains[1:2])
    with pytest.raises(DatasetError, match="corrupt"):
        log.read()


def test_run_folder_refuses_other_settings(tmp_path):
    claim_run_folder(tmp_path, {"seed": 1, "model": "m"})
    claim_run_folder(tmp_path, {"seed": 1, "model": "m"})
    with pytest.raises(DatasetError, match="seed differ"):
        claim_run_folder(tmp_path, {"seed": 2, "model": "m"})


def test_sft_dataset_mixes_helpful_data_and_loads_in_trl(tmp_path, chains):
    from datasets import load_from_disk
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    ChainLog(tmp_path / "chains").append(chains)
    backend = TransformersBackend(tiny_model())
    summary = build_sft_dataset(tmp_path / "chains", tmp_path / "sft", 0.5, backend, SAMPLING)
    usable = [c for c in chains if any(not r.failed for r in c.rounds)]
    assert summary.revisions == len(usable) and summary.skipped == len(chains) - len(usable)
    assert summary.helpful == round(0.5 * len(usable))
    rows = [json.loads(line) for line in (tmp_path / "sft" / "sft.jsonl").read_text().splitlines()]
    assert {r["source"] for r in rows} <= {"revision", "helpful"} and len(rows) == len(
        usable
    ) + summary.helpful
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)
    again = build_sft_dataset(tmp_path / "chains", tmp_path / "sft", 0.5, backend, SAMPLING)
    assert again == summary  # cached helpful answers, same shuffle

    dataset = load_from_disk(str(tmp_path / "sft" / "dataset"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model().tokenizer.name_or_path)
    trainer = SFTTrainer(
        model=fresh_tiny_model().model,
        train_dataset=dataset,
        processing_class=tokenizer,
        args=SFTConfig(
            output_dir=str(tmp_path / "out"),
            max_steps=1,
            report_to="none",
            per_device_train_batch_size=2,
            use_cpu=True,
        ),
    )
    assert "input_ids" in trainer.train_dataset.column_names
    assert len(trainer.train_dataset) == len(rows)


def test_sft_data_needs_chains(tmp_path):
    with pytest.raises(DatasetError, match="run `revise` first"):
        build_sft_dataset(tmp_path / "none", tmp_path / "sft", 0, None, SAMPLING)
