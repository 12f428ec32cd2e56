"""RL health: what a PPO run's own metrics say about how it is going wrong — the failures
RLHF is known for, read from metrics.jsonl and samples.jsonl (pure, tested by hand).

- reward rising while the KL from the reference passes `KL_LIMIT`: the policy may be
  exploiting the preference model rather than improving;
- answer length drifting past `LENGTH_DRIFT` × its start: PMs reward length;
- refusals among the rollouts rising by `REFUSAL_RISE`: evasiveness, the failure the CAI
  paper fought (helpful answers turning into refusals);
- the reward outliers: per step the highest- and lowest-rewarded sample, to read;
- the PM against the AI judge it imitates, on the run's samples (`pm_judge_disagreement`).
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
    if (
        reward_start is not None
        and reward_end is not None
        and kl_end is not None
        and reward_end > reward_start
        and kl_end > kl_limit
    ):
        warnings.append(
            HealthWarning(
                "reward-hacking",
                f"The reward rose ({reward_start:.3f} → {reward_end:.3f}) while the "
                f"KL from the reference reached {kl_end:.1f} nats (> {kl_limit:g}): "
                "the policy may be exploiting the preference model rather than "
                "improving. Read the highest-rewarded samples; raise kl_coef or set "
                "kl_target.",
            )
        )
    length_start, length_end = _mean(start, "answer_length"), _mean(end, "answer_length")
    if length_start and length_end and length_end > LENGTH_DRIFT * length_start:
        warnings.append(
            HealthWarning(
                "length-drift",
                f"Answers grew from {length_start:.0f} to {length_end:.0f} tokens "
                f"(> {LENGTH_DRIFT}× the start): preference models reward length; "
                "check that the reward is not length.",
            )
        )
    refusal_start, refusal_end = _mean(start, "refusal_rate"), _mean(end, "refusal_rate")
    if (
        refusal_start is not None
        and refusal_end is not None
        and refusal_end - refusal_start >= REFUSAL_RISE
    ):
        warnings.append(
            HealthWarning(
                "evasiveness",
                f"Refusals among the rollouts rose from {refusal_start:.0%} to "
                f"{refusal_end:.0%}: the policy may be learning to evade (the failure "
                "the CAI paper fought); compare its refusals on helpful prompts in a "
                "tournament.",
            )
        )
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


def pm_lineage(ppo_out: str | Path) -> tuple[str, str]:
    """(the PM folder a PPO run was trained against, the label run that PM was trained on),
    read from the two runs' job.yaml files; '' where either cannot be traced."""
    from pipeline.config.commands import read_job_file

    job = Path(ppo_out) / "job.yaml"
    pm = str(read_job_file(job).get("reward_adapter") or "") if job.exists() else ""
    pm_job = Path(pm).parent / "job.yaml" if pm else None
    data = str(read_job_file(pm_job).get("data") or "") if pm_job and pm_job.exists() else ""
    return pm, data


def pm_training_labels(ppo_out: str | Path) -> tuple[str, list]:
    """(the PM folder, the AI labels it was trained on; empty when they cannot be traced)."""
    from pipeline.data.preferences import read_labels

    pm, data = pm_lineage(ppo_out)
    try:
        return pm, read_labels(data) if data else []
    except (OSError, ValueError):
        return pm, []


@dataclass(frozen=True)
class JudgeCheck:
    """The PM against the AI judge on a PPO run's samples, each paired with the base
    model's answer to the same prompt."""

    compared: int
    disagreeing: int
    judge: str

    @property
    def text(self) -> str:
        share = self.disagreeing / self.compared if self.compared else 0.0
        verdict = (
            " — the PM rewards what the judge it was trained to imitate does not prefer; "
            "read the outliers"
            if share > 0.5
            else ""
        )
        return (
            f"The PM and the AI judge ({self.judge}) disagree on {self.disagreeing} of "
            f"{self.compared} samples (sample vs the base model's answer to the same prompt)"
            f"{verdict}."
        )


def pm_judge_disagreement(ppo_out: str | Path, limit: int = 12) -> JudgeCheck:
    """For up to `limit` logged samples (the reward outliers first): does the PM's preference
    between the sample and the base model's answer agree with the AI judge's, under the
    constitution and settings of the label run the PM learned from?"""
    from pipeline.config.commands import read_job_file
    from pipeline.config.fields import settings_of
    from pipeline.config.settings import FeedbackConfig, SamplingConfig
    from pipeline.core.errors import DatasetError
    from pipeline.core.files import read_jsonl_log
    from pipeline.data.constitution import load_constitution
    from pipeline.data.preferences import Pair
    from pipeline.evaluation.judges import make_judge, pm_scores
    from pipeline.evaluation.relabel import run_settings
    from pipeline.evaluation.tournament import NO_ANSWER
    from pipeline.model.engines import backend_for
    from pipeline.model.generation import chat

    pm, data = pm_lineage(ppo_out)
    if not pm or not data:
        raise DatasetError(
            "This PPO run's preference model and its labels cannot be traced "
            "(job.yaml of the PPO and reward runs)."
        )
    settings = run_settings(data)
    if not Path(settings.constitution).is_file():
        raise DatasetError(f"The label run {data} does not name its constitution as a file.")
    samples = reward_outliers(read_jsonl_log(Path(ppo_out) / "samples.jsonl"))[:limit]
    if not samples:
        raise DatasetError("This PPO run has logged no samples yet.")
    ppo = read_job_file(Path(ppo_out) / "job.yaml")
    prompts = [s["prompt"] for s in samples]
    base = backend_for(str(ppo.get("model") or "embedded")).generate(
        [chat(q) for q in prompts],
        SamplingConfig(max_new_tokens=int(ppo.get("max_new_tokens") or 48), temperature=0.0),
    )
    scores = pm_scores(pm, prompts * 2, [s["answer"] for s in samples] + [g.text for g in base])
    judge = make_judge(
        settings.judge_method,
        settings.model,
        settings.probe,
        settings.layer,
        settings_of(settings, FeedbackConfig),
    )
    labels = judge.label(
        load_constitution(settings.constitution),
        [
            Pair(q, s["answer"] or NO_ANSWER, g.text or NO_ANSWER)
            for q, s, g in zip(prompts, samples, base)
        ],
    )
    n = len(samples)
    decided = [
        (float(scores[i] - scores[n + i]), labels[i].p_a)
        for i in range(n)
        if scores[i] != scores[n + i] and labels[i].p_a != 0.5
    ]
    disagreeing = sum((margin > 0) != (p > 0.5) for margin, p in decided)
    return JudgeCheck(len(decided), disagreeing, judge.name)


def nearest_pairs(
    loaded, prompt: str, answer: str, labels: list, k: int = 3, limit: int = 500
) -> list[tuple[float, object]]:
    """The `k` training pairs of a PM whose answers lie nearest (cosine of the base model's
    answer-mean state at its middle layer) to a sample — what taught the PM to score it so."""
    from pipeline.model.hidden import decoder_layers, hidden_states

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
