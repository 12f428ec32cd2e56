"""GRPO and RLOO through trl's own trainers, beside our PPO (`ppo.py`), so a run can be
checked against the library everyone else uses: the same SFT policy (its LoRA trained
further), the same preference model as the reward (or the representation judge: a probe
fitted on human labels), the same prompts, and the same KL reference (the base with adapters
off). Neither has a value model: GRPO measures each answer against the mean and spread of the
other answers to its prompt, RLOO against the mean of the others (leave one out).

Checkpoints, resume, cancel, the NaN guard and metrics.jsonl come from the trl run every
trl-based stage shares (`runtime.train_trl_adapter`)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from pipeline.cai.reward_model import load_head, scores_by_length
from pipeline.config.commands import GRPOJob, OnlineRLSettings, RLOOJob
from pipeline.core.errors import JobError
from pipeline.data.prompts import load_prompts
from pipeline.model.loading import load_model
from pipeline.train.runtime import CancelFlag, check_loss, train_trl_adapter, trl_basics
from pipeline.values.representation_judge import load_probe, probe_scores

PM_MAX_LENGTH = 512  # the PM reads the end of prompt + answer, as in PPO


def text_of(turn: Any) -> str:
    """A prompt or completion as trl gives it to a reward function: text, or messages."""
    if isinstance(turn, str):
        return turn
    return " ".join(m["content"] for m in turn if m.get("role") != "system")


def as_reward(
    score: Callable[[list[str], list[str]], torch.Tensor], name: str, what: str
) -> Callable[..., list[float]]:
    """`score(prompts, answers)` as trl's reward function, named `name` in trl's logs."""

    def reward(prompts: list, completions: list, trainer_state: Any = None, **_: Any) -> list:
        scores = score([text_of(p) for p in prompts], [text_of(c) for c in completions])
        # trl reads a NaN reward as "no reward for this answer" and goes on: stop instead, as
        # PPO does, before the step is applied or saved
        step = trainer_state.global_step + 1 if trainer_state is not None else 0
        check_loss(scores, step, f"the reward ({what})")
        return scores.tolist()

    reward.__name__ = name
    return reward


def pm_reward(reward_adapter: str) -> Callable[..., list[float]]:
    """The preference model as trl's reward function: its score of each (prompt, answer)."""
    pm = load_model(reward_adapter)  # its LoRA merged into a copy of its base
    head = load_head(reward_adapter, pm)

    def score(prompts: list[str], answers: list[str]) -> torch.Tensor:
        return scores_by_length(pm.model, head, pm.tokenizer, prompts, answers, PM_MAX_LENGTH)

    return as_reward(score, "preference_model", "PM score")


def probe_reward(model: str, probe_folder: str) -> Callable[..., list[float]]:
    """The representation judge as trl's reward function: each answer's h·w/τ under a probe
    fitted on human labels, read from a frozen copy of the base (the probe was fitted on the
    base's states, never on the policy's as it trains)."""
    loaded = load_model(model)
    probe = load_probe(probe_folder, loaded)  # refused by name when fitted on another model
    return as_reward(partial(probe_scores, loaded, probe), "representation_judge", "probe score")


def reward_function(job: OnlineRLSettings) -> Callable[..., list[float]]:
    """The job's one reward: its probe when it names one, else its preference model."""
    if job.reward_probe.strip():
        return probe_reward(job.model, job.reward_probe)
    return pm_reward(job.reward_adapter)


def online_arguments(job: OnlineRLSettings, out: Path, on_cpu: bool) -> dict[str, Any]:
    """trl's GRPO/RLOO settings from the job: `rollouts` answers a step, `generations` of
    them per prompt."""
    return dict(
        trl_basics(job, out, on_cpu),
        max_steps=job.steps,
        per_device_train_batch_size=job.rollouts,
        num_generations=job.generations,
        max_completion_length=job.max_new_tokens,
        temperature=job.temperature,
        beta=job.kl_coef,
    )


def train_online(
    job: OnlineRLSettings, out: str | Path, cancel: CancelFlag | None, trainer: str
) -> Path:
    """Train `job`'s policy with trl's `trainer` ("grpo" or "rloo"); returns its adapter."""
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    prompts = [p.prompt for p in load_prompts(job.prompts, "train")]
    if not prompts:
        raise JobError(f"No training prompts in {job.prompts}.")
    torch.manual_seed(job.seed)
    trainer_class, config, title = {
        "grpo": (GRPOTrainer, GRPOConfig, "RL-CAI policy adapter (GRPO, trl)"),
        "rloo": (RLOOTrainer, RLOOConfig, "RL-CAI policy adapter (RLOO, trl)"),
    }[trainer]
    return train_trl_adapter(
        job,
        Path(out),
        cancel or CancelFlag(),
        [{"prompt": [{"role": "user", "content": p}]} for p in prompts],
        trainer_class,
        config,
        title,
        "prompts",
        arguments=partial(online_arguments, job, Path(out)),
        reward_funcs=reward_function(job),
    )


def train_grpo(job: GRPOJob, out: str | Path, cancel: CancelFlag | None = None) -> Path:
    return train_online(job, out, cancel, "grpo")


def train_rloo(job: RLOOJob, out: str | Path, cancel: CancelFlag | None = None) -> Path:
    return train_online(job, out, cancel, "rloo")
