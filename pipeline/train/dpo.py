"""DPO: the cheap alternative to PM + PPO — trl's DPOTrainer with a LoRA policy trained
directly on the AI-labelled pairs. The reference is the same model with its adapter
disabled, so no second copy is held.

The AI labels are soft; DPO takes a hard chosen/rejected pair. Pairs whose label is too
close to a coin flip (`min_margin`, margin = |2p − 1|) are left out, and `label_smoothing`
(conservative DPO) says how often a label is assumed wrong."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from pipeline.config.commands import DPOJob
from pipeline.core.errors import DatasetError
from pipeline.data.preferences import read_labels, trl_rows
from pipeline.train.runtime import CancelFlag, train_trl_adapter


def dpo_examples(data: str | Path, min_margin: float = 0.0) -> list[dict]:
    """Conversational prompt/chosen/rejected rows from a labelling run."""
    rows = [r for r in trl_rows(read_labels(data)) if r["margin"] >= min_margin]
    if not rows:
        raise DatasetError(
            f"No labelled pair in {data} has a margin of at least {min_margin}; "
            "lower min_margin or label more pairs."
        )
    return [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in rows
    ]


def train_dpo(job: DPOJob, out: str | Path, cancel: CancelFlag | None = None) -> Path:
    """Train, resuming from `out/checkpoint` when one is there; returns the adapter folder."""
    from trl import DPOConfig, DPOTrainer

    examples = dpo_examples(job.data, job.min_margin)
    config = partial(DPOConfig, beta=job.beta, label_smoothing=job.label_smoothing)
    return train_trl_adapter(
        job,
        Path(out),
        cancel or CancelFlag(),
        examples,
        DPOTrainer,
        config,
        "DPO policy adapter",
        "pairs",
    )
