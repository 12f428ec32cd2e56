"""The command registry: one config dataclass per command that does work (COMMANDS). CLI
flags, YAML job files, the studio's forms and a job's command line (`to_argv`) all come from
these fields (pipeline/config/fields.py), so no knob is typed twice.

Presets: `tiny` finishes on a 2-core CPU in minutes; `paper` has the CAI paper's shape
(larger LoRA, longer training) for a GPU machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Protocol, TypeVar

import yaml

from pipeline.config.fields import flag_name, non_finite_fields
from pipeline.config.settings import (
    DEFAULT_CONSTITUTION,
    DEFAULT_MODEL,
    ENGINES,
    ChainConfig,
    FeedbackConfig,
    SamplingConfig,
    engine_problem,
)
from pipeline.core.errors import ConfigError
from pipeline.core.files import YamlRefused, read_yaml
from pipeline.core.precision import HELP as PRECISION_HELP
from pipeline.core.precision import precision_problem
from pipeline.core.tracking import tracker_problem

# who labels a pair: the A/B question, hidden states, or whichever agrees best with people
JUDGES = ("logprob", "representation", "auto")
HUMAN_LABELS_HELP = (
    "judge auto: the human labels every judge is measured on ('human' = your "
    "labels in the workspace, 'gold', or a pairs JSONL or folder with human "
    "labels)."
)


def _help(text: str, default: Any, join: bool = False) -> Any:
    """A field with its help text; `join`: a repeatable flag whose values are joined by
    commas (one text field in YAML)."""
    return field(default=default, metadata={"help": text, "join": join})


@dataclass(frozen=True)
class LoRASettings:
    """The LoRA adapter every stage trains."""

    lora_r: int = _help("LoRA rank.", 8)
    lora_alpha: int = _help("LoRA scaling numerator (the update is scaled by alpha / r).", 16)
    lora_dropout: float = _help("Dropout on the LoRA input.", 0.05)
    lora_targets: str = _help(
        "Comma-separated module names to adapt.", "q_proj,k_proj,v_proj,o_proj"
    )

    def check_lora(self) -> list[str]:
        return (
            rule(self, "lora_r", self.lora_r >= 1, "must be at least 1")
            + rule(self, "lora_alpha", self.lora_alpha >= 1, "must be at least 1")
            + rule(self, "lora_dropout", 0 <= self.lora_dropout < 1, "must be in [0, 1)")
            + rule(
                self,
                "lora_targets",
                any(t.strip() for t in self.lora_targets.split(",")),
                "names no module",
            )
        )


@dataclass(frozen=True)
class PrecisionSettings:
    """How a training stage computes on a CPU (see pipeline/core/precision.py)."""

    precision: str = _help(PRECISION_HELP, "auto")


def precision_problems(job: Any) -> list[str]:
    return [problem] if (problem := precision_problem(job.precision)) else []


REPORT_TO_HELP = (
    "Experiment tracker that also receives the run's metrics (the names and steps of its "
    "metrics.jsonl) and its settings and lineage: none, tensorboard (event files in the run "
    "folder: `tensorboard --logdir WORKSPACE/runs`), trackio (a local dashboard: `trackio "
    "show`) or wandb (logged in, or WANDB_MODE=offline). Each is a `pip install NAME`."
)


def report_problems(job: Any) -> list[str]:
    return [problem] if (problem := tracker_problem(job.report_to)) else []


@dataclass(frozen=True)
class TrainingSettings(PrecisionSettings, LoRASettings):
    model: str = _help("Base model: 'embedded', a local folder or a hub id.", DEFAULT_MODEL)
    learning_rate: float = _help("Peak learning rate.", 2e-4)
    epochs: float = _help("Passes over the training data.", 1.0)
    batch_size: int = _help("Examples per optimisation step.", 4)
    max_steps: int = _help("Stop after this many steps (0 = by epochs).", 0)
    max_length: int = _help("Longest example in tokens; longer ones are cut.", 512)
    save_every: int = _help("Save a checkpoint every N steps (cancel also saves one).", 50)
    seed: int = _help("Seed of initialisation and data order.", 0)
    processes: int = _help(
        "Training processes (>1 runs through `accelerate launch`, one per GPU).", 1
    )
    report_to: str = _help(REPORT_TO_HELP, "none")

    def check_training(self) -> list[str]:
        problems = (
            self.check_lora()
            + precision_problems(self)
            + report_problems(self)
            + rule(self, "processes", self.processes >= 1, "must be at least 1")
            + rule(self, "learning_rate", self.learning_rate > 0, "must be > 0")
            + rule(self, "max_steps", self.max_steps >= 0, "must be 0 (by epochs) or more")
            + rule(self, "batch_size", self.batch_size >= 1, "must be at least 1")
            + rule(self, "max_length", self.max_length >= 16, "must be at least 16")
            + rule(self, "save_every", self.save_every >= 1, "must be at least 1")
        )
        if self.epochs <= 0 and self.max_steps == 0:
            problems.append("epochs must be > 0 when max_steps is 0 (set one of them)")
        return problems


@dataclass(frozen=True)
class SFTJob(TrainingSettings):
    """SL-CAI: LoRA fine-tuning on (prompt → final revision), loss on the answer only."""

    data: str = _help(
        "SFT dataset: a folder from `sft-data` (or its sft.jsonl), or a chain run "
        "folder from `revise` (its final revisions, nothing mixed in).",
        "",
    )

    def problems(self) -> list[str]:
        return self.check_training() + ([] if self.data else ["data is required"])


@dataclass(frozen=True)
class RewardJob(TrainingSettings):
    """The preference model: LoRA + a scalar head, trained on soft AI labels."""

    data: str = _help("AI labels: a folder from `label` (or its labels.jsonl).", "")
    init_adapter: str = _help("Start from this PM (e.g. a PMP run's folder) instead of fresh.", "")
    eval_fraction: float = _help("Share of the labelled pairs held out for accuracy.", 0.2)
    learning_rate: float = _help("Peak learning rate.", 1e-4)

    def problems(self) -> list[str]:
        problems = self.check_training() + ([] if self.data else ["data is required"])
        if not 0 <= self.eval_fraction < 1:
            problems.append("eval_fraction must be in [0, 1)")
        return problems + _one_process(self)


def _one_process(job: TrainingSettings) -> list[str]:
    """The preference model's own loop is single-process (trl-based stages are not)."""
    return (
        ["processes must be 1 for this stage (its loop runs in one process)"]
        if job.processes > 1
        else []
    )


@dataclass(frozen=True)
class PMPJob(TrainingSettings):
    """Preference-model pretraining on Stack Exchange answers ranked by votes."""

    data: str = _help("A Stack Exchange Posts.xml dump.", "")
    max_pairs: int = _help("Most answer pairs to train on (0 = all).", 2000)

    def problems(self) -> list[str]:
        return (
            self.check_training() + ([] if self.data else ["data is required"]) + _one_process(self)
        )


@dataclass(frozen=True)
class DPOJob(TrainingSettings):
    """DPO: LoRA policy trained directly on the AI-labelled pairs (reference = adapter off)."""

    data: str = _help("AI labels: a folder from `label` (or its labels.jsonl).", "")
    beta: float = _help("DPO β: how far the policy may move from the reference.", 0.1)
    label_smoothing: float = _help(
        "Assumed share of wrong labels (conservative DPO), in [0, 0.5).", 0.0
    )
    min_margin: float = _help("Leave out pairs whose label margin |2p−1| is below this.", 0.0)
    learning_rate: float = _help("Peak learning rate.", 5e-5)

    def problems(self) -> list[str]:
        problems = self.check_training() + ([] if self.data else ["data is required"])
        if self.beta <= 0:
            problems.append("beta must be > 0")
        if not 0 <= self.label_smoothing < 0.5:
            problems.append("label_smoothing must be in [0, 0.5)")
        if not 0 <= self.min_margin < 1:
            problems.append("min_margin must be in [0, 1)")
        return problems


RAHF_VARIANTS = ("dual", "scit")


@dataclass(frozen=True)
class RAHFJob(TrainingSettings):
    """RAHF: a LoRA trained so the model's hidden states carry the pattern that separates
    preferred from dispreferred answers — Dual (two SFT adapters, on the preferred and on
    the dispreferred answers) or SCIT (one adapter under contrastive instructions); no
    rollouts and no preference model."""

    data: str = _help(
        "Labelled pairs: a folder from `label` (AI labels) or its labels.jsonl, "
        "'gold', or a pairs JSONL with human labels.",
        "",
    )
    variant: str = _help(
        "dual (two SFT adapters: preferred vs dispreferred answers) or scit "
        "(one adapter, good vs bad instruction).",
        "dual",
    )
    constitution: str = _help(
        "SCIT's good and bad instructions are written from its principles "
        "(a file, NAME or NAME@VERSION); required for scit.",
        "",
    )
    alpha: float = _help("α: how far the states move along the pattern (the paper's 5).", 5.0)
    target_layers: str = _help(
        "Comma-separated layers (1 = first block's output) whose states "
        "are moved; empty = every second layer of the middle third (the "
        "paper moves middle layers). The tiny preset moves 12, 15 and 18 "
        "of the embedded model's 30: its middle third, where adding a "
        "constitution's direction visibly changes answers (layer 15 in "
        "the Playground), and three layers cost half of six.",
        "",
    )
    pattern_steps: int = _help(
        "Steps of the pattern adapters (Dual's two SFT adapters, SCIT's "
        "adapter); 0 = as many as max_steps / epochs give.",
        0,
    )
    scit_margin: float = _help(
        "SCIT: how much likelier (mean log-probability per token) an "
        "answer must be under its own instruction than under the other.",
        1.0,
    )
    min_margin: float = _help("Leave out AI-labelled pairs whose margin |2p−1| is below this.", 0.0)

    def problems(self) -> list[str]:
        problems = self.check_training() + _required(self, "data") + _one_process(self)
        if self.variant not in RAHF_VARIANTS:
            problems.append(f"variant must be one of {', '.join(RAHF_VARIANTS)}")
        if self.variant == "scit" and not self.constitution.strip():
            problems.append(
                "constitution is required for the scit variant (its instructions "
                "come from the principles)"
            )
        problems += (
            rule(self, "alpha", self.alpha > 0, "must be > 0")
            + rule(self, "scit_margin", self.scit_margin >= 0, "must be ≥ 0")
            + rule(self, "pattern_steps", self.pattern_steps >= 0, "must be ≥ 0")
        )
        if not 0 <= self.min_margin < 1:
            problems.append("min_margin must be in [0, 1)")
        return problems + layer_problems("target_layers", self.target_layers)

    @property
    def layer_list(self) -> list[int] | None:
        return layer_numbers(self.target_layers)


@dataclass(frozen=True)
class RLSettings(PrecisionSettings, LoRASettings):
    """What every RL stage on sampled answers shares (our PPO, trl's GRPO and RLOO): the SFT
    policy trained further against the preference model."""

    model: str = _help("Base model the adapters were trained on.", DEFAULT_MODEL)
    policy_adapter: str = _help(
        "SFT adapter folder to start the policy from ('' = fresh LoRA).", ""
    )
    reward_adapter: str = _help("Preference model folder (from `reward`).", "")
    prompts: str = _help("Prompt set or file for rollouts.", "red-team")
    steps: int = _help("Steps (each: one batch of sampled answers, then updates).", 20)
    rollouts: int = _help("Answers sampled per step.", 8)
    max_new_tokens: int = _help("Longest sampled answer in tokens.", 48)
    temperature: float = _help("Sampling temperature of rollouts.", 1.0)

    def rl_problems(self) -> list[str]:
        problems = self.check_lora() + precision_problems(self)
        for name in ("steps", "rollouts", "max_new_tokens"):
            problems += rule(self, name, getattr(self, name) >= 1, "must be at least 1")
        return problems + rule(self, "temperature", self.temperature > 0, "must be > 0")


@dataclass(frozen=True)
class PPOJob(RLSettings):
    """RL-CAI: PPO of the SFT policy against the preference model."""

    ppo_epochs: int = _help("Passes over each batch of rollouts.", 2)
    minibatch_size: int = _help("Rollouts per gradient step.", 4)
    learning_rate: float = _help("Learning rate of policy and value adapters.", 1e-5)
    clip: float = _help("PPO ratio clip ε.", 0.2)
    value_clip: float = _help("Value clip: how far a value may move per update.", 0.2)
    value_coef: float = _help("Weight of the value loss.", 0.1)
    gamma: float = _help("Discount.", 1.0)
    lam: float = _help("GAE λ.", 0.95)
    kl_coef: float = _help("β, the KL penalty coefficient (initial value if adaptive).", 0.05)
    kl_target: float = _help("Target KL for the adaptive controller (0 = fixed β).", 0.0)
    whiten_advantages: bool = _help("Normalise advantages per batch.", True)
    save_every: int = _help("Save a checkpoint every N steps (cancel also saves one).", 5)
    seed: int = _help("Seed of sampling and initialisation.", 0)
    steady_heap: bool = _help(
        "Give freed CPU memory back at once: about a third less peak memory; on jemalloc "
        "where it is installed (libjemalloc2), else glibc's fixed threshold, which makes "
        "steps about a third slower on CPU.",
        True,
    )
    report_to: str = _help(REPORT_TO_HELP, "none")

    def problems(self) -> list[str]:
        problems = self.rl_problems() + _required(self, "reward_adapter") + report_problems(self)
        for name in ("ppo_epochs", "minibatch_size", "save_every"):
            problems += rule(self, name, getattr(self, name) >= 1, "must be at least 1")
        if self.minibatch_size > self.rollouts >= 1:
            problems.append(
                f"minibatch_size cannot exceed rollouts ({self.rollouts}) (got "
                f"{self.minibatch_size})"
            )
        for name in ("learning_rate", "value_clip"):
            problems += rule(self, name, getattr(self, name) > 0, "must be > 0")
        for name in ("kl_coef", "kl_target", "value_coef"):
            problems += rule(self, name, getattr(self, name) >= 0, "must be ≥ 0")
        for name in ("gamma", "lam"):
            problems += rule(self, name, 0 <= getattr(self, name) <= 1, "must be in [0, 1]")
        return problems + rule(self, "clip", 0 < self.clip < 1, "must be in (0, 1)")


@dataclass(frozen=True)
class OnlineRLSettings(RLSettings):
    """What trl's online trainers (GRPO, RLOO) add: answers sampled in groups per prompt, each
    answer's advantage measured against its group (no value model), and the KL penalty to
    the reference (the base with adapters off, as in PPO)."""

    generations: int = _help(
        "Answers per prompt: the group each answer's advantage is measured against.", 4
    )
    learning_rate: float = _help("Learning rate of the policy adapter.", 1e-5)
    kl_coef: float = _help("β, the weight of the KL penalty to the reference.", 0.05)
    save_every: int = _help("Save a checkpoint every N steps (cancel also saves one).", 5)
    seed: int = _help("Seed of sampling and initialisation.", 0)
    reward_probe: str = _help(
        "Reward with the representation judge instead of the PM: a probe folder from "
        "`values fit`, fitted on this base model; each answer scores h·w/τ, read from the "
        "base's hidden states (the judge's P(A) is σ of two answers' difference).",
        "",
    )
    report_to: str = _help(REPORT_TO_HELP, "none")

    def reward_problems(self) -> list[str]:
        """Exactly one reward: the preference model or the representation judge's probe."""
        given = [n for n in ("reward_adapter", "reward_probe") if str(getattr(self, n)).strip()]
        if not given:
            return ["reward_adapter or reward_probe is required (a PM, or a probe from values fit)"]
        if len(given) == 2:
            return ["reward_probe and reward_adapter: give one reward, not both"]
        return []

    def problems(self) -> list[str]:
        problems = self.rl_problems() + self.reward_problems() + report_problems(self)
        problems += rule(self, "save_every", self.save_every >= 1, "must be at least 1")
        problems += rule(self, "generations", self.generations >= 2, "must be at least 2")
        if self.generations >= 2 and self.rollouts % self.generations:
            problems.append(
                f"rollouts must be a multiple of generations ({self.generations}) "
                f"(got {self.rollouts})"
            )
        problems += rule(self, "learning_rate", self.learning_rate > 0, "must be > 0")
        return problems + rule(self, "kl_coef", self.kl_coef >= 0, "must be ≥ 0")


@dataclass(frozen=True)
class GRPOJob(OnlineRLSettings):
    """GRPO with trl's GRPOTrainer: each answer's advantage is its reward (PM or probe score)
    against the mean and spread of the other answers to the same prompt — no value model."""


@dataclass(frozen=True)
class RLOOJob(OnlineRLSettings):
    """RLOO with trl's RLOOTrainer: each answer's baseline is the mean reward (PM or probe
    score) of the other answers to the same prompt (leave one out) — no value model."""


# --- data stages --------------------------------------------------------------------------------

SPLITS = ("", "train", "test")


def rule(job: Any, name: str, ok: bool, requirement: str) -> list[str]:
    """['NAME REQUIREMENT (got VALUE)'] when not `ok`: a problem names its one field first,
    so a form marks exactly the fields that are wrong."""
    return [] if ok else [f"{name} {requirement} (got {getattr(job, name)!r})"]


def problem_fields(problems: list[str], names: Iterable[str]) -> set[str]:
    """The fields the problems are about: each problem's first word when it is a field."""
    known = set(names)
    return {first for p in problems for first in [p.split(" ", 1)[0]] if first in known}


def _required(job: Any, *names: str) -> list[str]:
    return [f"{name} is required" for name in names if not str(getattr(job, name)).strip()]


def layer_problems(name: str, text: str) -> list[str]:
    """A comma-separated list of layer numbers, or what is wrong with it."""
    if all(part.strip().isdigit() for part in text.split(",") if part.strip()):
        return []
    return [f"{name} must be comma-separated layer numbers (got {text!r})"]


def layer_numbers(text: str) -> list[int] | None:
    """'8, 13' → [8, 13]; empty → None (the command's default layers)."""
    return [int(x) for x in text.split(",") if x.strip()] or None


class WholeJob:
    """First base of a job that extends settings classes (SamplingConfig…): those check
    themselves when built, but a job is checked as a whole, all its problems at once, by
    `build_job` — so their own checks on construction are switched off here."""

    def __post_init__(self) -> None:
        pass


@dataclass(frozen=True)
class PromptSettings:
    """Which prompts a command runs on."""

    prompts: str = _help("Prompt set (red-team, helpful) or a .jsonl/.txt file.", "red-team")
    split: str = _help("Only this split of the prompts: train, test, or '' for both.", "")
    limit: int = _help("Use the first N prompts (0 = all).", 0)

    def prompt_problems(self) -> list[str]:
        problems = _required(self, "prompts")
        if self.split not in SPLITS:
            problems.append(f"split must be train, test or '' for both (got {self.split!r})")
        if self.limit < 0:
            problems.append("limit must be 0 (all) or more")
        return problems


@dataclass(frozen=True)
class EngineSettings:
    """Which engine generates a job's text."""

    engine: str = _help(
        "What generates: fp32 (the transformers engine), int8 (CTranslate2: several times "
        "faster on a CPU; needs `pip install ctranslate2`) or auto (int8 where it can run and "
        "is faster: prompts up to 384 tokens).",
        "fp32",
    )

    def engine_problems(self) -> list[str]:
        return [problem] if (problem := engine_problem(self.engine)) else []


@dataclass(frozen=True)
class ReviseJob(WholeJob, PromptSettings, ChainConfig, EngineSettings, SamplingConfig):
    """Critique–revision chains (SL-CAI data) for a prompt set; rerunning into the same
    folder resumes."""

    constitution: str = _help("Constitution: a file, NAME or NAME@VERSION.", "")
    model: str = _help("The model that answers, critiques and revises.", DEFAULT_MODEL)
    skip_bad_lines: bool = _help(
        "Skip malformed lines of a prompts file (default: stop at the first).", False
    )

    def problems(self) -> list[str]:
        return (
            _required(self, "constitution")
            + self.prompt_problems()
            + self.chain_problems()
            + self.sampling_problems()
            + self.engine_problems()
        )


@dataclass(frozen=True)
class SFTDataJob(WholeJob, EngineSettings, SamplingConfig):
    """The SFT dataset from a folder of chains: final revisions, mixed with helpfulness
    examples the model answers."""

    chains: str = _help("A run folder written by `revise`.", "")
    helpful_ratio: float = _help("Helpfulness examples per revision example (0 = none).", 0.5)
    helpful_set: str = _help("Prompt set the helpfulness examples come from.", "helpful")
    model: str = _help("The model that answers the helpfulness prompts.", DEFAULT_MODEL)

    def problems(self) -> list[str]:
        problems = _required(self, "chains") + self.sampling_problems() + self.engine_problems()
        if self.helpful_ratio < 0:
            problems.append("helpful_ratio must be 0 (none) or more")
        return problems


@dataclass(frozen=True)
class PairsJob(WholeJob, PromptSettings, EngineSettings, SamplingConfig):
    """Two sampled answers per prompt from a policy: the pairs AI feedback labels."""

    policy: str = _help("Model name, folder or LoRA adapter folder.", DEFAULT_MODEL)
    batch_size: int = _help("Answers generated together.", 16)

    def problems(self) -> list[str]:
        problems = self.prompt_problems() + self.sampling_problems() + self.engine_problems()
        if self.batch_size < 1:
            problems.append("batch_size must be at least 1")
        return problems


@dataclass(frozen=True)
class LabelJob(WholeJob, FeedbackConfig):
    """AI feedback: soft A/B labels for pairs under a constitution; rerunning into the same
    folder resumes."""

    pairs: str = _help("Pairs JSONL, a folder from `pairs`, or 'gold'.", "")
    constitution: str = _help("Constitution: a file, NAME or NAME@VERSION.", "")
    model: str = _help("The feedback model.", DEFAULT_MODEL)
    judge_method: str = _help(
        "logprob (ask the A/B question), representation (read the "
        "answers' hidden states along the constitution's direction, or a "
        "probe's), or auto (the judge that agrees best with your human "
        "labels beyond length and chance; else logprob, unverified).",
        "auto",
    )
    human_labels: str = _help(HUMAN_LABELS_HELP, "human")
    probe: str = _help(
        "Representation judge: a probe folder from `values fit` instead of the "
        "constitution's direction.",
        "",
    )
    layer: int = _help(
        "Representation judge: the layer to read (-1 = the middle one; a probe brings its own).", -1
    )
    limit: int = _help("Label the first N pairs (0 = all).", 0)
    skip_bad_lines: bool = _help(
        "Skip malformed lines of a pairs file (default: stop at the first).", False
    )

    def problems(self) -> list[str]:
        problems = _required(self, "pairs", "constitution") + self.feedback_problems()
        if self.limit < 0:
            problems.append("limit must be 0 (all) or more")
        if self.judge_method not in JUDGES:
            problems.append(
                f"judge_method must be one of {', '.join(JUDGES)} (got {self.judge_method!r})"
            )
        if self.probe and self.judge_method != "representation":
            problems.append("probe needs judge_method: representation")
        return problems


TOURNAMENT_JUDGES = ("logprob", "representation", "pm", "auto")


@dataclass(frozen=True)
class EvaluateJob(WholeJob, SamplingConfig):
    """The policy tournament: the base and every policy answer held-out prompts (red-team for
    harmlessness, helpful for helpfulness), judges compare them pairwise on the same prompt in
    both orders, and Bradley–Terry ratings (Elo scale) with bootstrap intervals come out, with
    the win matrix, per-category tables, evasiveness and length drift."""

    prompts: str = _help(
        "Prompt sets (red-team = harmlessness, helpful = helpfulness) or .jsonl/"
        ".txt files; repeat the flag, or separate them with commas.",
        "red-team,helpful",
        join=True,
    )
    split: str = _help("The held-out split of every set: test (or train, or '' for both).", "test")
    limit: int = _help("Prompts per set (the first N of its split; 0 = all).", 8)
    base: str = _help(
        "The base model: the reference (Elo 0) every adapter must be trained on.", DEFAULT_MODEL
    )
    policy: str = _help(
        "Policies, NAME=MODEL (an adapter folder or model, or "
        "MODEL@steer:DIR:COEFFICIENT[:LAYER+LAYER] for a steered setting); "
        "repeat the flag, or separate them with commas in a job file.",
        "",
        join=True,
    )
    judge: str = _help(
        "Judges: logprob (the A/B question), representation (hidden states), pm "
        "(the preference model), auto (the judge a label run chose, see "
        "judge_from); several → their agreement is reported.",
        "logprob",
        join=True,
    )
    judge_model: str = _help(
        "The model the logprob and representation judges read ('' = the base).", ""
    )
    constitution: str = _help(
        "Constitution of the logprob and representation judges: a file, NAME or NAME@VERSION.", ""
    )
    ensemble: int = _help("Principles per logprob label (0 = every enabled principle).", 2)
    probe: str = _help("A probe folder from `values fit` for the representation judge.", "")
    judge_from: str = _help(
        "judge auto: the label run or judges comparison whose chosen judge "
        "(judge.json) it stands for.",
        "",
    )
    reward_adapter: str = _help(
        "Preference model folder (from `reward`): the pm judge, and each policy's PM score.", ""
    )
    bootstrap: int = _help("Bootstrap resamples of the prompts for the rating intervals.", 1000)
    processes: int = _help(
        "Processes sharing the answering and the judging (>1 runs through "
        "`accelerate launch`: one per GPU, or CPU processes without GPUs).",
        1,
    )
    engine: str = _help(
        "What generates the answers: auto (vLLM where it is installed and a GPU "
        "is present, else transformers), transformers, or vllm (also vLLM's "
        "CPU build; falls back to transformers, saying why).",
        "auto",
    )
    report_to: str = _help(REPORT_TO_HELP, "none")

    def problems(self) -> list[str]:
        problems = self.sampling_problems() + report_problems(self)
        if self.processes < 1:
            problems.append("processes must be at least 1")
        if self.engine not in ENGINES:
            problems.append(f"engine must be one of {', '.join(ENGINES)} (got {self.engine!r})")
        if not self.prompt_sets:
            problems.append("prompts names no prompt set")
        if self.split not in SPLITS:
            problems.append(f"split must be one of train, test or '' (got {self.split!r})")
        problems += (
            rule(self, "limit", self.limit >= 0, "must be ≥ 0")
            + rule(self, "ensemble", self.ensemble >= 0, "must be ≥ 0")
            + rule(self, "bootstrap", self.bootstrap >= 10, "must be at least 10")
        )
        names = ["base"]
        for spec in self.policies_given():
            name, sep, model = spec.partition("=")
            if not sep or not name or not model or name in names:
                problems.append(f"policy takes a new NAME=MODEL (got {spec!r})")
            names.append(name)
        if len(names) < 2:
            problems.append(
                "a tournament needs at least one policy besides the base (--policy NAME=MODEL)"
            )
        for judge in self.judges:
            if judge not in TOURNAMENT_JUDGES:
                problems.append(
                    f"judge must be one of {', '.join(TOURNAMENT_JUDGES)} (got {judge!r})"
                )
        if not self.judges:
            problems.append("judge names no judge")
        if set(self.judges) - {"pm"} and not self.constitution.strip():
            problems.append("constitution is required by the logprob and representation judges")
        if "pm" in self.judges and not self.reward_adapter.strip():
            problems.append("the pm judge needs reward_adapter")
        if self.probe and "representation" not in self.judges:
            problems.append("probe needs the representation judge")
        if "auto" in self.judges and not self.judge_from.strip():
            problems.append(
                "the auto judge needs judge_from (a label run or judges comparison "
                "that chose it: compare judges in the Preferences tab first)"
            )
        return problems

    def policies_given(self) -> list[str]:
        return [p.strip() for p in self.policy.split(",") if p.strip()]

    @property
    def policies(self) -> dict[str, str]:
        """name → model, the base first."""
        return {"base": self.base, **dict(p.split("=", 1) for p in self.policies_given())}

    @property
    def prompt_sets(self) -> list[str]:
        return list(dict.fromkeys(p.strip() for p in self.prompts.split(",") if p.strip()))

    @property
    def judges(self) -> list[str]:
        return list(dict.fromkeys(j.strip() for j in self.judge.split(",") if j.strip()))


POOLINGS = ("answer_mean", "last")
PROBE_METHODS = ("logistic", "mean_difference")


def probe_problems(job: Any) -> list[str]:
    """What is wrong with how a job reads and probes representations."""
    problems = []
    if job.pooling not in POOLINGS:
        problems.append(f"pooling must be one of {', '.join(POOLINGS)}")
    if job.method not in PROBE_METHODS:
        problems.append(f"method must be one of {', '.join(PROBE_METHODS)}")
    if job.folds < 2:
        problems.append("folds must be at least 2")
    return problems + layer_problems("layers", job.layers)


@dataclass(frozen=True)
class ValuesSettings:
    """Which pairs and how a model's representations are read and probed."""

    pairs: str = _help(
        "Human-labelled pairs: 'gold', 'human' (your labels in the workspace), a "
        "pairs JSONL or folder (HH-RLHF imports too), or a label run.",
        "gold",
    )
    model: str = _help("The model whose representations are read.", DEFAULT_MODEL)
    pooling: str = _help(
        "answer_mean (mean over the answer's tokens) or last (its last token).", "answer_mean"
    )
    method: str = _help("Probe: logistic (L2) or mean_difference.", "logistic")
    folds: int = _help("Cross-validation folds.", 5)
    layers: str = _help("Comma-separated layers to read (0 = embeddings; empty = all).", "")
    seed: int = _help("Seed of the folds and bootstrap.", 0)

    def values_problems(self) -> list[str]:
        return _required(self, "pairs") + probe_problems(self)

    @property
    def layer_list(self) -> list[int] | None:
        return layer_numbers(self.layers)


@dataclass(frozen=True)
class ValuesJob(WholeJob, ValuesSettings):
    """The values report: how much value signal the representations hold (the probe
    ceiling), what the constitution's direction and generation capture, the judge, the
    generation–judgment gap, length baselines, and the adversarial flag — for one or more
    constitutions side by side."""

    constitution: str = _help(
        "Constitution(s): a file, NAME or NAME@VERSION; repeat the flag to compare several.",
        "",
        join=True,
    )
    policy: str = _help(
        "The policy whose own likelihood gives the generation direction ('' = the model).", ""
    )
    judge_ensemble: int = _help(
        "Principles per log-prob judge label (0 = every enabled one; -1 = "
        "skip the log-prob judge).",
        2,
    )

    def problems(self) -> list[str]:
        problems = _required(self, "constitution") + self.values_problems()
        if self.judge_ensemble < -1:
            problems.append("judge_ensemble must be -1 (skip), 0 (all) or more")
        return problems

    @property
    def constitutions(self) -> list[str]:
        return [c.strip() for c in self.constitution.split(",") if c.strip()]


@dataclass(frozen=True)
class ValuesFitJob(WholeJob, ValuesSettings):
    """A representation judge from human labels: a probe at the best layer (or --layers N),
    with a temperature calibrated by cross-validation, saved with its lineage."""

    def problems(self) -> list[str]:
        problems = self.values_problems()
        if not problems and self.layer_list and len(self.layer_list) > 1:
            problems.append("a probe lives at one layer: give at most one in layers")
        return problems


@dataclass(frozen=True)
class JudgesCompareJob(WholeJob):
    """Every judge scored against people on the same human-labelled pairs: the log-prob A/B
    judge, the constitution's direction in the hidden states, a probe fitted in nested
    cross-validation (its layer picked inside the training folds), and a preference model when
    given; each with its agreement and 95% interval, length-controlled agreement, length
    baselines, position bias and calibration, ranked by the length-controlled lower bound."""

    labels: str = _help(
        "Human labels: 'human' (your labels in the workspace), 'gold', a pairs "
        "JSONL or folder with human labels (trl or HH-RLHF imports), or a label "
        "run.",
        "human",
    )
    constitution: str = _help(
        "Constitution of the log-prob and constitution-direction judges: "
        "a file, NAME or NAME@VERSION.",
        DEFAULT_CONSTITUTION,
    )
    model: str = _help("The model the judges read and ask.", DEFAULT_MODEL)
    ensemble: int = _help("Principles per log-prob judge label (0 = every enabled one).", 2)
    pm: str = _help("A preference model folder (a reward run's reward_adapter) to score too.", "")
    pooling: str = _help(
        "answer_mean (mean over the answer's tokens) or last (its last token).", "answer_mean"
    )
    method: str = _help("Probe: logistic (L2) or mean_difference.", "logistic")
    folds: int = _help("Cross-validation folds (outer and inner).", 5)
    layers: str = _help(
        "Comma-separated layers the probe may use (0 = embeddings; empty = all).", ""
    )
    seed: int = _help("Seed of the folds and bootstrap.", 0)

    def problems(self) -> list[str]:
        problems = _required(self, "labels", "constitution") + probe_problems(self)
        if self.ensemble < 0:
            problems.append("ensemble must be 0 (every enabled principle) or more")
        return problems

    @property
    def layer_list(self) -> list[int] | None:
        return layer_numbers(self.layers)


@dataclass(frozen=True)
class PrinciplesRankJob(WholeJob):
    """Every principle of a constitution and of a catalogue of candidates scored alone as a
    judge on human labels (log-prob and representation, length-controlled), near-duplicates
    named, and a draft constitution of the best ones with its measured agreement against the
    current one (written to the run folder, never saved silently)."""

    labels: str = _help(
        "Human labels: 'human', 'gold', or a pairs JSONL or folder with human labels.", "human"
    )
    constitution: str = _help(
        "Your constitution: a file, NAME or NAME@VERSION.", DEFAULT_CONSTITUTION
    )
    catalogue: str = _help(
        "Candidate principles: a constitution file ('' = the shipped catalogue of 43).", ""
    )
    model: str = _help("The model the judges read and ask.", DEFAULT_MODEL)
    methods: str = _help(
        "representation, logprob, or both (comma-separated; the log-prob judge "
        "asks every principle in both orders: slow on a CPU).",
        "representation,logprob",
    )
    batch_size: int = _help("Rows per forward pass of the log-prob judge.", 16)
    seed: int = _help("Seed of the bootstrap.", 0)

    def problems(self) -> list[str]:
        problems = _required(self, "labels", "constitution")
        unknown = [m for m in self.method_list if m not in ("representation", "logprob")]
        if unknown or not self.method_list:
            problems.append(
                f"methods must name representation and/or logprob (got {self.methods!r})"
            )
        return problems + rule(self, "batch_size", self.batch_size >= 1, "must be at least 1")

    @property
    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]


STEER_METHODS = ("mean", "pca")


@dataclass(frozen=True)
class SteerExtractJob(WholeJob):
    """A steering direction per layer, from a constitution (each enabled principle's
    following vs opposing instruction over the same prompts, last prompt token) or from
    labelled pairs (preferred − dispreferred answers); saved with its lineage and read on
    labelled pairs layer by layer, so layers are picked from evidence."""

    constitution: str = _help(
        "Constitution to read the direction from: a file, NAME or NAME@VERSION (or give pairs).", ""
    )
    pairs: str = _help(
        "Labelled pairs to read it from instead: 'gold', 'human', a pairs JSONL "
        "or folder, or a label run.",
        "",
    )
    model: str = _help("The model whose hidden states give the direction.", DEFAULT_MODEL)
    method: str = _help(
        "mean (the weighted mean difference) or pca (the differences' first principal direction).",
        "mean",
    )
    layers: str = _help(
        "Comma-separated layers, 1 (first block's output) to the model's last (empty = all).", ""
    )
    prompts: str = _help(
        "Prompt set or file the principles are read on (constitution only).", "red-team"
    )
    limit: int = _help("Prompts used (the first N of its train split).", 8)
    read: str = _help("Labelled pairs to read each layer's accuracy on ('' = skip).", "gold")

    def problems(self) -> list[str]:
        problems = []
        if bool(self.constitution.strip()) == bool(self.pairs.strip()):
            problems.append("give either constitution or pairs (one of them)")
        if self.method not in STEER_METHODS:
            problems.append(f"method must be one of {', '.join(STEER_METHODS)}")
        if self.limit < 1:
            problems.append("limit must be at least 1")
        return problems + layer_problems("layers", self.layers)

    @property
    def layer_list(self) -> list[int] | None:
        return layer_numbers(self.layers)


ALIGNMENTS = ("ppo", "dpo", "rahf", "grpo", "rloo")


@dataclass(frozen=True)
class RunAllJob:
    """The whole pipeline, each stage a job: chains → SFT data → SFT → pairs → AI labels →
    PM → PPO (or DPO, or RAHF) → a tournament of base, SFT and the aligned policy on the
    held-out split, harmlessness and helpfulness."""

    constitution: str = _help("Constitution: a file, NAME or NAME@VERSION.", "")
    model: str = _help("Base model (policy, feedback model and PM base).", DEFAULT_MODEL)
    preset: str = _help("Preset of the training stages (tiny, study or paper).", "tiny")
    prompts: str = _help(
        "Prompt set or file (its train split trains, its test split evaluates).", "red-team"
    )
    train_prompts: int = _help("Prompts revised for SFT (0 = the whole train split).", 16)
    rounds: int = _help("Critique–revision rounds per prompt.", 1)
    few_shot: bool = _help(
        "Show the constitution's few-shot chains to the model in `revise`.", True
    )
    helpful_ratio: float = _help("Helpfulness examples per revision example in the SFT data.", 0.25)
    pair_prompts: int = _help(
        "Prompts answered twice by the SFT policy for AI labels (0 = all).", 16
    )
    ensemble: int = _help("Principles sampled per AI label (0 = every enabled principle).", 2)
    eval_prompts: int = _help(
        "Held-out prompts per set (prompts and helpful) in the closing "
        "tournament (0 = the whole test split).",
        8,
    )
    judge_method: str = _help(
        "Who labels the pairs: logprob (the A/B question), representation "
        "(the constitution's direction in the hidden states, or "
        "`judge_probe`'s), or auto (the judge that agrees best with "
        "`human_labels` beyond length and chance; the labels say "
        "'unverified' when none does).",
        "auto",
    )
    human_labels: str = _help(HUMAN_LABELS_HELP, "human")
    judge_probe: str = _help(
        "A probe folder from `values fit` (e.g. fitted from your own "
        "labels) for the representation judge.",
        "",
    )
    max_new_tokens: int = _help("Longest generated answer in chains, pairs and evaluation.", 64)
    alignment: str = _help(
        "The alignment stage after the PM: ppo (RL against the PM, from the "
        "SFT policy), grpo or rloo (trl's online trainers, the same from the SFT policy), "
        "dpo (directly on the AI labels) or rahf (moving the hidden states, Dual); DPO "
        "and RAHF train a LoRA on the base.",
        "ppo",
    )
    precision: str = _help(PRECISION_HELP, "auto")

    def problems(self) -> list[str]:
        problems = [] if self.constitution else ["constitution is required"]
        if self.alignment not in ALIGNMENTS:
            problems.append(
                f"alignment must be one of {', '.join(ALIGNMENTS)} (got {self.alignment!r})"
            )
        if self.preset not in PRESETS:
            problems.append(f"preset must be one of {', '.join(PRESETS)}")
        if min(self.train_prompts, self.pair_prompts, self.eval_prompts, self.ensemble) < 0:
            problems.append("train_prompts, pair_prompts, eval_prompts and ensemble must be ≥ 0")
        if self.rounds < 1 or self.max_new_tokens < 1 or self.helpful_ratio < 0:
            problems.append("rounds and max_new_tokens must be at least 1, helpful_ratio ≥ 0")
        if self.judge_method not in JUDGES:
            problems.append(
                f"judge_method must be one of {', '.join(JUDGES)} (got {self.judge_method!r})"
            )
        if self.judge_probe and self.judge_method != "representation":
            problems.append("judge_probe needs judge_method: representation")
        return problems + precision_problems(self)


EXPORT_DTYPES = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ExportJob:
    """A trained policy adapter to take elsewhere: the adapter alone (peft format), or merged
    into its base as a standalone transformers model folder that loads without this project;
    either way with a model card that carries its lineage."""

    adapter: str = _help("The policy adapter folder (a run's adapter/: SFT, PPO, DPO, RAHF).", "")
    merge: bool = _help(
        "Merge the adapter into its base: safetensors, tokenizer with its chat template and "
        "the generation config, loadable by transformers, vLLM or llama.cpp's converter.",
        False,
    )
    dtype: str = _help("Weights of a merged model: fp32, bf16 or fp16.", "fp32")
    gguf: bool = _help(
        "Also write the merged model as model.gguf for llama.cpp and Ollama (Llama "
        "architectures, fp32 or fp16; others are pointed to llama.cpp's converter).",
        False,
    )

    def problems(self) -> list[str]:
        problems = _required(self, "adapter")
        if self.gguf and not self.merge:
            problems.append("gguf needs merge: a GGUF file holds a whole model")
        if self.gguf and self.dtype == "bf16":
            problems.append("gguf is written in fp32 or fp16 (got dtype 'bf16')")
        problems += rule(self, "dtype", self.dtype in EXPORT_DTYPES, "must be fp32, bf16 or fp16")
        if self.dtype != "fp32" and not self.merge:
            problems.append("dtype applies to a merged model: add merge (an adapter keeps its own)")
        return problems


STAGES: dict[str, type] = {
    "sft": SFTJob,
    "pmp": PMPJob,
    "reward": RewardJob,
    "ppo": PPOJob,
    "dpo": DPOJob,
    "rahf": RAHFJob,
    "grpo": GRPOJob,
    "rloo": RLOOJob,
}
# every command that does work, with its one config dataclass: CLI flags, `--config` job
# files, studio forms and the command lines of jobs all come from here
COMMANDS: dict[str, type] = {
    "revise": ReviseJob,
    "sft-data": SFTDataJob,
    "pairs": PairsJob,
    "label": LabelJob,
    **STAGES,
    "evaluate": EvaluateJob,
    "values-report": ValuesJob,
    "values-fit": ValuesFitJob,
    "judges-compare": JudgesCompareJob,
    "principles-rank": PrinciplesRankJob,
    "steer-extract": SteerExtractJob,
    "run-all": RunAllJob,
    "export": ExportJob,
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "revise": {"split": "train", "limit": 8, "rounds": 2, "max_new_tokens": 96},
        "sft-data": {"helpful_ratio": 0.5, "max_new_tokens": 96},
        "pairs": {"split": "train", "limit": 8, "max_new_tokens": 64},
        "label": {"ensemble": 2},
        "evaluate": {"limit": 8, "max_new_tokens": 64},
        "sft": {"max_steps": 24, "batch_size": 4, "max_length": 256, "lora_r": 8},
        "pmp": {"max_steps": 30, "batch_size": 4, "max_length": 256, "max_pairs": 200},
        "reward": {"max_steps": 24, "batch_size": 4, "max_length": 320},
        "ppo": {"steps": 6, "rollouts": 8, "minibatch_size": 4, "max_new_tokens": 32},
        "grpo": {"steps": 6, "rollouts": 8, "generations": 4, "max_new_tokens": 32},
        "rloo": {"steps": 6, "rollouts": 8, "generations": 4, "max_new_tokens": 32},
        "dpo": {"max_steps": 20, "batch_size": 4, "max_length": 320},
        # target_layers: see the field's help (chosen for the embedded model's 30 layers)
        "rahf": {
            "max_steps": 20,
            "pattern_steps": 12,
            "batch_size": 4,
            "max_length": 256,
            "target_layers": "12,15,18",
            "lora_r": 8,
        },
        # run-all's own defaults are the tiny preset
    },
    # between tiny and paper: about 22 minutes for run-all on a 2-core CPU, with enough pairs
    # and evaluation prompts (30 a set: the whole test split) for a practical effect to show,
    # and the judge picked by measured agreement with the gold labels
    "study": {
        "revise": {"split": "train", "limit": 24, "rounds": 1, "max_new_tokens": 96},
        "sft-data": {"helpful_ratio": 0.5, "max_new_tokens": 96},
        "pairs": {"split": "train", "limit": 48, "max_new_tokens": 64},
        "label": {"ensemble": 2},
        "evaluate": {"limit": 30, "max_new_tokens": 64},
        "sft": {"max_steps": 32, "batch_size": 4, "max_length": 256, "lora_r": 8},
        "pmp": {"max_steps": 60, "batch_size": 4, "max_length": 256, "max_pairs": 400},
        "reward": {"max_steps": 32, "batch_size": 4, "max_length": 320},
        "ppo": {"steps": 8, "rollouts": 8, "minibatch_size": 4, "max_new_tokens": 32},
        "grpo": {"steps": 8, "rollouts": 8, "generations": 4, "max_new_tokens": 32},
        "rloo": {"steps": 8, "rollouts": 8, "generations": 4, "max_new_tokens": 32},
        "dpo": {"max_steps": 40, "batch_size": 4, "max_length": 320},
        "rahf": {
            "max_steps": 40,
            "pattern_steps": 24,
            "batch_size": 4,
            "max_length": 256,
            "target_layers": "12,15,18",
            "lora_r": 8,
        },
        "run-all": {
            "train_prompts": 24,
            "pair_prompts": 48,
            "eval_prompts": 30,
            "judge_method": "auto",
            "human_labels": "gold",
        },
    },
    "paper": {
        "sft": {
            "epochs": 1.0,
            "batch_size": 32,
            "max_length": 1024,
            "lora_r": 64,
            "lora_alpha": 128,
            "learning_rate": 1e-4,
            "lora_targets": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        },
        "pmp": {
            "epochs": 1.0,
            "batch_size": 32,
            "max_length": 1024,
            "lora_r": 64,
            "lora_alpha": 128,
            "max_pairs": 0,
        },
        "reward": {
            "epochs": 1.0,
            "batch_size": 32,
            "max_length": 1024,
            "lora_r": 64,
            "lora_alpha": 128,
        },
        "ppo": {
            "steps": 500,
            "rollouts": 64,
            "minibatch_size": 16,
            "max_new_tokens": 256,
            "ppo_epochs": 4,
            "lora_r": 64,
            "lora_alpha": 128,
            "kl_target": 6.0,
        },
        **{
            name: {
                "steps": 500,
                "rollouts": 64,
                "generations": 8,
                "max_new_tokens": 256,
                "lora_r": 64,
                "lora_alpha": 128,
            }
            for name in ("grpo", "rloo")
        },
        "dpo": {
            "epochs": 1.0,
            "batch_size": 32,
            "max_length": 1024,
            "lora_r": 64,
            "lora_alpha": 128,
            "min_margin": 0.2,
        },
        # the paper's settings: LoRA r = 8, α = 5, middle layers (the default)
        "rahf": {
            "epochs": 1.0,
            "batch_size": 32,
            "max_length": 1024,
            "lora_r": 8,
            "lora_alpha": 16,
            "alpha": 5.0,
            "learning_rate": 5e-5,
        },
        "run-all": {
            "train_prompts": 0,
            "rounds": 4,
            "pair_prompts": 0,
            "ensemble": 0,
            "eval_prompts": 0,
            "max_new_tokens": 256,
            "helpful_ratio": 1.0,
        },
    },
}


class JobConfig(Protocol):
    """What `build_job` needs of a stage config: a dataclass that checks its own values."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def problems(self) -> list[str]: ...


T = TypeVar("T", bound=JobConfig)


def command_of(cls: type) -> str:
    """The command a config dataclass belongs to, as users type it (messages name it, not
    the class)."""
    return next((name for name, c in COMMANDS.items() if c is cls), cls.__name__)


def _coerce(cls: type, name: str, value: Any) -> Any:
    """A YAML value checked against the field's type (ints may stand for floats)."""
    wanted = type(next(f.default for f in dataclasses.fields(cls) if f.name == name))
    if wanted is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
        problem = f"{name} must be {wanted.__name__} (got {value!r})"
        raise ConfigError(f"{command_of(cls)}: {problem}.", (problem,))
    return value


def build_job(cls: type[T], values: dict[str, Any]) -> T:
    """A stage config from a dict, refusing unknown fields and impossible values by name,
    before any job starts."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"The {command_of(cls)} settings have no field {', '.join(unknown)}; "
            f"known fields: {', '.join(sorted(known))}."
        )
    job = cls(**{k: _coerce(cls, k, v) for k, v in values.items()})
    problems = non_finite_fields(job) or job.problems()
    if problems:
        raise ConfigError(f"{command_of(cls)}: " + "; ".join(problems) + ".", tuple(problems))
    return job


def to_argv(command: str, job: Any, out: str | Path, shown: tuple[str, ...] = ()) -> list[str]:
    """The command line (after `python -m pipeline`) that runs `job` into `out`: every
    field that differs from its default (and the `shown` ones even when they do not), as
    the flags `build_parser` makes from it."""
    args = [command]
    for f in dataclasses.fields(job):
        value = getattr(job, f.name)
        if value == f.default and f.name not in shown:
            continue
        flag = flag_name(f.name)
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif f.metadata.get("join"):
            for part in filter(None, (p.strip() for p in value.split(","))):
                args += [flag, part]
        else:
            args += [flag, repr(value) if isinstance(value, float) else str(value)]
    return args + ["--out", str(out)]


def preset(stage: str, name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; presets: {', '.join(PRESETS)}.")
    return dict(PRESETS[name].get(stage, {}))


def read_job_file(path: str | Path) -> dict[str, Any]:
    """A YAML job file's fields; anything but a small mapping of plain values is refused."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"The job file {path} is not UTF-8 text (is it a binary file?)."
        ) from None
    except OSError as exc:
        raise ConfigError(f"Cannot read the job file {path}: {exc.strerror}.") from None
    try:
        values = read_yaml(text)[0] or {}
    except YamlRefused as exc:
        raise ConfigError(f"The job file {path}, line {exc.line or '?'}: {exc.problem}.") from None
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        raise ConfigError(
            f"The job file {path} must be a mapping of field: value (field names "
            "are words such as learning_rate)."
        )
    return values


def job_yaml(job: Any) -> str:
    """A job config (or a dict of its fields) as the YAML a job file holds."""
    values = job if isinstance(job, dict) else dataclasses.asdict(job)
    return yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
