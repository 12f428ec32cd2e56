"""The judges a tournament (or a label run) can use, by name: the log-prob A/B judge under a
constitution, the representation judge (hidden states along the constitution's directions
or a fitted probe), and the preference model (P(A) = σ(r_A − r_B), position-free). People
are the fourth judge: their labels come from the workspace (the studio's blind A/B)."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.cai.feedback import sigmoid
from pipeline.cai.reward_model import load_head, scores_by_length
from pipeline.config.settings import FeedbackConfig
from pipeline.core.errors import ConfigError
from pipeline.data.constitution import Constitution, content_hash
from pipeline.data.preferences import Pair, Preference, PrincipleLabel
from pipeline.model.loading import load_model
from pipeline.model.states_cache import cached_values

JUDGE_METHODS = ("logprob", "representation", "pm")
PEOPLE = "people"


def pm_scores(pm_folder: str | Path, prompts: list[str], answers: list[str]) -> torch.Tensor:
    """Scores of a preference model folder from `reward`, each (prompt, answer) scored once
    per PM and kept (`states_cache`, keyed by the PM's files, so a retrained one is scored
    afresh): a tournament's PM judge and then its policy statistics read the same answers,
    and scoring them twice was a tenth of the tiny pipeline's tournament. The PM is loaded
    only when some answer is not kept yet."""

    def score(rows: list[int]) -> list[float]:
        loaded = load_model(str(pm_folder))
        head = load_head(pm_folder, loaded)
        return scores_by_length(
            loaded.model,
            head,
            loaded.tokenizer,
            [prompts[i] for i in rows],
            [answers[i] for i in rows],
        ).tolist()

    keys = [["pm-score", p, a] for p, a in zip(prompts, answers)]
    return torch.tensor(cached_values(str(pm_folder), keys, "score", score))


class PMJudge:
    """The preference model as a judge: both orders agree by construction (mass 1)."""

    def __init__(self, pm_folder: str | Path):
        self.pm_folder = str(pm_folder)
        self.config = FeedbackConfig(ensemble=0)

    @property
    def name(self) -> str:
        return f"pm:{self.pm_folder}"

    def label(self, constitution: Constitution | None, pairs: list[Pair]) -> list[Preference]:
        if not pairs:
            return []
        version = content_hash(constitution) if constitution else ""
        prompts = [p.prompt for p in pairs] * 2
        scores = pm_scores(
            self.pm_folder, prompts, [p.response_a for p in pairs] + [p.response_b for p in pairs]
        )
        n = len(pairs)
        out = []
        for i, pair in enumerate(pairs):
            if pair.identical:
                out.append(Preference(pair, 0.5, (), self.name, version, False, ("identical",)))
                continue
            margin = float(scores[i] - scores[n + i])
            p = sigmoid(margin)
            out.append(
                Preference(
                    pair,
                    p,
                    (PrincipleLabel("preference-model", p, p, 1.0, 1.0),),
                    self.name,
                    version,
                )
            )
        return out


def make_judge(
    method: str,
    model: str,
    probe: str = "",
    layer: int = -1,
    config: FeedbackConfig | None = None,
    pm: str = "",
):
    """A judge by method: `logprob` (the A/B question asked of `model`), `representation`
    (`model`'s hidden states along the constitution's directions, or `probe`'s, at `layer`;
    -1 = the middle one) or `pm` (the preference model folder `pm`)."""
    if method == "pm":
        if not pm:
            raise ConfigError("The pm judge needs a preference model folder (reward_adapter).")
        return PMJudge(pm)
    loaded = load_model(model)
    if method == "logprob":
        from pipeline.cai.feedback import Labeller

        return Labeller(loaded, config or FeedbackConfig())
    if method == "representation":
        from pipeline.values.representation_judge import RepresentationJudge, load_probe

        return RepresentationJudge(
            loaded, load_probe(probe, loaded) if probe else None, None if layer < 0 else layer
        )
    raise ConfigError(f"judge must be one of {', '.join(JUDGE_METHODS)} (got {method!r}).")
