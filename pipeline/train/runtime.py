"""What runs around every training loop: the metrics log, progress, cancellation, the LoRA
config and the model card. A training job writes into its run folder:

  metrics.jsonl   one row per logged step ({"step": …, "loss": …, …}), read by the studio's plots
  progress.json   step / total, for the progress bar
  checkpoint/     the latest resumable state (cancel saves one too)
  adapter/        the finished adapter, with README.md (the model card)

Every folder is saved through `files.replace_folder` (or, for trl's own checkpoints, marked
complete once written), so a kill at any instant leaves a complete checkpoint to resume
from; a non-finite loss or gradient stops the run before it reaches the weights.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable

from pipeline.core import tracking
from pipeline.core.errors import JobError
from pipeline.core.files import (
    append_jsonl,
    is_complete,
    mark_complete,
    read_jsonl_log,
    replace_folder,
    write_atomic,
)
from pipeline.core.job_folder import JobCancelled, is_main_process, write_progress
from pipeline.core.precision import bf16_on, described
from pipeline.train.dropout import quicken
from pipeline.train.lm_head import compact_on_cpu

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"
ADAPTER_DIR = "adapter"


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
HEAP_MMAP_BYTES = 128 * 1024


def steady_heap() -> bool:
    """Keep a training process's memory at what its tensors hold. glibc raises its mmap
    threshold each time a large block is freed, so the many short-lived activation tensors
    of a training step then come from the heap, which fragments and is never given back: a
    PPO step on the embedded model grew ~500 MB over its live tensors that way. A fixed
    threshold returns every large block to the system when freed, at the price of fresh
    pages for each (measured: PPO steps ~40% slower on CPU). Process-wide, so it is called
    from a job's own loop; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        return bool(name and ctypes.CDLL(name).mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_BYTES))
    except AttributeError:  # no mallopt: not glibc
        return False


class TrainingDiverged(JobError):
    """A loss or gradient became NaN or infinite: the run stops and saves nothing from it."""

    def __init__(self, what: str, step: int):
        self.step = step
        super().__init__(
            f"{what} became NaN/inf at step {step}; training stopped and nothing "
            "from that step was saved (the last good checkpoint is kept). Lower "
            "learning_rate or check the data, then resume."
        )


def check_loss(loss: Any, step: int, what: str = "loss") -> None:
    """Raise TrainingDiverged if `loss` (a tensor or number) is not finite."""
    value = loss.detach().float().abs().max().item() if hasattr(loss, "detach") else float(loss)
    if not math.isfinite(value):
        raise TrainingDiverged(what, step)


def gradients_finite(parameters: Iterable[Any]) -> bool:
    import torch

    return all(bool(torch.isfinite(p.grad).all()) for p in parameters if p.grad is not None)


def check_gradients(parameters: Iterable[Any], step: int) -> None:
    """Before an optimizer step: a non-finite gradient must never reach the weights."""
    if not gradients_finite(parameters):
        raise TrainingDiverged("a gradient", step)


class CancelFlag:
    """Set by SIGTERM (via `job_context(on_cancel=…)`); training loops poll it between steps."""

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True


class MetricsLog:
    """A run's metrics.jsonl, each row mirrored to the open experiment tracker; `tracked_as`
    prefixes the names there where one run writes two logs (RAHF's first phase)."""

    def __init__(self, out: str | Path, tracked_as: str = ""):
        self.path = Path(out) / METRICS_FILE
        self.tracked_as = tracked_as

    def write(self, step: int, total: int, **metrics: float) -> None:
        append_jsonl(self.path, [{"step": step, "time": time.time(), **metrics}])
        tracking.log(step, {self.tracked_as + k: v for k, v in metrics.items()})
        write_progress(self.path.parent, step, total, "training")

    def read(self) -> list[dict]:
        return read_jsonl_log(self.path)

    def rewind(self, step: int) -> None:
        rewind_steps(self.path, step)


def rewind_steps(path: Path, step: int) -> None:
    """Drop a step-keyed log's rows after `step`, where a resumed run starts again: steps
    logged after the last checkpoint by a run that then died are run, and logged, once more.
    A log that is not a regular file (a device standing in for it) has nothing to rewind."""
    if not path.is_file():
        return
    rows = read_jsonl_log(path)
    if is_main_process() and any(r.get("step", 0) > step for r in rows):
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows if r.get("step", 0) <= step))


def read_metrics(out: str | Path) -> list[dict]:
    return MetricsLog(out).read()


def lora_config(job: Any, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(
        r=job.lora_r,
        lora_alpha=job.lora_alpha,
        lora_dropout=job.lora_dropout,
        target_modules=[t.strip() for t in job.lora_targets.split(",") if t.strip()],
        task_type=task_type,
    )


def write_model_card(folder: Path, title: str, job: Any, facts: dict[str, Any]) -> None:
    """README.md beside an adapter: what it was trained on, with which settings, and how it
    ended — so an adapter found on disk explains itself."""
    if not is_main_process():
        return
    if hasattr(job, "precision"):
        import torch

        facts = {**facts, "arithmetic": described(job.precision, not torch.cuda.is_available())}
    lines = [f"# {title}", "", "Trained by Constitution Studio.", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts.items()]
    lines += ["", "## Settings", "", "```json", json.dumps(asdict(job), indent=2), "```", ""]
    write_atomic(folder / "README.md", "\n".join(lines))


def flattened_adapter(model, adapter: str, folder: Path, card: Callable[[Path], None]) -> Path:
    """Save one named adapter of a peft model as a plain adapter folder (loadable as a model
    anywhere), with its model card, crash-safely."""

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp), selected_adapters=[adapter])
        for item in list((tmp / adapter).iterdir()):  # peft nests a named adapter one level down
            item.rename(tmp / item.name)
        (tmp / adapter).rmdir()
        card(tmp)

    return replace_folder(folder, write)


def seeded_batch(rows: list, step: int, size: int, name: str, seed: int) -> list:
    """The rows of optimisation step `step`: a shuffle per epoch seeded by (name, seed,
    epoch), cycled — the same batches when a resumed run replays a step."""
    import random

    from pipeline.core.seeds import stable_int

    epoch, offset = divmod(step * size, len(rows))
    order = list(range(len(rows)))
    random.Random(stable_int(name, seed, epoch)).shuffle(order)
    return [rows[order[(offset + i) % len(rows)]] for i in range(size)]


def trl_basics(job: Any, out: Path, on_cpu: bool) -> dict[str, Any]:
    """The TrainingArguments every trl-based stage shares (SFT, DPO, GRPO, RLOO). trl turns
    bf16 on by default, which on a CPU without bf16 in hardware runs ~15× slower than fp32,
    so a CPU takes it by the job's `precision` (bf16 is autocast there: see
    pipeline/core/precision.py); gradient checkpointing only saves memory a CPU run of a
    small model does not need. Trackers are fed from metrics.jsonl (`report_to`), so trl
    itself reports to none."""
    return dict(
        output_dir=str(out / CHECKPOINT_DIR),
        learning_rate=job.learning_rate,
        bf16=bf16_on(job.precision, on_cpu),
        activation_checkpointing=not on_cpu,
        logging_steps=1,
        save_steps=job.save_every,
        save_total_limit=None,
        seed=job.seed,
        logging_nan_inf_filter=False,
        report_to="none",
        use_cpu=on_cpu,
        disable_tqdm=False,
    )


def trl_arguments(job: Any, out: Path, on_cpu: bool) -> dict[str, Any]:
    """`trl_basics` with the offline stages' epochs, steps, batch and length (SFT, DPO)."""
    return dict(
        trl_basics(job, out, on_cpu),
        num_train_epochs=job.epochs,
        max_steps=job.max_steps or -1,
        per_device_train_batch_size=job.batch_size,
        max_length=job.max_length,
    )


TRL_CHECKPOINT = "checkpoint-"  # trl's own checkpoint folders: checkpoint/checkpoint-STEP
TRL_STATE = "trainer_state.json"
TRL_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def trl_checkpoints(out: Path) -> list[Path]:
    """trl checkpoint folders of a run, oldest first."""
    folders = [
        p
        for p in (out / CHECKPOINT_DIR).glob(TRL_CHECKPOINT + "*")
        if p.name[len(TRL_CHECKPOINT) :].isdigit()
    ]
    return sorted(folders, key=lambda p: int(p.name[len(TRL_CHECKPOINT) :]))


def keep_newest_complete(out: Path) -> Path | None:
    """The newest trl checkpoint whose save finished; the main process deletes the others
    (older ones, and newer ones a kill left half-written)."""
    folders = trl_checkpoints(out)
    complete = [p for p in folders if is_complete(p)]
    newest = complete[-1] if complete else None
    for p in folders if is_main_process() else ():
        if p != newest:
            shutil.rmtree(p, ignore_errors=True)
    return newest


def trl_callback(out: Path, cancel: CancelFlag):
    from transformers import TrainerCallback

    log = MetricsLog(out)

    class StudioCallback(TrainerCallback):
        """Metrics to metrics.jsonl; on cancel, save a checkpoint and stop; a non-finite loss
        or gradient stops the run before that step is applied or saved; a checkpoint is
        marked complete once written, and only then are the older ones deleted."""

        diverged: TrainingDiverged | None = None

        def stop(self, control, failure: TrainingDiverged) -> None:
            self.diverged = self.diverged or failure
            control.should_save = False
            control.should_training_stop = True

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            if model is not None and not gradients_finite(model.parameters()):
                for p in model.parameters():
                    p.grad = None  # the optimizer skips parameters without a gradient
                self.stop(control, TrainingDiverged("a gradient", state.global_step + 1))

        def on_log(self, args, state, control, logs=None, **kwargs):
            numbers = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
            if state.is_world_process_zero:
                log.write(state.global_step, state.max_steps, **numbers)
            if not math.isfinite(numbers.get("loss", 0.0)):
                self.stop(control, TrainingDiverged("loss", state.global_step))

        def on_step_end(self, args, state, control, **kwargs):
            if self.diverged:
                self.stop(control, self.diverged)
            elif cancel_anywhere(cancel, args.device):
                control.should_save = True
                control.should_training_stop = True

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                mark_complete(out / CHECKPOINT_DIR / f"{TRL_CHECKPOINT}{state.global_step}")
                keep_newest_complete(out)

    return StudioCallback()


def cancel_anywhere(cancel: CancelFlag, device: Any) -> bool:
    """Whether any process of a data-parallel job was asked to cancel: every process must
    stop after the same step, or the others wait for it in their next gradient exchange."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return cancel.requested
    flag = torch.tensor([float(cancel.requested)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    cancel.requested = bool(flag.item())
    return cancel.requested


def finished_state(checkpoint: Path | None) -> dict | None:
    """trl's state of a checkpoint saved at the run's last step, else None."""
    if checkpoint is None:
        return None
    state = json.loads((checkpoint / TRL_STATE).read_text())
    return state if state["global_step"] >= state["max_steps"] > 0 else None


def train_trl_adapter(
    job: Any,
    out: Path,
    cancel: CancelFlag,
    examples: list[dict],
    trainer_class: Any,
    config: Callable[..., Any],
    title: str,
    counted: str,
    arguments: Callable[[bool], dict[str, Any]] | None = None,
    **trainer_extras: Any,
) -> Path:
    """The run every trl-based stage (SFT, DPO, GRPO, RLOO) shares: a LoRA with trl's
    `trainer_class` — a fresh one on the base, or the job's `policy_adapter` trained further
    — resuming from the newest complete checkpoint in `out`; saves the adapter and its model
    card. `config` makes the stage's trl config from `arguments(on_cpu)` (default:
    `trl_arguments`);
    `counted` names the examples on the card; `trainer_extras` go to the trainer as they are
    (a reward function). A cancel leaves a checkpoint and raises JobCancelled."""
    from datasets import Dataset

    from pipeline.model.loading import load_model

    resume = keep_newest_complete(out)
    MetricsLog(out).rewind(int(resume.name[len(TRL_CHECKPOINT) :]) if resume else 0)
    adapter = out / ADAPTER_DIR

    def save(write_weights: Callable[[Path], Any], steps: int, loss: float) -> Path:
        def write(folder: Path) -> None:
            write_weights(folder)
            write_model_card(
                folder,
                title,
                job,
                {
                    "base model": job.model,
                    "data": getattr(job, "data", "") or getattr(job, "prompts", ""),
                    counted: len(examples),
                    "steps": steps,
                    "final loss": f"{loss:.4f}",
                },
            )

        return replace_folder(adapter, write) if is_main_process() else adapter

    finished = finished_state(resume)
    if finished and resume:  # killed after its last checkpoint: trl would resume one step too many
        checkpoint = resume
        losses = [row["loss"] for row in finished["log_history"] if "loss" in row]
        return save(
            lambda folder: [
                shutil.copy2(checkpoint / name, folder / name) for name in TRL_ADAPTER_FILES
            ],
            finished["global_step"],
            losses[-1] if losses else math.nan,
        )
    base = load_model(job.model)
    compact_on_cpu()
    callback = trl_callback(out, cancel)
    on_cpu = base.device.type == "cpu"
    model, peft_config = base.model, lora_config(job)
    start = getattr(job, "policy_adapter", "")
    if start:
        from peft import PeftModel

        model = PeftModel.from_pretrained(base.model, start, is_trainable=True)
        peft_config = None
    trainer = trainer_class(
        model=model,
        args=config(**(arguments(on_cpu) if arguments else trl_arguments(job, out, on_cpu))),
        train_dataset=Dataset.from_list(examples),
        processing_class=base.tokenizer,
        peft_config=peft_config,
        callbacks=[callback],
        **trainer_extras,
    )
    quicken(trainer.model)
    try:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        if callback.diverged:
            raise callback.diverged
        if cancel.requested:
            raise JobCancelled()
        return save(
            lambda folder: trainer.model.save_pretrained(str(folder)),
            result.global_step,
            result.training_loss,
        )
    finally:
        trainer.model.unload()  # the base model is shared in this process: take LoRA off it
