"""RAHF — Representation Alignment from Human Feedback (Liu et al., arXiv 2312.15997): align
a model by moving its hidden states instead of by RL, in two phases, each checkpointed.

1. The pattern. *Dual*: two LoRA SFT adapters (the SFT stage's own loop), one on the
   preferred answers of the labelled pairs and one on the dispreferred; the pattern at a
   layer is h_good − h_bad on the same (prompt, answer). *SCIT*: one adapter trained with
   the contrastive-instruction loss (the preferred answer likelier under a good instruction
   and the dispreferred under a bad one, both written from a principle of the constitution,
   drawn by weight per pair); the pattern is its h under the good instruction minus under
   the bad one, over the same answer tokens.
2. The representation loss. A fresh LoRA on the base is trained so that at each target
   layer, over answer tokens, ‖h_lora − (h_base + α·v)‖₂ shrinks (`rahf_math`). The pattern
   adapters stay frozen on the same base (peft switches adapters), so no second model copy
   is held, and nothing is generated: no rollouts, no reward model.

Run folder: good/ and bad/ (Dual) or scit/ (SCIT) hold phase 1 with their own metrics and
checkpoints; metrics.jsonl, checkpoint/ and adapter/ are phase 2's, as in every stage.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from pipeline.config.commands import RAHFJob, SFTJob, build_job
from pipeline.core.errors import DatasetError
from pipeline.core.files import is_complete, recover_folder, replace_folder
from pipeline.core.job_folder import JobCancelled, write_progress
from pipeline.core.precision import computing
from pipeline.core.seeds import stable_int
from pipeline.data.constitution import Constitution
from pipeline.data.preferences import LABELS_FILE, read_labels, trl_rows
from pipeline.model.hidden import decoder_layers, encode_conversations, states_at
from pipeline.model.loading import ADAPTER_CONFIG, load_model
from pipeline.train import rahf_math
from pipeline.train.dropout import quicken
from pipeline.train.runtime import (
    ADAPTER_DIR,
    CHECKPOINT_DIR,
    CancelFlag,
    MetricsLog,
    check_gradients,
    check_loss,
    flattened_adapter,
    lora_config,
    seeded_batch,
    train_trl_adapter,
    write_model_card,
)

TRAINED = "rahf"  # the adapter phase 2 trains


@dataclass(frozen=True)
class Contrast:
    """One labelled pair, with SCIT's instructions for it ('' for Dual)."""

    prompt: str
    chosen: str
    rejected: str
    good: str = ""
    bad: str = ""


def is_label_run(data: str | Path) -> bool:
    path = Path(data)
    return (path / LABELS_FILE).exists() if path.is_dir() else path.name.endswith(LABELS_FILE)


def labelled_pairs(data: str, min_margin: float = 0.0) -> list[Contrast]:
    """(prompt, preferred, dispreferred) from AI labels (a label run), or from human labels
    ('gold', or a pairs file whose rows carry them); ties and identical answers left out."""
    if is_label_run(data):
        rows = [
            Contrast(r["prompt"], r["chosen"], r["rejected"])
            for r in trl_rows(read_labels(data))
            if r["margin"] >= min_margin
        ]
    else:
        from pipeline.values.features import pair_source

        rows = [
            Contrast(
                p.prompt,
                *((p.response_a, p.response_b) if p.human == "A" else (p.response_b, p.response_a)),
            )
            for p in pair_source(data, [])
            if p.human in ("A", "B") and not p.identical
        ]
    if len(rows) < 2:
        raise DatasetError(
            f"RAHF needs at least 2 labelled pairs with a preferred answer; {data} "
            f"gives {len(rows)} (ties, identical answers and AI labels below "
            "min_margin are left out)."
        )
    return rows


def with_instructions(
    rows: list[Contrast], constitution: Constitution, seed: int
) -> list[Contrast]:
    """Each pair gets one enabled principle, drawn by weight (seeded), as SCIT's good
    instruction and its opposite as the bad one."""
    from pipeline.values.directions import instructions

    principles = list(constitution.enabled_principles)
    if not principles:
        raise DatasetError(
            f"Every principle of '{constitution.name}' is disabled; SCIT writes its "
            "instructions from enabled principles."
        )
    weights = [p.weight for p in principles]
    out = []
    for n, row in enumerate(rows):
        rng = random.Random(stable_int("scit-principle", seed, n, row.prompt))
        good, bad = instructions(rng.choices(principles, weights)[0])
        out.append(Contrast(row.prompt, row.chosen, row.rejected, good, bad))
    return out


def default_layers(n_layers: int) -> list[int]:
    """Every second layer of the middle third (1…L as in `hidden`)."""
    low, high = n_layers // 3 + 1, max(n_layers // 3 + 1, 2 * n_layers // 3)
    return list(range(low, high + 1, 2))


def check_target_layers(layers: list[int], n_layers: int) -> None:
    bad = [i for i in layers if not 1 <= i <= n_layers]
    if bad:
        raise DatasetError(
            f"target_layers are 1 to {n_layers} for this model (got {', '.join(map(str, bad))})."
        )


def total_steps(job: RAHFJob, examples: int, steps: int = 0) -> int:
    return steps or job.max_steps or max(1, math.ceil(job.epochs * examples / job.batch_size))


# --- the loop both custom phases share ------------------------------------------------------


def optimise(
    model,
    adapter: str,
    folder: Path,
    total: int,
    lr: float,
    save_every: int,
    loss_at: Callable[[int], tuple[torch.Tensor, dict[str, float]]],
    cancel: CancelFlag,
    precision: str,
) -> None:
    """Train `adapter` of the peft `model` for `total` steps into `folder` (metrics.jsonl,
    checkpoint/), resuming from its checkpoint (whose adapter the caller loaded), each
    step's forward passes computed at `precision`. A cancel saves a checkpoint and raises
    JobCancelled."""
    checkpoint = folder / CHECKPOINT_DIR
    model.set_adapter(adapter)
    params = [p for n, p in model.named_parameters() if f".{adapter}." in n]
    optimizer = torch.optim.AdamW(params, lr=lr)
    state = {"step": 0}
    if (checkpoint / "state.json").exists():
        state = json.loads((checkpoint / "state.json").read_text())
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    log = MetricsLog(folder, tracked_as="" if adapter == TRAINED else f"{adapter}/")
    log.rewind(state["step"])

    def save(step: int) -> None:
        def write(tmp: Path) -> None:
            model.save_pretrained(str(tmp), selected_adapters=[adapter])
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            (tmp / "state.json").write_text(json.dumps({"step": step}))

        replace_folder(checkpoint, write)

    for step in range(state["step"], total):
        with computing(precision, model.device):
            loss, metrics = loss_at(step)
        check_loss(loss, step + 1)
        optimizer.zero_grad()
        loss.backward()
        check_gradients(params, step + 1)
        optimizer.step()
        log.write(step + 1, total, loss=loss.item(), **metrics)
        if cancel.requested or (step + 1) % save_every == 0:
            save(step + 1)
        if cancel.requested:
            raise JobCancelled()


def peft_with(
    loaded, job: RAHFJob, trained: str, resume: Path | None, frozen: dict[str, Path] | None = None
):
    """The base wrapped by peft: the adapter being trained (fresh, or from its checkpoint)
    and frozen pattern adapters beside it."""
    from peft import PeftModel, get_peft_model

    torch.manual_seed(job.seed)
    model = (
        get_peft_model(loaded.model, lora_config(job), adapter_name=trained)
        if resume is None
        else PeftModel.from_pretrained(
            loaded.model, str(resume), adapter_name=trained, is_trainable=True
        )
    )
    for name, path in (frozen or {}).items():
        model.load_adapter(str(path), adapter_name=name, is_trainable=False)
    quicken(model)
    return model


def finished(folder: Path) -> bool:
    adapter = folder / ADAPTER_DIR
    return (adapter / ADAPTER_CONFIG).exists() and is_complete(adapter)


def resumed_adapter(folder: Path, adapter: str) -> Path | None:
    checkpoint = recover_folder(folder / CHECKPOINT_DIR)
    return checkpoint / adapter if checkpoint else None


# --- phase 1: the pattern -----------------------------------------------------------------------


def train_dual_adapters(
    job: RAHFJob, rows: list[Contrast], out: Path, cancel: CancelFlag
) -> dict[str, Path]:
    """The good and bad SFT adapters, with the SFT stage's own loop (resumable each)."""
    from trl import SFTConfig, SFTTrainer

    sft = build_job(
        SFTJob,
        {
            "model": job.model,
            "data": job.data,
            "learning_rate": job.learning_rate,
            "epochs": job.epochs,
            "batch_size": job.batch_size,
            "max_steps": job.pattern_steps or job.max_steps,
            "max_length": job.max_length,
            "save_every": job.save_every,
            "seed": job.seed,
            "lora_r": job.lora_r,
            "lora_alpha": job.lora_alpha,
            "lora_dropout": job.lora_dropout,
            "lora_targets": job.lora_targets,
            "precision": job.precision,
        },
    )
    folders = {}
    for n, (side, answers) in enumerate(
        (("good", [r.chosen for r in rows]), ("bad", [r.rejected for r in rows]))
    ):
        folder = out / side
        if not finished(folder):
            write_progress(
                out,
                0,
                0,
                f"phase 1 of 2: the {side} pattern adapter (SFT on the "
                f"{'preferred' if side == 'good' else 'dispreferred'} "
                f"answers, {n + 1} of 2)",
            )
            examples = [
                {
                    "prompt": [{"role": "user", "content": r.prompt}],
                    "completion": [{"role": "assistant", "content": a}],
                }
                for r, a in zip(rows, answers)
            ]
            train_trl_adapter(
                sft,
                folder,
                cancel,
                examples,
                SFTTrainer,
                partial(SFTConfig, completion_only_loss=True),
                f"RAHF {side} pattern adapter (SFT)",
                "examples",
            )
        folders[side] = folder / ADAPTER_DIR
    return folders


def scit_step(
    model, tokenizer, batch: list[Contrast], max_length: int, margin: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """SCIT's loss on one batch: each answer scored under both instructions."""
    answers = [r.chosen for r in batch] * 2 + [r.rejected for r in batch] * 2
    systems = (
        [r.good for r in batch]
        + [r.bad for r in batch]
        + [r.bad for r in batch]
        + [r.good for r in batch]
    )
    ids, mask, answer = encode_conversations(
        tokenizer, [r.prompt for r in batch] * 4, answers, max_length, systems
    )
    width = int(answer.sum(1).max())
    device = next(model.parameters()).device
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        logits_to_keep=width + 1,
    ).logits[:, :-1]
    lp = rahf_math.mean_token_logprob(
        logits, ids[:, -width:].to(device), answer[:, -width:].to(device)
    )
    good_pref, bad_pref, bad_disp, good_disp = lp.chunk(4)
    loss = rahf_math.scit_loss(good_pref, bad_pref, bad_disp, good_disp, margin)
    return loss, {
        "preferred_gap": (good_pref - bad_pref).mean().item(),
        "dispreferred_gap": (bad_disp - good_disp).mean().item(),
    }


def train_scit_adapter(
    job: RAHFJob, loaded, rows: list[Contrast], out: Path, cancel: CancelFlag
) -> Path:
    folder = out / "scit"
    if finished(folder):
        return folder / ADAPTER_DIR
    write_progress(out, 0, 0, "phase 1 of 2: the SCIT adapter (contrastive instructions)")
    model = peft_with(loaded, job, "scit", resumed_adapter(folder, "scit"))
    try:
        model.train()
        total = total_steps(job, len(rows), job.pattern_steps)
        optimise(
            model,
            "scit",
            folder,
            total,
            job.learning_rate,
            job.save_every,
            lambda step: scit_step(
                model,
                loaded.tokenizer,
                seeded_batch(rows, step, job.batch_size, "rahf-order", job.seed),
                job.max_length,
                job.scit_margin,
            ),
            cancel,
            job.precision,
        )
        return flattened_adapter(
            model,
            "scit",
            folder / ADAPTER_DIR,
            lambda tmp: write_model_card(
                tmp,
                "RAHF SCIT pattern adapter",
                job,
                {"base model": job.model, "pairs": len(rows), "steps": total},
            ),
        )
    finally:
        model.unload()  # the base model is shared in this process: take LoRA off it


# --- phase 2: the representation loss -----------------------------------------------------------


def representation_step(
    model, tokenizer, batch: list[Contrast], layers: list[int], job: RAHFJob
) -> tuple[torch.Tensor, dict[str, float]]:
    """Phase 2's loss on one batch: both answers of each pair, read plain by the base, by
    the pattern adapter(s) and by the adapter being trained."""
    prompts = [r.prompt for r in batch] * 2
    answers = [r.chosen for r in batch] + [r.rejected for r in batch]
    ids, mask, answer = encode_conversations(tokenizer, prompts, answers, job.max_length)
    width = int(answer.sum(1).max())  # every answer ends in the last column
    tail = answer[:, -width:].to(next(model.parameters()).device)
    with torch.no_grad():
        model.eval()
        with model.disable_adapter():
            base = states_at(model, ids, mask, layers)[:, :, -width:]
        if job.variant == "dual":
            model.set_adapter("good")
            good = states_at(model, ids, mask, layers)[:, :, -width:]
            model.set_adapter("bad")
            bad = states_at(model, ids, mask, layers)[:, :, -width:]
        else:
            model.set_adapter("scit")
            good, bad = (
                states_at(
                    model,
                    *encode_conversations(
                        tokenizer,
                        prompts,
                        answers,
                        job.max_length,
                        [getattr(r, side) for r in batch] * 2,
                    )[:2],
                    layers,
                )[:, :, -width:]
                for side in ("good", "bad")
            )
        pattern = rahf_math.activity_pattern(good, bad)
        target = rahf_math.representation_target(base, pattern, job.alpha)
    model.set_adapter(TRAINED)
    model.train()
    h = states_at(model, ids, mask, layers, keep_grad=True)[:, :, -width:]
    loss = rahf_math.representation_loss(h, target, tail)
    with torch.no_grad():
        weights = tail[None].expand(pattern.shape[:3]).float()
        pattern_norm = float((pattern.norm(dim=-1) * weights).sum() / weights.sum())
        moved = float(((h - base).norm(dim=-1) * weights).sum() / weights.sum())
    return loss, {
        "pattern_norm": pattern_norm,
        "moved": moved,
        "relative_distance": loss.item() / max(job.alpha * pattern_norm, 1e-9),
    }


def train_rahf(
    job: RAHFJob,
    out: str | Path,
    cancel: CancelFlag | None = None,
    constitution: Constitution | None = None,
) -> Path:
    """Both phases (each resumes where it stopped); returns the RAHF adapter folder."""
    out, cancel = Path(out), cancel or CancelFlag()
    rows = labelled_pairs(job.data, job.min_margin)
    loaded = load_model(job.model)
    n_layers = len(decoder_layers(loaded.model))
    layers = job.layer_list or default_layers(n_layers)
    check_target_layers(layers, n_layers)
    if job.variant == "scit":
        if constitution is None:
            raise DatasetError(
                "The scit variant needs the constitution its instructions come from."
            )
        rows = with_instructions(rows, constitution, job.seed)
        patterns = {"scit": train_scit_adapter(job, loaded, rows, out, cancel)}
    else:
        patterns = train_dual_adapters(job, rows, out, cancel)
    write_progress(out, 0, 0, "phase 2 of 2: moving the states (representation loss)")
    model = peft_with(loaded, job, TRAINED, resumed_adapter(out, TRAINED), patterns)
    try:
        total = total_steps(job, len(rows))
        optimise(
            model,
            TRAINED,
            out,
            total,
            job.learning_rate,
            job.save_every,
            lambda step: representation_step(
                model,
                loaded.tokenizer,
                seeded_batch(rows, step, job.batch_size, "rahf-order", job.seed),
                layers,
                job,
            ),
            cancel,
            job.precision,
        )
        rows_logged = MetricsLog(out).read()
        losses = [r["loss"] for r in rows_logged if "loss" in r]
        return flattened_adapter(
            model,
            TRAINED,
            out / ADAPTER_DIR,
            lambda tmp: write_model_card(
                tmp,
                f"RAHF policy adapter ({job.variant})",
                job,
                {
                    "base model": job.model,
                    "data": job.data,
                    "pairs": len(rows),
                    "target layers": ", ".join(map(str, layers)),
                    "alpha": job.alpha,
                    "steps": total,
                    "representation loss, first → last step": f"{losses[0]:.3f} → {losses[-1]:.3f}"
                    if losses
                    else "n/a",
                },
            ),
        )
    finally:
        model.unload()  # the base model is shared in this process: take LoRA off it
