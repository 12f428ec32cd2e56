"""PPO memory and speed on the embedded model, both layouts in the same run.

Peak memory of one PPO step (8 rollouts of up to 32 tokens, two minibatches, policy and
value updates), each layout in a fresh process, measured as the rise of peak resident
memory (VmHWM) over the process's footprint after imports — the model weights, the
adapters, the optimizer and the activations all count; the peak is reset once the base
is loaded, so loading's transient copy is not counted in either layout:

  ours     `train_ppo` itself: one base model with LoRA adapters policy / reward / value,
           the reference = adapters disabled;
  classic  four separate models: policy (a copy of the base + LoRA), reference (the base),
           reward (a copy with the PM adapter merged + head), value (a copy with the PM
           adapter + head, trained) — the layout of classic RLHF-PPO, with the same LoRA,
           so the difference is the sharing alone (full fine-tuning would cost more).

Both use the same step maths and the same activation saving (dropout zeroed, gradient
checkpointing during the updates). `classic-full` is the same four models with every weight
of policy and value trained (gradients and AdamW state for them), as classic RLHF-PPO does.
`ratio=` is taken against the LoRA-copies layout, the stricter of the two.

Both layouts run with each heap: jemalloc preloaded (what `PPOJob.steady_heap`, the default,
runs on where libjemalloc2 is installed: freed blocks go back at about the default heap's
speed), glibc with a fixed mmap threshold (the steady heap without jemalloc: freed blocks go
back at once, slower), and glibc's default heap, which keeps fragments of freed activations
and adds several hundred MB to either.

Then PPO episodes (sampled answers trained on) per minute of `train_ppo` on the embedded
model with the tiny preset, with either heap.

On a GPU machine the same comparison is taken from the CUDA allocator's peak of tensor
memory (the heap plays no part there); `--model` measures any other model. Ends with
`ratio=<ours / classic peak memory>` on the heap PPO runs on (smaller is better; the target
is ≤ 0.4), after the speed of that heap against glibc's default.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch  # noqa: E402

from pipeline.config.commands import PPOJob, RewardJob, build_job, preset  # noqa: E402
from pipeline.config.settings import DEFAULT_MODEL
from pipeline.core.heap import jemalloc  # noqa: E402
from pipeline.model.loading import LoadedModel, load_model  # noqa: E402
from pipeline.train.runtime import lora_config, steady_heap  # noqa: E402

HEAPS = ("steady", "default", "jemalloc")
JEMALLOC = jemalloc()  # what a PPO command restarts on, where it is installed


def status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {key} in /proc/self/status")


def reset_peak() -> float:
    """Reset the peak resident size to the current one (Linux), so an earlier transient
    (imports) does not hide what follows; returns the current resident size in MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_mb("VmRSS")


def on_gpu() -> bool:
    return torch.cuda.is_available()


def start_measuring() -> float:
    """Forget earlier peaks; returns the memory held now, in MB. On a GPU the CUDA
    allocator's own count of tensor memory; on a CPU the process's resident size."""
    if on_gpu():
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    return reset_peak()


def peak_mb() -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if on_gpu() else status_mb("VmHWM")


def make_pm(folder: Path, model_name: str) -> Path:
    """A preference-model folder (LoRA + zero head) for the model; untrained is enough to
    measure memory and speed."""
    from peft import get_peft_model

    from pipeline.cai.reward_model import new_head, save_pm

    loaded = load_model(model_name)
    model = get_peft_model(copy.deepcopy(loaded.model), lora_config(RewardJob()))
    save_pm(model, new_head(loaded), folder, model_name)
    return folder


def ppo_job(pm: Path, steps: int, steady: bool, model_name: str) -> PPOJob:
    return build_job(
        PPOJob,
        {
            **preset("ppo", "tiny"),
            "model": model_name,
            "reward_adapter": str(pm),
            "steps": steps,
            "ppo_epochs": 1,
            "save_every": 1000,
            "steady_heap": steady,
        },
    )


def ours(job: PPOJob, out: Path) -> None:
    from pipeline.train.ppo import train_ppo

    train_ppo(job, out)


def classic(job: PPOJob, pm: Path, full: bool = False) -> None:
    """One PPO step with four separate models (the same maths as `train_ppo`); `full` trains
    every weight of policy and value, as classic RLHF-PPO does, instead of a LoRA."""
    from peft import PeftModel, get_peft_model

    from pipeline.cai.reward_model import apply_head, load_head, reward_scores
    from pipeline.config.settings import SamplingConfig
    from pipeline.core.precision import computing
    from pipeline.data.prompts import load_prompts
    from pipeline.model.generation import TransformersBackend
    from pipeline.model.hidden import backbone
    from pipeline.train.ppo_math import (
        gae,
        per_token_kl,
        policy_loss,
        token_rewards,
        value_loss,
        whiten,
    )

    loaded = load_model(job.model)
    reference = loaded.model.eval()
    policy = get_peft_model(copy.deepcopy(reference), lora_config(job)).eval()
    if full:
        policy = policy.merge_and_unload().requires_grad_(True)
    reward = PeftModel.from_pretrained(copy.deepcopy(reference), str(pm)).merge_and_unload().eval()
    value = PeftModel.from_pretrained(copy.deepcopy(reference), str(pm), is_trainable=True).eval()
    if full:
        value = value.merge_and_unload().requires_grad_(True)
    for model in (policy, value):  # the same memory saving as ours: dropout off, checkpointing
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        (model if full else model.get_base_model()).gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    reward_head, value_head = load_head(pm, loaded), load_head(pm, loaded)
    tok = loaded.tokenizer
    prompts = [p.prompt for p in load_prompts(job.prompts, "train")][: job.rollouts]
    trained = (
        [p for p in policy.parameters() if p.requires_grad]
        + [p for p in value.parameters() if p.requires_grad]
        + list(value_head.parameters())
    )
    optimizer = torch.optim.AdamW(trained, lr=job.learning_rate)
    backend = TransformersBackend(LoadedModel(loaded.name, loaded.source, policy, tok))
    for step in range(job.steps):
        sampled = backend.sample_ids(
            [[{"role": "user", "content": p}] for p in prompts],
            SamplingConfig(
                max_new_tokens=job.max_new_tokens, temperature=1.0, top_p=1.0, seed=step
            ),
        )
        width, aw = max(len(q) + len(a) for q, a in sampled), max(len(a) for _, a in sampled)
        ids = torch.tensor(
            [[tok.pad_token_id] * (width - len(q) - len(a)) + q + a for q, a in sampled]
        )
        att = (
            torch.arange(width)[None]
            >= torch.tensor([width - len(q) - len(a) for q, a in sampled])[:, None]
        ).long()
        mask = torch.tensor([[0.0] * (aw - len(a)) + [1.0] * len(a) for _, a in sampled])
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        ids, att, pos = ids.to(loaded.device), att.to(loaded.device), pos.to(loaded.device)
        texts = [tok.decode(a, skip_special_tokens=True) for _, a in sampled]

        def logprobs(model, rows=slice(None)):
            with computing(job.precision, loaded.device):  # as ours computes
                logits = (
                    model(
                        input_ids=ids[rows],
                        attention_mask=att[rows],
                        position_ids=pos[rows],
                        logits_to_keep=aw + 1,
                    )
                    .logits[:, :-1]
                    .float()
                )
            return (
                torch.log_softmax(logits, -1).gather(-1, ids[rows][:, -aw:, None]).squeeze(-1).cpu()
            )

        def values(rows=slice(None)):
            with computing(job.precision, loaded.device):
                h = backbone(value)(
                    input_ids=ids[rows], attention_mask=att[rows], position_ids=pos[rows]
                ).last_hidden_state[:, -aw - 1 : -1]
            return apply_head(value_head, h).cpu()

        with torch.no_grad(), computing(job.precision, loaded.device):
            score = reward_scores(reward, reward_head, tok, prompts, texts).float().cpu()
            old, ref = logprobs(policy), logprobs(reference)
            old_values = values() * mask
        kl = per_token_kl(old, ref) * mask
        advantages, returns = gae(
            token_rewards(score, kl, job.kl_coef, mask), old_values, mask, job.gamma, job.lam
        )
        advantages = whiten(advantages, mask)
        policy.train(), value.train()
        for start in range(0, job.rollouts, job.minibatch_size):
            rows = slice(start, start + job.minibatch_size)
            optimizer.zero_grad()
            policy_loss(
                logprobs(policy, rows), old[rows], advantages[rows], mask[rows], job.clip
            ).loss.backward()
            (
                job.value_coef
                * value_loss(
                    values(rows), old_values[rows], returns[rows], mask[rows], job.value_clip
                )
            ).backward()
            optimizer.step()
        policy.eval(), value.eval()


def worker(layout: str, pm: Path, out: Path, steps: int, heap: str, model_name: str) -> None:
    if heap == "steady":  # what `train_ppo` does with `steady_heap` on, here for both layouts
        steady_heap()
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    before = 0.0 if on_gpu() else status_mb("VmRSS")  # after imports: the rest is the layout's
    load_model(model_name)  # the base, resident in both layouts; its loading transient
    start_measuring()  # (file buffers, a second copy while converting) is not a step's
    started = time.perf_counter()
    job = ppo_job(pm, steps, heap == "steady", model_name)
    ours(job, out) if layout == "ours" else classic(job, pm, full=layout == "classic-full")
    print(json.dumps({"rise_mb": peak_mb() - before, "seconds": time.perf_counter() - started}))


def run_worker(
    layout: str, pm: Path, out: Path, model_name: str, steps: int = 1, heap: str = "steady"
) -> dict:
    env = {**os.environ, "LD_PRELOAD": JEMALLOC} if heap == "jemalloc" else None
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            layout,
            "--pm",
            str(pm),
            "--out",
            str(out),
            "--steps",
            str(steps),
            "--heap",
            heap,
            "--model",
            model_name,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def episodes_per_minute(run: dict, steps: int) -> float:
    return steps * preset("ppo", "tiny")["rollouts"] / (run["seconds"] / 60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=("ours", "classic", "classic-full"))
    parser.add_argument("--pm", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--heap", choices=HEAPS, default="steady")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="model to measure (default: the embedded one; any folder or hub id)",
    )
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.pm, args.out, args.steps, args.heap, args.model)
    steps = 3
    # the heap only matters for memory on the C heap, i.e. on a CPU
    heaps = ("steady",) if on_gpu() else tuple(h for h in HEAPS if h != "jemalloc" or JEMALLOC)
    with tempfile.TemporaryDirectory() as tmp:
        pm = make_pm(Path(tmp) / "pm", args.model)
        runs = {
            (layout, heap): run_worker(
                layout, pm, Path(tmp) / f"{layout}-{heap}", args.model, heap=heap
            )
            for heap in heaps
            for layout in ("ours", "classic")
        }
        full = run_worker("classic-full", pm, Path(tmp) / "classic-full", args.model)
        speed = {
            heap: run_worker("ours", pm, Path(tmp) / f"speed-{heap}", args.model, steps, heap)
            for heap in heaps
        }
    where = (
        f"GPU ({torch.cuda.get_device_name()}, CUDA allocator peak)"
        if on_gpu()
        else "CPU (peak resident memory)"
    )
    from pipeline.core.precision import described

    print(f"model {args.model}, {where}, {described('auto', not on_gpu())}")
    for heap in heaps:
        label = {
            "steady": "glibc's fixed threshold (the steady heap without jemalloc)",
            "default": "glibc's default heap",
            "jemalloc": "jemalloc preloaded (the steady heap where it is installed)",
        }[heap]
        mine, theirs = runs["ours", heap]["rise_mb"], runs["classic", heap]["rise_mb"]
        print(
            f"one PPO step, peak memory, {label}: ours {mine:.0f} MB (one base + adapters); "
            f"classic {theirs:.0f} MB (four models, LoRA-trained copies); ours / classic = "
            f"{mine / theirs:.3f}"
        )
    used = "jemalloc" if "jemalloc" in heaps else "steady"  # what `train_ppo` runs on
    mine = runs["ours", used]["rise_mb"]
    print(
        f"classic-full {full['rise_mb']:.0f} MB (four models, policy and value fully trained; "
        f"ours / it = {mine / full['rise_mb']:.3f})"
    )
    print(
        f"PPO ({steps} steps × {preset('ppo', 'tiny')['rollouts']} rollouts of ≤ "
        f"{preset('ppo', 'tiny')['max_new_tokens']} tokens, adapter set-up included, the base "
        "already loaded): "
        + ", ".join(
            f"{episodes_per_minute(speed[h], steps):.1f} episodes/min with the {h} heap"
            for h in heaps
        )
    )
    if "default" in heaps:
        kept = speed[used]["seconds"] and speed["default"]["seconds"] / speed[used]["seconds"]
        print(f"speed of the {used} heap against glibc's default: {kept:.2f}x")
    print(f"ratio={mine / runs['classic', used]['rise_mb']:.3f}")


if __name__ == "__main__":
    main()
