import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import jobs
from pipeline.critique import ChainConfig, run_chains
from pipeline.data import (ChainLog, build_sft_dataset, claim_run_folder, export_chains)
from pipeline.errors import DatasetError, JobError
from pipeline.generation import SamplingConfig, TransformersBackend
from pipeline.store import Store
from tests.pipeline.test_critique import requests
from tests.tiny import fresh_tiny_model, tiny_model

SAMPLING = SamplingConfig(temperature=1.0, max_new_tokens=6, seed=0)


@pytest.fixture(scope="module")
def chains():
    backend = TransformersBackend(tiny_model())
    return list(run_chains(backend, requests(4), ChainConfig(rounds=1, few_shot=False), SAMPLING))[-1]


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
    assert {r["source"] for r in rows} <= {"revision", "helpful"} and len(rows) == len(usable) + summary.helpful
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)
    again = build_sft_dataset(tmp_path / "chains", tmp_path / "sft", 0.5, backend, SAMPLING)
    assert again == summary  # cached helpful answers, same shuffle

    dataset = load_from_disk(str(tmp_path / "sft" / "dataset"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model().tokenizer.name_or_path)
    trainer = SFTTrainer(model=fresh_tiny_model().model, train_dataset=dataset,
                         processing_class=tokenizer,
                         args=SFTConfig(output_dir=str(tmp_path / "out"), max_steps=1,
                                        report_to="none", per_device_train_batch_size=2,
                                        use_cpu=True))
    assert "input_ids" in trainer.train_dataset.column_names
    assert len(trainer.train_dataset) == len(rows)


def test_sft_data_needs_chains(tmp_path):
    with pytest.raises(DatasetError, match="run `revise` first"):
        build_sft_dataset(tmp_path / "none", tmp_path / "sft", 0, None, SAMPLING)


def revise_args(model: Path, out: Path, prompts: Path) -> list[str]:
    return ["revise", "--constitution", "harmless-helpful", "--prompts", str(prompts),
            "--model", str(model), "--rounds", "2", "--no-few-shot", "--batch-size", "2",
            "--max-new-tokens", "24", "--temperature", "1.0", "--out", str(out)]


def test_job_cancel_then_resume_writes_no_duplicates(tmp_path, tiny_folder):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"Tell me fact number {i}.\n" for i in range(12)))
    store = Store(tmp_path / "ws")
    store.seed(Path(__file__).resolve().parents[2] / "constitutions")
    out = tmp_path / "run"
    job = jobs.launch(store, "revise", revise_args(tiny_folder, out, prompts), out)
    with pytest.raises(JobError, match="still running"):
        jobs.launch(store, "revise", revise_args(tiny_folder, out, prompts), out)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "chains.jsonl").exists():
        time.sleep(0.05)
    jobs.cancel(store, job.id)
    ended = jobs.wait(store, job.id, timeout=60)
    assert ended.status == "cancelled", jobs.log_tail(out)
    partial = ChainLog(out).done_ids()
    assert 0 < len(partial) < 12

    resumed = jobs.launch(store, "revise", revise_args(tiny_folder, out, prompts), out)
    assert jobs.wait(store, resumed.id, timeout=300).status == "succeeded", jobs.log_tail(out)
    ids = [c.id for c in ChainLog(out).read()]
    assert len(ids) == len(set(ids)) == 12 and partial <= set(ids)
    assert jobs.read_progress(out)["done"] == 12


def test_failed_job_reports_its_message(tmp_path, tiny_folder):
    store = Store(tmp_path / "ws")
    out = tmp_path / "run"
    job = jobs.launch(store, "revise", ["revise", "--constitution", "no-such", "--prompts",
                                        "red-team", "--out", str(out)], out)
    ended = jobs.wait(store, job.id, timeout=120)
    assert ended.status == "failed" and "neither a file nor a saved constitution" in ended.error


def test_a_job_that_died_silently_is_marked_failed_with_its_log(tmp_path):
    store = Store(tmp_path / "ws")
    out = tmp_path / "run"
    out.mkdir()
    (out / jobs.LOG_FILE).write_text("step 1\nKilled\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job = store.add_job("revise", ["revise"], str(out), dead.pid)
    (settled,) = [j for j in jobs.refresh(store) if j.id == job.id]
    assert settled.status == "failed" and "Killed" in settled.error
