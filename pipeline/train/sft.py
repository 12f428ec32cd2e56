"""SL-CAI: LoRA fine-tuning on the SFT dataset (prompt → final revision, plus helpfulness
examples), with trl's SFTTrainer. The loss is on the assistant's answer only: each example
is given to trl as a conversational prompt/completion pair."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from pipeline.cai.critique import CHAINS_FILE, ChainLog
from pipeline.cai.sft_data import SFT_FILE, revision_example
from pipeline.config.commands import SFTJob
from pipeline.core.errors import DatasetError
from pipeline.core.files import read_jsonl_file
from pipeline.train.runtime import CancelFlag, train_trl_adapter


def chain_examples(folder: Path) -> list[dict]:
    """Prompt/completion examples straight from a chain run: each chain's final revision
    (chains with no accepted revision left out), without helpfulness examples mixed in."""
    usable = [c for c in ChainLog(folder).read() if any(not r.failed for r in c.rounds)]
    if not usable:
        raise DatasetError(f"{folder} holds no chain with an accepted revision.")
    return [
        {"prompt": (m := revision_example(c)["messages"])[:-1], "completion": m[-1:]}
        for c in usable
    ]


def sft_examples(data: str | Path) -> list[dict]:
    """Prompt/completion examples from an `sft-data` folder or its sft.jsonl, or from a chain
    run folder (its final revisions); a row of the wrong shape is named by its line."""
    path = Path(data)
    if path.is_dir() and not (path / SFT_FILE).exists() and (path / CHAINS_FILE).exists():
        return chain_examples(path)
    path = path / SFT_FILE if path.is_dir() else path

    def example(row: Any, n: int) -> dict:
        try:
            messages = row["messages"]
            roles = [m["role"] for m in messages]
        except (KeyError, TypeError):
            raise DatasetError(
                "not an SFT example (a JSON object with 'messages'); is this "
                "the output of `sft-data`?"
            ) from None
        if len(messages) < 2 or roles[-1] != "assistant" or not messages[-1]["content"].strip():
            raise DatasetError("the last message must be a non-empty assistant answer.")
        return {"prompt": messages[:-1], "completion": messages[-1:]}

    examples = read_jsonl_file(path, "the SFT data", example)
    if not examples:
        raise DatasetError(f"{path} holds no SFT examples.")
    return examples


def train_sft(job: SFTJob, out: str | Path, cancel: CancelFlag | None = None) -> Path:
    """Train, resuming from `out/checkpoint` when one is there; returns the adapter folder."""
    from trl import SFTConfig, SFTTrainer

    examples = sft_examples(job.data)
    return train_trl_adapter(
        job,
        Path(out),
        cancel or CancelFlag(),
        examples,
        SFTTrainer,
        partial(SFTConfig, completion_only_loss=True),
        "SL-CAI adapter (SFT)",
        "examples",
    )
