"""The SFT dataset (SL-CAI): final revisions of a run's chains as conversational examples,
mixed with helpfulness examples the model answers, as JSONL and a Hugging Face dataset."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.cai.critique import DATASET_DIR, Chain, ChainLog
from pipeline.config.settings import SamplingConfig
from pipeline.core.errors import DatasetError
from pipeline.core.files import (
    append_jsonl,
    read_jsonl_log,
    save_dataset,
    write_atomic,
    write_jsonl,
)
from pipeline.core.seeds import stable_int
from pipeline.data.prompts import PromptRecord, load_prompts
from pipeline.model.generation import GenerationBackend

SFT_FILE = "sft.jsonl"
HELPFUL_FILE = "helpful.jsonl"


@dataclass(frozen=True)
class SFTSummary:
    revisions: int  # examples from chains (prompt → final revision)
    helpful: int  # helpfulness examples mixed in
    skipped: int  # chains with no accepted revision, left out
    path: str


def revision_example(chain: Chain) -> dict:
    """A conversational SFT example in the `messages` format trl's SFTTrainer reads."""
    return {
        "id": chain.id,
        "source": "revision",
        "constitution_hash": chain.constitution_hash,
        "messages": [
            {"role": "user", "content": chain.prompt},
            {"role": "assistant", "content": chain.final_answer},
        ],
    }


def helpful_examples(
    backend: GenerationBackend,
    prompts: list[PromptRecord],
    count: int,
    sampling: SamplingConfig,
    cache: Path,
) -> list[dict]:
    """`count` helpfulness examples answered by the model, chosen by a seeded shuffle and
    cached in `cache` so a rerun does not generate them again."""
    order = sorted(prompts, key=lambda p: stable_int("helpful", sampling.seed, p.id))[:count]
    known = {r["id"]: r for r in read_jsonl_log(cache)}
    missing = [p for p in order if f"helpful-{p.id}" not in known]
    if missing:
        answers = backend.generate(
            [[{"role": "user", "content": p.prompt}] for p in missing], sampling
        )
        rows = [
            {
                "id": f"helpful-{p.id}",
                "source": "helpful",
                "constitution_hash": "",
                "messages": [
                    {"role": "user", "content": p.prompt},
                    {"role": "assistant", "content": a.text},
                ],
            }
            for p, a in zip(missing, answers)
            if a.text.strip()
        ]
        append_jsonl(cache, rows)
        known.update({r["id"]: r for r in rows})
    return [known[f"helpful-{p.id}"] for p in order if f"helpful-{p.id}" in known]


def build_sft_dataset(
    chains_dir: str | Path,
    out_dir: str | Path,
    helpful_ratio: float,
    backend: GenerationBackend | None,
    sampling: SamplingConfig,
    helpful_set: str = "helpful",
) -> SFTSummary:
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
        rows += helpful_examples(
            backend, load_prompts(helpful_set, "train"), wanted, sampling, out / HELPFUL_FILE
        )
    random.Random(stable_int("sft-shuffle", sampling.seed)).shuffle(rows)
    write_jsonl(out / SFT_FILE, rows)
    save_dataset(rows, out / DATASET_DIR)
    summary = SFTSummary(len(usable), len(rows) - len(usable), len(chains) - len(usable), str(out))
    write_atomic(out / "summary.json", json.dumps(asdict(summary), indent=2))
    return summary
