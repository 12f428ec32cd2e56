"""What runs around every training loop: the metrics log, progress, cancellation, the LoRA
config and the model card. A training job writes into its run folder:

  metrics.jsonl   one row per logged step ({"step": …, "loss": …, …}), read by the studio's plots
  progress.json   step / total, for the progress bar
  checkpoint/     the latest resumable state (cancel saves one too)
  adapter/        the finished adapter, with README.md (the model card)
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from pipeline.data import append_jsonl, read_jsonl_log
from pipeline.files import write_atomic
from pipeline.jobs import JobCancelled, is_main_process, write_progress

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


class CancelFlag:
    """Set by SIGTERM (via `job_context(on_cancel=…)`); training loops poll it between steps."""

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True


class MetricsLog:
    def __init__(self, out: str | Path):
        self.path = Path(out) / METRICS_FILE

    def write(self, step: int, total: int, **metrics: float) -> None:
        append_jsonl(self.path, [{"step": step, "time": time.time(), **metrics}])
        write_progress(self.path.parent, step, total, "training")

    def read(self) -> list[dict]:
        return read_jsonl_log(self.path)

    def rewind(self, step: int) -> None:
        """Drop rows after `step`, where a resumed run starts again: steps logged after the
        last checkpoint by a run that then failed are run, and logged, once more."""
        rows = self.read()
        if is_main_process() and any(r.get("step", 0) > step for r in rows):
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in rows
                                            if r.get("step", 0) <= step))


def read_metrics(out: str | Path) -> list[dict]:
    return MetricsLog(out).read()


def lora_config(job: Any, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(r=job.lora_r, lora_alpha=job.lora_alpha, lora_dropout=job.lora_dropout,
                      target_modules=[t.strip() for t in job.lora_targets.split(",") if t.strip()],
                      task_type=task_type)


def write_model_card(folder: Path, title: str, job: Any, facts: dict[str, Any]) -> None:
    if not is_main_process():
        return
    """README.md beside an adapter: what it was trained on, with which settings, and how it
    ended — so an adapter found on disk explains itself."""
    lines = [f"# {title}", "", "Trained by Constitution Studio.", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts.items()]
    lines += ["", "## Settings", "", "```json", json.dumps(asdict(job), indent=2), "```", ""]
    write_atomic(folder / "README.md", "\n".join(lines))


def trl_arguments(job: Any, out: Path, on_cpu: bool) -> dict[str, Any]:
    """The TrainingArguments every trl-based stage (SFT, DPO) shares, from the job's fields.
    trl turns bf16 on by default, which on a CPU runs ~15× slower than fp32; and gradient
    checkpointing only saves memory a CPU run of a small model does not need."""
    return dict(output_dir=str(out / CHECKPOINT_DIR), learning_rate=job.learning_rate,
                bf16=not on_cpu, gradient_checkpointing=not on_cpu,
                num_train_epochs=job.epochs, max_steps=job.max_steps or -1,
                per_device_train_batch_size=job.batch_size, max_length=job.max_length,
                logging_steps=1, save_steps=job.save_every, save_total_limit=1, seed=job.seed,
                report_to="none", use_cpu=on_cpu, disable_tqdm=False)


def trl_callback(out: Path, cancel: CancelFlag):
    from transformers import TrainerCallback

    log = MetricsLog(out)

    class StudioCallback(TrainerCallback):
        """Metrics to metrics.jsonl; on cancel, save a checkpoint and stop."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero:
                numbers = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
                log.write(state.global_step, state.max_steps, **numbers)

        def on_step_end(self, args, state, control, **kwargs):
            if cancel_anywhere(cancel, args.device):
                control.should_save = True
                control.should_training_stop = True

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


def train_trl_adapter(job: Any, out: Path, cancel: CancelFlag, examples: list[dict],
                      trainer_class: Any, config: Callable[..., Any], title: str,
                      counted: str) -> Path:
    """The run every trl-based stage (SFT, DPO) shares: a LoRA on the base with trl's
    `trainer_class`, resuming from the last checkpoint in `out`; saves the adapter and its
    model card. `config` makes the stage's trl config from the shared arguments; `counted`
    names the examples on the card. A cancel leaves a checkpoint and raises JobCancelled."""
    from datasets import Dataset

    from pipeline.models import load_model

    base = load_model(job.model)
    trainer = trainer_class(model=base.model,
                            args=config(**trl_arguments(job, out, base.device.type == "cpu")),
                            train_dataset=Dataset.from_list(examples),
                            processing_class=base.tokenizer, peft_config=lora_config(job),
                            callbacks=[trl_callback(out, cancel)])
    checkpoints = out / CHECKPOINT_DIR
    saved = [int(p.name.rsplit("-", 1)[1]) for p in checkpoints.glob("checkpoint-*")
             if p.name.rsplit("-", 1)[1].isdigit()]
    MetricsLog(out).rewind(max(saved, default=0))
    try:
        result = trainer.train(resume_from_checkpoint=True if saved else None)
        if cancel.requested:
            raise JobCancelled()
        adapter = out / ADAPTER_DIR
        if trainer.is_world_process_zero():
            trainer.model.save_pretrained(str(adapter))
    finally:
        trainer.model.unload()  # the base model is shared in this process: take LoRA off it
    write_model_card(adapter, title, job, {
        "base model": job.model, "data": job.data, counted: len(examples),
        "steps": result.global_step, "final loss": f"{result.training_loss:.4f}"})
    return adapter
