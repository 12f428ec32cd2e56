"""RL health: what a PPO run's own metrics say about how it is going wrong — the failures
RLHF is known for, read from metrics.jsonl and samples.jsonl (pure, tested by hand).

- reward rising while the KL from the reference passes `KL_LIMIT`: the policy may be
  exploiting the preference model rather than improving;
- answer length drifting past `LENGTH_DRIFT` × its start: PMs reward length;
- refusals among the rollouts rising by `REFUSAL_RISE`: evasiveness, the failure the CAI
  paper fought (helpful answers turning into refusals);
- the reward outliers: per step the highest- and lowest-rewarded sample, to read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KL_LIMIT = 6.0  # nats per answer (the paper preset's adaptive target)
LENGTH_DRIFT = 1.5
REFUSAL_RISE = 0.2
WINDOW = 3  # steps averaged at the start and at the end


@dataclass(frozen=True)
class HealthWarning:
    kind: str  # reward-hacking, length-drift, evasiveness
    text: str


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return sum(values) / len(values) if values else None


def rl_health(rows: list[dict], kl_limit: float = KL_LIMIT) -> list[HealthWarning]:
    """Warnings from a PPO run's metrics rows (steps in order)."""
    steps = [r for r in rows if "reward_mean" in r]
    if len(steps) < 2:
        return []
    window = max(1, min(WINDOW, len(steps) // 2))
    start, end = steps[:window], steps[-window:]
    warnings = []
    reward_start, reward_end = _mean(start, "reward_mean"), _mean(end, "reward_mean")
    kl_end = _mean(end, "kl")
    if reward_start is not None and reward_end is not None and kl_end is not None \
            and reward_end > reward_start and kl_end > kl_limit:
        warnings.append(HealthWarning(
            "reward-hacking", f"The reward rose ({reward_start:.3f} → {reward_end:.3f}) while the "
                              f"KL from the reference reached {kl_end:.1f} nats (> {kl_limit:g}): "
                              "the policy may be exploiting the preference model rather than "
                              "improving. Read the highest-rewarded samples; raise kl_coef or set "
                              "kl_target."))
    length_start, length_end = _mean(start, "answer_length"), _mean(end, "answer_length")
    if length_start and length_end and length_end > LENGTH_DRIFT * length_start:
        warnings.append(HealthWarning(
            "length-drift", f"Answers grew from {length_start:.0f} to {length_end:.0f} tokens "
                            f"(> {LENGTH_DRIFT}× the start): preference models reward length; "
                            "check that the reward is not length."))
    refusal_start, refusal_end = _mean(start, "refusal_rate"), _mean(end, "refusal_rate")
    if refusal_start is not None and refusal_end is not None \
            and refusal_end - refusal_start >= REFUSAL_RISE:
        warnings.append(HealthWarning(
            "evasiveness", f"Refusals among the rollouts rose from {refusal_start:.0%} to "
                           f"{refusal_end:.0%}: the policy may be learning to evade (the failure "
                           "the CAI paper fought); compare its refusals on helpful prompts in a "
                           "tournament."))
    return warnings


def reward_outliers(samples: list[dict]) -> list[dict]:
    """Per step, the highest- and the lowest-rewarded sample (as PPO logged them)."""
    by_step: dict[int, list[dict]] = {}
    for s in samples:
        if isinstance(s.get("reward"), (int, float)) and isinstance(s.get("step"), int):
            by_step.setdefault(s["step"], []).append(s)
    out = []
    for step in sorted(by_step):
        ranked = sorted(by_step[step], key=lambda s: s["reward"])
        out.append({**ranked[-1], "extreme": "highest"})
        if len(ranked) > 1:
            out.append({**ranked[0], "extreme": "lowest"})
    return out


def pm_training_labels(ppo_out: str | Path) -> tuple[str, list]:
    """(the PM folder a PPO run was trained against, the AI labels that PM was trained on),
    read from the two runs' job.yaml files; empty when either cannot be traced."""
    from pipeline.preferences import read_labels
    from pipeline.stages import read_job_file

    job = Path(ppo_out) / "job.yaml"
    pm = str(read_job_file(job).get("reward_adapter") or "") if job.exists() else ""
    pm_job = Path(pm).parent / "job.yaml" if pm else None
    data = str(read_job_file(pm_job).get("data") or "") if pm_job and pm_job.exists() else ""
    try:
        return pm, read_labels(data) if data else []
    except (OSError, ValueError):
        return pm, []


def nearest_pairs(loaded, prompt: str, answer: str, labels: list, k: int = 3,
                  limit: int = 500) -> list[tuple[float, object]]:
    """The `k` training pairs of a PM whose answers lie nearest (cosine of the base model's
    answer-mean state at its middle layer) to a sample — what taught the PM to score it so."""
    from pipeline.hidden import decoder_layers, hidden_states

    labels = [p for p in labels if "identical" not in p.flags][:limit]
    if not labels:
        return []
    layer = (len(decoder_layers(loaded.model)) + 1) // 2
    prompts = [prompt] + [p.pair.prompt for p in labels] * 2
    answers = [answer] + [p.pair.response_a for p in labels] + [p.pair.response_b for p in labels]
    states = hidden_states(loaded.model, loaded.tokenizer, prompts, answers, [layer])[:, 0]
    states = states / states.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    similarity = states[1:] @ states[0]
    n = len(labels)
    best = [max(float(similarity[i]), float(similarity[n + i])) for i in range(n)]
    ranked = sorted(range(n), key=lambda i: -best[i])[:k]
    return [(best[i], labels[i]) for i in ranked]
