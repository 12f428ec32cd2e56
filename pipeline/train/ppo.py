"""RL-CAI: PPO of the policy against the preference model, with one base model in memory.

The four roles of classic RLHF-PPO are four named LoRA adapters on one base model:

  policy     initialised from the SFT adapter, trained
  reference  the base with adapters disabled (no copy at all)
  reward     the preference model's adapter and scalar head, frozen
  value      a copy of the PM adapter and head, trained (the value function starts as the PM)

One PPO step, top to bottom:
  1. rollouts: sample answers with the policy;
  2. score: PM score of each whole answer; per-token log-probs of policy and reference;
     values per token;
  3. rewards: −β·KL per token, plus the PM score at the answer's last token;
  4. advantages: GAE over the answer tokens, whitened; returns = advantages + values;
  5. updates: `ppo_epochs` passes over minibatches — clipped policy loss on the policy
     adapter, clipped value loss on the value adapter and head;
  6. β: fixed, or adapted towards `kl_target`.
The maths of each term is in `ppo_math.py`, tested by hand.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from pipeline.cai.critique import is_refusal
from pipeline.cai.reward_model import HEAD_FILE, apply_head, load_head, reward_scores
from pipeline.config.commands import PPOJob
from pipeline.config.settings import SamplingConfig
from pipeline.core.errors import JobError
from pipeline.core.files import append_jsonl, recover_folder, replace_folder
from pipeline.core.heap import on_jemalloc
from pipeline.core.job_folder import JobCancelled
from pipeline.core.precision import computing
from pipeline.core.seeds import stable_int
from pipeline.data.prompts import load_prompts
from pipeline.model.generation import TransformersBackend
from pipeline.model.hidden import backbone
from pipeline.model.loading import LoadedModel, check_adapter_base, load_model
from pipeline.model.packing import batch, pack, packs
from pipeline.train.ppo_math import (
    AdaptiveKL,
    entropy,
    gae,
    per_token_kl,
    policy_loss,
    token_rewards,
    value_loss,
    whiten,
)
from pipeline.train.runtime import (
    ADAPTER_DIR,
    CHECKPOINT_DIR,
    CancelFlag,
    MetricsLog,
    check_gradients,
    check_loss,
    flattened_adapter,
    lora_config,
    rewind_steps,
    steady_heap,
    write_model_card,
)

if TYPE_CHECKING:
    from peft import PeftModel

SAMPLES_FILE = "samples.jsonl"
RewardFn = Callable[[list[str], list[str]], torch.Tensor]  # (prompts, answers) → scores


@dataclass
class Roles:
    """One base model with the policy, reward and value adapters, and the two heads."""

    loaded: LoadedModel
    model: PeftModel  # holding the adapters (peft is imported when the roles are built)
    reward_head: torch.nn.Linear
    value_head: torch.nn.Linear

    def parameters(self, adapter: str) -> list[torch.nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if f".{adapter}." in n]


def build_roles(job: PPOJob, start: Path | None = None) -> Roles:
    """Load the base once and put the adapters on it; `start` is a checkpoint to resume."""
    from peft import PeftModel, get_peft_model

    loaded = load_model(job.model)
    for adapter in filter(None, (job.policy_adapter, job.reward_adapter)):
        check_adapter_base(adapter, loaded)
    policy_from = (
        start / "policy" if start else Path(job.policy_adapter) if job.policy_adapter else None
    )
    if policy_from:
        model = PeftModel.from_pretrained(
            loaded.model, str(policy_from), adapter_name="policy", is_trainable=True
        )
    else:
        model = get_peft_model(loaded.model, lora_config(job), adapter_name="policy")
    value_from = start / "value" if start else Path(job.reward_adapter)
    model.load_adapter(job.reward_adapter, adapter_name="reward", is_trainable=False)
    model.load_adapter(str(value_from), adapter_name="value", is_trainable=True)
    reward_head = load_head(job.reward_adapter, loaded).requires_grad_(False)
    value_head = load_head(value_from, loaded)  # the value function starts as the PM
    # dropout stays off throughout: the ratio π/π_old must be 1 before the first update
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.eval()
    return Roles(loaded, model, reward_head, value_head)


def update_mode(roles: Roles, on: bool) -> None:
    """Updates recompute each layer in the backward pass (gradient checkpointing) instead of
    keeping every layer's activations: the activations, not the weights, are most of a PPO
    step's memory once the four roles share one base. transformers checkpoints only in
    training mode, and generation needs its KV cache, so the mode is switched around the
    updates (dropout is zeroed, so training mode changes no output); an update keeps no
    cache, so the model is told so (else transformers warns at every job)."""
    base = roles.loaded.model
    base.config.use_cache = not on
    if on:
        base.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
        roles.model.train()
    else:
        base.activation_checkpointing_disable()
        roles.model.eval()


@dataclass
class Rollout:
    """A batch of sampled answers, left-padded as [pad][prompt][answer] so every answer ends
    in the last column; tensors over the answer columns are [batch, answer_width]."""

    ids: torch.Tensor
    attention: torch.Tensor
    answer_mask: torch.Tensor
    prompts: list[str]
    answers: list[str]


def make_rollout(roles: Roles, prompts: list[str], job: PPOJob, seed: int) -> Rollout:
    roles.model.set_adapter("policy")
    backend = TransformersBackend(
        LoadedModel(roles.loaded.name, roles.loaded.source, roles.model, roles.loaded.tokenizer)
    )
    sampling = SamplingConfig(
        max_new_tokens=job.max_new_tokens, temperature=job.temperature, top_p=1.0, seed=seed
    )
    sampled = backend.sample_ids([[{"role": "user", "content": p}] for p in prompts], sampling)
    width = max(len(q) + len(a) for q, a in sampled)
    answer_width = max(len(a) for _, a in sampled)
    pad = roles.loaded.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(q) - len(a)) + q + a for q, a in sampled])
    attention = torch.tensor(
        [[0] * (width - len(q) - len(a)) + [1] * (len(q) + len(a)) for q, a in sampled]
    )
    answer_mask = torch.tensor(
        [[0.0] * (answer_width - len(a)) + [1.0] * len(a) for _, a in sampled]
    )
    texts = [roles.loaded.tokenizer.decode(a, skip_special_tokens=True).strip() for _, a in sampled]
    return Rollout(ids, attention, answer_mask, prompts, texts)


def answer_logits(
    roles: Roles, rollout: Rollout, rows: torch.Tensor | slice = slice(None), hidden: bool = False
):
    """Logits (or hidden states) at the positions that predict each answer token. The rows
    run packed where the model takes it (pipeline/model/packing.py): their common start —
    the system prompt and the chat template's opening, a third of a tiny run's rows — once,
    and no padding."""
    device = roles.loaded.device
    width = rollout.answer_mask.shape[1]
    ids, attention = rollout.ids[rows], rollout.attention[rows]
    if packs(roles.model):
        together = pack([r[a.bool()].tolist() for r, a in zip(ids, attention)])
        inputs = batch(together, roles.loaded.tokenizer.pad_token_id)
        out = backbone(roles.model)(**{k: v.to(device) for k, v in inputs.inputs.items()})
        where = tuple(x[:, :-1].to(device) for x in inputs.last(width + 1))
        states = out.last_hidden_state[where]
        return states if hidden else roles.model.get_output_embeddings()(states).float()
    ids, attention = ids.to(device), attention.to(device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    if hidden:
        states = backbone(roles.model)(
            input_ids=ids, attention_mask=attention, position_ids=positions
        ).last_hidden_state
        return states[:, -width - 1 : -1]
    logits = roles.model(
        input_ids=ids, attention_mask=attention, position_ids=positions, logits_to_keep=width + 1
    ).logits
    return logits[:, :-1].float()


def token_logprobs(logits: torch.Tensor, rollout: Rollout, rows=slice(None)) -> torch.Tensor:
    width = rollout.answer_mask.shape[1]
    targets = rollout.ids[rows][:, -width:].to(logits.device)
    return torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1).cpu()


def values_of(roles: Roles, rollout: Rollout, rows=slice(None)) -> torch.Tensor:
    roles.model.set_adapter("value")
    return apply_head(roles.value_head, answer_logits(roles, rollout, rows, hidden=True)).cpu()


def pm_reward(roles: Roles) -> RewardFn:
    def score(prompts: list[str], answers: list[str]) -> torch.Tensor:
        roles.model.set_adapter("reward")
        return reward_scores(
            roles.model, roles.reward_head, roles.loaded.tokenizer, prompts, answers
        ).cpu()

    return score


def save_checkpoint(roles: Roles, optimizer, folder: Path, state: dict) -> None:
    """Policy and value adapters, the value head, the optimizer and `state`, replaced
    crash-safely as one folder."""

    def write(tmp: Path) -> None:
        roles.model.save_pretrained(str(tmp), selected_adapters=["policy", "value"])
        torch.save(roles.value_head.state_dict(), tmp / "value" / HEAD_FILE)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(state))

    replace_folder(folder, write)


def save_policy(roles: Roles, folder: Path, job: PPOJob, rewards_seen: list[float]) -> Path:
    """The trained policy adapter with its model card, replaced crash-safely."""
    return flattened_adapter(
        roles.model,
        "policy",
        folder,
        lambda tmp: write_model_card(
            tmp,
            "RL-CAI policy adapter (PPO)",
            job,
            {
                "base model": job.model,
                "reward model": job.reward_adapter,
                "steps": job.steps,
                "mean reward, first → last step": f"{rewards_seen[0]:.3f} → {rewards_seen[-1]:.3f}",
            },
        ),
    )


def train_ppo(
    job: PPOJob,
    out: str | Path,
    cancel: CancelFlag | None = None,
    reward_fn: RewardFn | None = None,
) -> Path:
    """Run PPO; resumes from `out/checkpoint`. `reward_fn` replaces the PM (tests use a
    simple learnable reward). Returns the policy adapter folder."""
    out, cancel = Path(out), cancel or CancelFlag()
    if job.steady_heap:
        print(f"heap: {'jemalloc' if on_jemalloc() else 'glibc, fixed mmap threshold'}")
        if not on_jemalloc():
            steady_heap()
    prompts = [p.prompt for p in load_prompts(job.prompts, "train")]
    if not prompts:
        raise JobError(f"No training prompts in {job.prompts}.")
    checkpoint = out / CHECKPOINT_DIR
    resumed = recover_folder(checkpoint)
    state: dict = (
        json.loads((checkpoint / "state.json").read_text())
        if resumed
        else {"step": 0, "beta": job.kl_coef}
    )
    torch.manual_seed(job.seed)
    roles = build_roles(job, resumed)
    reward_fn = reward_fn or pm_reward(roles)
    trained = (
        roles.parameters("policy") + roles.parameters("value") + list(roles.value_head.parameters())
    )
    optimizer = torch.optim.AdamW(trained, lr=job.learning_rate)
    if resumed:
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    kl_control = AdaptiveKL(state["beta"], job.kl_target) if job.kl_target else None
    beta = state["beta"]
    log = MetricsLog(out)
    log.rewind(state["step"])
    rewind_steps(out / SAMPLES_FILE, state["step"])
    try:
        for step in range(state["step"], job.steps):
            # 1. rollouts
            rng = random.Random(stable_int("ppo-prompts", job.seed, step))
            batch_prompts = [rng.choice(prompts) for _ in range(job.rollouts)]
            rollout = make_rollout(
                roles, batch_prompts, job, seed=job.seed * 100003 + step * job.rollouts
            )
            mask = rollout.answer_mask
            # 2. score: PM score, policy and reference log-probs, values
            with torch.no_grad(), computing(job.precision, roles.loaded.device):
                score = reward_fn(rollout.prompts, rollout.answers).float()
                check_loss(score, step + 1, "the reward (PM score)")
                roles.model.set_adapter("policy")
                old_logprobs = token_logprobs(answer_logits(roles, rollout), rollout)
                with roles.model.disable_adapter():
                    ref_logprobs = token_logprobs(answer_logits(roles, rollout), rollout)
                old_values = values_of(roles, rollout) * mask
            # 3. rewards: −β·KL per token, the PM score at the last token
            kl = per_token_kl(old_logprobs, ref_logprobs) * mask
            rewards = token_rewards(score, kl, beta, mask)
            # 4. advantages by GAE, whitened
            advantages, returns = gae(rewards, old_values, mask, job.gamma, job.lam)
            if job.whiten_advantages:
                advantages = whiten(advantages, mask)
            # 5. updates over minibatches
            update_mode(roles, True)
            stats: dict[str, list[float]] = {
                "policy_loss": [],
                "value_loss": [],
                "clip_fraction": [],
                "approx_kl": [],
                "entropy": [],
            }
            for _ in range(job.ppo_epochs):
                order = torch.randperm(job.rollouts)
                for start in range(0, job.rollouts, job.minibatch_size):
                    rows = order[start : start + job.minibatch_size]
                    m = mask[rows]
                    roles.model.set_adapter("policy")
                    with computing(job.precision, roles.loaded.device):
                        logits = answer_logits(roles, rollout, rows)
                    new_logprobs = token_logprobs(logits, rollout, rows)
                    pg = policy_loss(
                        new_logprobs, old_logprobs[rows], advantages[rows], m, job.clip
                    )
                    check_loss(pg.loss, step + 1, "the policy loss")
                    optimizer.zero_grad()
                    pg.loss.backward()
                    with computing(job.precision, roles.loaded.device):
                        values = values_of(roles, rollout, rows)
                    vf = value_loss(
                        values,
                        old_values[rows],
                        returns[rows],
                        m,
                        job.value_clip,
                    )
                    check_loss(vf, step + 1, "the value loss")
                    (job.value_coef * vf).backward()
                    check_gradients(trained, step + 1)
                    optimizer.step()
                    stats["policy_loss"].append(pg.loss.item())
                    stats["value_loss"].append(vf.item())
                    stats["clip_fraction"].append(pg.clip_fraction)
                    stats["approx_kl"].append(pg.approx_kl)
                    with torch.no_grad():
                        stats["entropy"].append(entropy(logits.cpu(), m).item())
            update_mode(roles, False)
            # 6. β
            mean_kl = (kl.sum(1)).mean().item()
            if kl_control:
                beta = kl_control.update(mean_kl, job.rollouts)
            lengths = mask.sum(1)
            log.write(
                step + 1,
                job.steps,
                reward_mean=score.mean().item(),
                reward_std=score.std().item() if len(score) > 1 else 0.0,
                kl=mean_kl,
                beta=beta,
                answer_length=lengths.mean().item(),
                refusal_rate=sum(map(is_refusal, rollout.answers)) / len(rollout.answers),
                **{k: sum(v) / len(v) for k, v in stats.items()},
            )
            # the step's highest- and lowest-rewarded answers, and its first (a typical one)
            ranked = sorted(range(len(score)), key=lambda i: float(score[i]))
            kept = list(dict.fromkeys([ranked[-1], ranked[0], 0]))
            append_jsonl(
                out / SAMPLES_FILE,
                [
                    {
                        "step": step + 1,
                        "prompt": rollout.prompts[i],
                        "answer": rollout.answers[i],
                        "reward": float(score[i]),
                    }
                    for i in kept
                ],
            )
            if cancel.requested or (step + 1) % job.save_every == 0:
                save_checkpoint(roles, optimizer, checkpoint, {"step": step + 1, "beta": beta})
            if cancel.requested:
                raise JobCancelled()
        rewards_seen = [r["reward_mean"] for r in log.read() if "reward_mean" in r]
        folder = save_policy(roles, out / ADAPTER_DIR, job, rewards_seen)
    finally:
        update_mode(roles, False)
        roles.model.unload()  # the base model is shared in this process: take LoRA off it
    return folder
