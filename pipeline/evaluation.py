"""Before/after: how trained policies compare with the base model on held-out prompts.

For each policy (the base, the SFT adapter, the PPO adapter, …) we sample one answer per
held-out prompt and report
  - the mean preference-model score of its answers (the PM the RL stage optimised), and
  - its AI-judge win rate against the base: the feedback model labels (policy answer, base
    answer) under the constitution, both orders averaged; a win is p > 0.5, a tie (p = 0.5,
    e.g. identical answers) counts half.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pipeline.constitution import Constitution
from pipeline.feedback import Judge
from pipeline.preferences import Pair
from pipeline.files import write_atomic
from pipeline.generation import SamplingConfig, backend_for, chat
from pipeline.models import load_model
from pipeline.reward_model import load_head, reward_scores

EVAL_FILE = "eval.json"


@dataclass(frozen=True)
class PolicyResult:
    name: str
    model: str
    pm_mean: float
    pm_std: float
    win_rate: float | None  # against the base; None for the base itself
    mean_p: float | None
    answers: tuple[str, ...]


def answers_of(model: str, prompts: list[str], sampling: SamplingConfig) -> list[str]:
    return [g.text for g in backend_for(model).generate([chat(p) for p in prompts], sampling)]


def pm_scores(pm_folder: str | Path, prompts: list[str], answers: list[str]) -> torch.Tensor:
    """Scores of a preference model folder from `reward` (its adapter merged into its base)."""
    loaded = load_model(str(pm_folder))
    head = load_head(pm_folder, loaded)
    with torch.no_grad():
        return reward_scores(loaded.model, head, loaded.tokenizer, prompts, answers).float().cpu()


def win_rate(p_policy: list[float]) -> float:
    """Wins count 1, ties (p = 0.5) half, losses 0."""
    return sum(1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0 for p in p_policy) / len(p_policy)


def evaluate(policies: dict[str, str], prompts: list[str], pm_folder: str | Path,
             judge: Judge, constitution: Constitution, sampling: SamplingConfig
             ) -> list[PolicyResult]:
    """`policies` maps a name to a model; the first one is the base the others are judged
    against."""
    answers = {name: answers_of(model, prompts, sampling) for name, model in policies.items()}
    base = next(iter(policies))
    results = []
    for name, model in policies.items():
        scores = pm_scores(pm_folder, prompts, answers[name])
        p = None
        if name != base:
            pairs = [Pair(q, a, b) for q, a, b in zip(prompts, answers[name], answers[base])]
            p = [pref.p_a for pref in judge.label(constitution, pairs)]
        results.append(PolicyResult(
            name, model, scores.mean().item(), scores.std().item() if len(scores) > 1 else 0.0,
            win_rate(p) if p else None, sum(p) / len(p) if p else None, tuple(answers[name])))
    return results


def longer_rate(answers: tuple[str, ...], base: tuple[str, ...]) -> float:
    """How often the policy's answer is longer (words) than the base's on the same prompt —
    the win rate a judge that only likes length would give (equal lengths count half)."""
    def side(a: str, b: str) -> float:
        la, lb = len(a.split()), len(b.split())
        return 1.0 if la > lb else 0.5 if la == lb else 0.0
    return sum(side(a, b) for a, b in zip(answers, base)) / max(len(answers), 1)


def mean_words(answers: tuple[str, ...]) -> float:
    return sum(len(a.split()) for a in answers) / max(len(answers), 1)


def format_results(results: list[PolicyResult]) -> str:
    """A Markdown table: one row per policy, the win rate beside its length baseline (how
    often the policy's answer is simply the longer one) and the mean answer length."""
    base = results[0]
    lines = [f"| policy | mean PM score (± sd) | AI-judge win rate vs {base.name} | mean P(better) "
             f"| longer than {base.name}'s (length baseline) | mean words |",
             "|---|---|---|---|---|---|"]
    for r in results:
        win = "—" if r.win_rate is None else f"{r.win_rate:.0%}"
        mean_p = "—" if r.mean_p is None else f"{r.mean_p:.3f}"
        longer = "—" if r is base else f"{longer_rate(r.answers, base.answers):.0%}"
        lines.append(f"| {r.name} | {r.pm_mean:+.3f} (± {r.pm_std:.3f}) | {win} | {mean_p} | "
                     f"{longer} | {mean_words(r.answers):.1f} |")
    return "\n".join(lines)


def write_results(results: list[PolicyResult], prompts: list[str], out: str | Path) -> Path:
    path = Path(out) / EVAL_FILE
    write_atomic(path, json.dumps({"prompts": prompts, "results": [asdict(r) for r in results]},
                                  ensure_ascii=False, indent=2))
    write_atomic(Path(out) / "eval.md", format_results(results) + "\n")
    return path


def read_results(out: str | Path) -> list[PolicyResult]:
    rows = json.loads((Path(out) / EVAL_FILE).read_text())["results"]
    return [PolicyResult(**{**r, "answers": tuple(r["answers"])}) for r in rows]
