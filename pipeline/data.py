"""Datasets on disk: chain logs (JSONL + Hugging Face dataset) and the SFT dataset.

A run folder's `chains.jsonl` is append-only, one finished chain per line, written a batch
at a time and flushed to disk, so an interrupted run loses at most the batch in flight and
a rerun skips every chain whose stable id is already there.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.critique import Chain, chain_from_dict, chain_to_dict
from pipeline.seeds import stable_int
from pipeline.errors import DatasetError
from pipeline.files import json_value, jsonl_text, replace_folder, write_atomic, write_jsonl
from pipeline.generation import GenerationBackend, SamplingConfig
from pipeline.prompts import PromptRecord, load_prompts

CHAINS_FILE = "chains.jsonl"
DATASET_DIR = "dataset"
SFT_FILE = "sft.jsonl"
HELPFUL_FILE = "helpful.jsonl"


def read_jsonl_log(path: Path) -> list[dict]:
    """Rows of a JSONL log; a torn last line (a crash mid-write) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    rows, good = [], 0
    for line in data.splitlines(keepends=True):
        try:
            rows.append(json_value(line.decode("utf-8")))
        except (DatasetError, UnicodeDecodeError):
            if good + len(line) < len(data):
                raise DatasetError(f"{path} is corrupt at byte {good}: a line in the middle "
                                   "is not JSON.") from None
            with open(path, "r+b") as f:
                f.truncate(good)
            break
        good += len(line)
    return rows


def append_jsonl(path: Path, rows: list[dict]) -> None:
    """Append rows in one write and flush them to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(jsonl_text(rows))
        f.flush()
        os.fsync(f.fileno())


class ChainLog:
    """The finished chains of one run folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / CHAINS_FILE

    def read(self) -> list[Chain]:
        return [chain_from_dict(r) for r in read_jsonl_log(self.path)]

    def done_ids(self) -> set[str]:
        return {r["id"] for r in read_jsonl_log(self.path)}

    def append(self, chains: list[Chain]) -> None:
        unfinished = [c.id for c in chains if not c.done]
        if unfinished:
            raise DatasetError(f"Only finished chains are logged (unfinished: {unfinished}).")
        append_jsonl(self.path, [chain_to_dict(c) for c in chains])


def save_dataset(rows: list[dict], folder: Path) -> Path:
    """Write rows as a Hugging Face dataset folder, replacing any earlier one crash-safely."""
    from datasets import Dataset

    return replace_folder(folder, lambda tmp: Dataset.from_list(rows).save_to_disk(str(tmp)))


def export_chains(folder: str | Path) -> Path:
    """The run's chains as a Hugging Face dataset in `folder/dataset`."""
    chains = ChainLog(folder).read()
    if not chains:
        raise DatasetError(f"No finished chains in {folder}.")
    return save_dataset([chain_to_dict(c) for c in chains], Path(folder) / DATASET_DIR)


# --- SFT data ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SFTSummary:
    revisions: int  # examples from chains (prompt → final revision)
    helpful: int  # helpfulness examples mixed in
    skipped: int  # chains with no accepted revision, left out
    path: str


def revision_example(chain: Chain) -> dict:
    """A conversational SFT example in the `messages` format trl's SFTTrainer reads."""
    return {"id": chain.id, "source": "revision", "constitution_hash": chain.constitution_hash,
            "messages": [{"role": "user", "content": chain.prompt},
                         {"role": "assistant", "content": chain.final_answer}]}


def helpful_examples(backend: GenerationBackend, prompts: list[PromptRecord], count: int,
                     sampling: SamplingConfig, cache: Path) -> list[dict]:
    """`count` helpfulness examples answered by the model, chosen by a seeded shuffle and
    cached in `cache` so a rerun does not generate them again."""
    order = sorted(prompts, key=lambda p: stable_int("helpful", sampling.seed, p.id))[:count]
    known = {r["id"]: r for r in read_jsonl_log(cache)}
    missing = [p for p in order if f"helpful-{p.id}" not in known]
    if missing:
        answers = backend.generate([[{"role": "user", "content": p.prompt}] for p in missing],
                                   sampling)
        rows = [{"id": f"helpful-{p.id}", "source": "helpful", "constitution_hash": "",
                 "messages": [{"role": "user", "content": p.prompt},
                              {"role": "assistant", "content": a.text}]}
                for p, a in zip(missing, answers) if a.text.strip()]
        append_jsonl(cache, rows)
        known.update({r["id"]: r for r in rows})
    return [known[f"helpful-{p.id}"] for p in order if f"helpful-{p.id}" in known]


def build_sft_dataset(chains_dir: str | Path, out_dir: str | Path, helpful_ratio: float,
                      backend: GenerationBackend | None, sampling: SamplingConfig,
                      helpful_set: str = "helpful") -> SFTSummary:
    """Final revisions as SFT examples, mixed with `helpful_ratio` helpfulness examples per
    revision example (0 = none), shuffled with the sampling seed; JSONL + HF dataset."""
    if not 0 <= helpful_ratio < float("inf"):
        raise DatasetError(f"helpful_ratio must be 0 or more (got {helpful_ratio}).")
    chains = ChainLog(chains_dir).read()
    if not chains:
        raise DatasetError(f"No finished chains in {chains_dir}; run `revise` first.")
    usable = [c for c in chains if any(not r.failed for r in c.rounds)]
    rows = [revision_example(c) for c in usable]
    out = Path(out_dir)
    wanted = round(helpful_ratio * len(rows))
    if wanted:
        if backend is None:
            raise DatasetError("Mixing helpfulness data needs a model to answer the prompts.")
        rows += helpful_examples(backend, load_prompts(helpful_set, "train"), wanted, sampling,
                                 out / HELPFUL_FILE)
    random.Random(stable_int("sft-shuffle", sampling.seed)).shuffle(rows)
    write_jsonl(out / SFT_FILE, rows)
    save_dataset(rows, out / DATASET_DIR)
    summary = SFTSummary(len(usable), len(rows) - len(usable), len(chains) - len(usable), str(out))
    write_atomic(out / "summary.json", json.dumps(asdict(summary), indent=2))
    return summary


RUN_FILE = "run.json"


def claim_run_folder(folder: str | Path, settings: dict) -> None:
    """Record a run's settings in `folder`, or check they match the ones already there, so
    a resumed run never mixes chains made under other settings."""
    path = Path(folder) / RUN_FILE
    if path.exists():
        earlier = json.loads(path.read_text())
        changed = sorted(k for k in set(earlier) | set(settings) if earlier.get(k) != settings.get(k))
        if changed:
            raise DatasetError(f"{folder} holds a run made with other settings ({', '.join(changed)} "
                               "differ); resume with the same settings or use a new --out folder.")
        return
    write_atomic(path, json.dumps(settings, indent=2, ensure_ascii=False))
