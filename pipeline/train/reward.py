"""Training the preference model (the PM itself is `pipeline/cai/reward_model.py`): the soft-label
loss and the loop, on soft AI labels — and optionally pretrained (PMP) on Stack Exchange
answers ranked by votes (`pipeline/data/stackexchange.py`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.cai.reward_model import (
    accuracy,
    load_head,
    merged,
    new_head,
    pair_scores,
    write_pm,
)
from pipeline.config.commands import PMPJob, RewardJob
from pipeline.core.errors import DatasetError
from pipeline.core.files import recover_folder, replace_folder, write_atomic
from pipeline.core.job_folder import SUMMARY_FILE, JobCancelled, is_main_process
from pipeline.core.precision import computing
from pipeline.core.seeds import stable_int
from pipeline.data.preferences import Comparison, gold_pairs, read_labels
from pipeline.data.stackexchange import pmp_comparisons
from pipeline.model.loading import check_adapter_base, load_model
from pipeline.train.dropout import quicken
from pipeline.train.runtime import (
    ADAPTER_DIR,
    CHECKPOINT_DIR,
    CancelFlag,
    MetricsLog,
    check_gradients,
    check_loss,
    lora_config,
    seeded_batch,
    write_model_card,
)


def soft_preference_loss(r_a: torch.Tensor, r_b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """−[p·log σ(r_A − r_B) + (1 − p)·log σ(r_B − r_A)]: the Bradley–Terry loss on a soft
    label; at p = 1 it is the usual −log σ(r_good − r_bad)."""
    return -(p * F.logsigmoid(r_a - r_b) + (1 - p) * F.logsigmoid(r_b - r_a)).mean()


# --- data --------------------------------------------------------------------------------------


def ai_comparisons(data: str | Path) -> list[Comparison]:
    """Soft-labelled comparisons from a labelling run (identical pairs carry no preference)."""
    return [
        Comparison(p.pair.prompt, p.pair.response_a, p.pair.response_b, p.p_a)
        for p in read_labels(data)
        if "identical" not in p.flags
    ]


def gold_comparisons() -> list[Comparison]:
    return [
        Comparison(p.prompt, p.response_a, p.response_b, 1.0 if p.human == "A" else 0.0)
        for p in gold_pairs()
        if p.human in ("A", "B")
    ]


# --- training ----------------------------------------------------------------------------------


def train_preference_model(
    job: RewardJob | PMPJob,
    train: list[Comparison],
    evals: dict[str, list[Comparison]],
    out: str | Path,
    cancel: CancelFlag | None = None,
    init_adapter: str = "",
) -> Path:
    """The PM training loop (shared by PMP and reward training); resumes from
    `out/checkpoint`. Returns the PM folder."""
    from peft import PeftModel, get_peft_model

    out, cancel = Path(out), cancel or CancelFlag()
    if not train:
        raise DatasetError("No comparisons to train the preference model on.")
    torch.manual_seed(job.seed)
    loaded = load_model(job.model)
    checkpoint = out / CHECKPOINT_DIR
    resumed = recover_folder(checkpoint)
    start_from = resumed or (Path(init_adapter) if init_adapter else None)
    if init_adapter:
        check_adapter_base(init_adapter, loaded)
    if start_from:
        model = PeftModel.from_pretrained(loaded.model, str(start_from), is_trainable=True)
        head = load_head(start_from, loaded)
    else:
        model, head = get_peft_model(loaded.model, lora_config(job)), new_head(loaded)
    quicken(model)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=job.learning_rate)
    state = json.loads((checkpoint / "state.json").read_text()) if resumed else {"step": 0}
    if resumed:
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    per_epoch = math.ceil(len(train) / job.batch_size)
    total = job.max_steps or max(1, math.ceil(job.epochs * per_epoch))
    log = MetricsLog(out)
    log.rewind(state["step"])

    def save_checkpoint(step: int) -> None:
        def write(folder: Path) -> None:
            write_pm(model, head, folder, job.model)
            torch.save(optimizer.state_dict(), folder / "optimizer.pt")
            (folder / "state.json").write_text(json.dumps({"step": step}))

        replace_folder(checkpoint, write)

    try:
        model.train()
        for step in range(state["step"], total):
            batch = seeded_batch(train, step, job.batch_size, "pm-order", job.seed)
            with computing(job.precision, loaded.device):
                r_a, r_b = pair_scores(model, head, loaded.tokenizer, batch, job.max_length)
            p = torch.tensor([c.p for c in batch], device=r_a.device)
            loss = soft_preference_loss(r_a, r_b, p)
            check_loss(loss, step + 1)
            optimizer.zero_grad()
            loss.backward()
            check_gradients(params, step + 1)
            optimizer.step()
            agree = ((r_a > r_b) == (p > 0.5)).float().mean().item()
            log.write(
                step + 1,
                total,
                loss=loss.item(),
                accuracy=agree,
                margin=(r_a - r_b).abs().mean().item(),
            )
            if cancel.requested or (step + 1) % job.save_every == 0:
                save_checkpoint(step + 1)
            if cancel.requested:
                raise JobCancelled()
        model.eval()
        with merged(model), computing(job.precision, loaded.device):
            results = {
                name: accuracy(model, head, loaded.tokenizer, data, job.max_length)
                for name, data in evals.items()
            }
        log.write(
            total,
            total,
            **{f"{name}_accuracy": r.value for name, r in results.items()},
            **{
                f"{name}_always_longer": r.longer
                for name, r in results.items()
                if r.longer is not None
            },
            **{
                f"{name}_length_controlled": r.controlled
                for name, r in results.items()
                if r.controlled is not None
            },
        )

        if is_main_process():  # what the Runs tab headlines: held-out numbers, with intervals
            write_atomic(
                out / SUMMARY_FILE,
                json.dumps({"held_out": {name: r.text for name, r in results.items()}}, indent=2),
            )

        def write(folder: Path) -> None:
            write_pm(model, head, folder, job.model)
            write_model_card(
                folder,
                "Preference model (LoRA + scalar head)",
                job,
                {
                    "base model": job.model,
                    "data": job.data,
                    "comparisons": len(train),
                    "steps": total,
                    **{f"{name} accuracy": r.text for name, r in results.items()},
                },
            )

        folder = replace_folder(out / ADAPTER_DIR, write)
    finally:
        model.unload()  # the base model is shared in this process: take LoRA off it
    return folder


def train_reward(job: RewardJob, out: str | Path, cancel: CancelFlag | None = None) -> Path:
    """Train the PM on AI labels; held-out accuracy on the AI labels and on the gold pairs."""
    comparisons = ai_comparisons(job.data)
    held = [
        c
        for c in comparisons
        if stable_int("pm-eval", job.seed, c.prompt, c.answer_a) % 1000 < job.eval_fraction * 1000
    ]
    train = [c for c in comparisons if c not in held] or comparisons
    return train_preference_model(
        job, train, {"held_out_ai": held, "gold": gold_comparisons()}, out, cancel, job.init_adapter
    )


def train_pmp(job: PMPJob, out: str | Path, cancel: CancelFlag | None = None) -> Path:
    """Preference-model pretraining on a Stack Exchange dump."""
    return train_preference_model(
        job, pmp_comparisons(job.data, job.max_pairs), {"gold": gold_comparisons()}, out, cancel
    )
