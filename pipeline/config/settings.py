"""The settings that generation, critique chains and AI feedback share with the job configs
that extend them. Plain dataclasses, no torch: the command line reads them to build its flags
and check a job file without loading a model."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.config.fields import check_settings

DEFAULT_MODEL = "embedded"  # the model shipped with the studio (SmolLM2-135M-Instruct)
DEFAULT_CONSTITUTION = "harmless-helpful"  # what the studio opens first, when it is there


ENGINES = ("auto", "transformers", "vllm")  # what writes a tournament's answers
GENERATION_ENGINES = ("auto", "fp32", "int8")  # what generates a job's text (see model.engines)


def engine_problem(engine: str) -> str:
    """What is wrong with a generation engine's name ('' when nothing is)."""
    if engine in GENERATION_ENGINES:
        return ""
    return f"engine must be one of {', '.join(GENERATION_ENGINES)} (got {engine!r})"


COT_CLAMP = (0.4, 0.6)  # chain-of-thought labels are overconfident; the RLAIF paper clamps them


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = field(
        default=256, metadata={"help": "Most tokens to generate per answer."}
    )
    temperature: float = field(
        default=0.7, metadata={"help": "Sampling temperature; 0 means greedy."}
    )
    top_p: float = field(
        default=0.95,
        metadata={
            "help": "Nucleus sampling: keep the smallest set "
            "of tokens whose probability reaches this."
        },
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "Row i of a batch samples with seed + i, so the same seed gives the same text."
        },
    )

    def __post_init__(self) -> None:
        check_settings(self, self.sampling_problems())

    def sampling_problems(self) -> list[str]:
        """What is wrong with these settings (also checked in every job that extends them)."""
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be at least 1 (got {self.max_new_tokens})")
        if self.temperature < 0:
            problems.append(f"temperature must be 0 (greedy) or more (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1] (got {self.top_p})")
        return problems


GREEDY = SamplingConfig(temperature=0.0)
DEFAULT_SAMPLING = SamplingConfig()  # what forms and sliders start from


@dataclass(frozen=True)
class ChainConfig:
    rounds: int = field(default=4, metadata={"help": "Critique–revision rounds per prompt."})
    few_shot: bool = field(
        default=True,
        metadata={
            "help": "Prepend the constitution's few-shot chains to every critique and revision."
        },
    )
    batch_size: int = field(default=16, metadata={"help": "Prompts processed together."})
    relevant_only: bool = field(
        default=False,
        metadata={
            "help": "Draw each prompt's principles only from those tagged with its category (all "
            "enabled principles when none is)."
        },
    )

    def __post_init__(self) -> None:
        check_settings(self, self.chain_problems())

    def chain_problems(self) -> list[str]:
        """What is wrong with these settings (also checked in every job that extends them)."""
        problems = []
        if not 1 <= self.rounds <= 16:
            problems.append(f"rounds must be between 1 and 16 (got {self.rounds})")
        if self.batch_size < 1:
            problems.append(f"batch_size must be at least 1 (got {self.batch_size})")
        return problems


@dataclass(frozen=True)
class FeedbackConfig:
    ensemble: int = field(
        default=1,
        metadata={
            "help": "Principles sampled per pair (weighted, without replacement) whose labels are "
            "averaged; 0 uses every enabled principle."
        },
    )
    principles: str = field(
        default="",
        metadata={
            "help": "Comma-separated principle ids to use for every pair instead of sampling."
        },
    )
    cot: bool = field(
        default=False,
        metadata={
            "help": "Chain-of-thought: the model writes a rationale first; labels are clamped to "
            f"[{COT_CLAMP[0]}, {COT_CLAMP[1]}]."
        },
    )
    cot_max_tokens: int = field(default=96, metadata={"help": "Longest rationale in tokens."})
    max_tokens: int = field(
        default=1024,
        metadata={
            "help": "Longest question in tokens; longer answers are cut (and flagged), never the "
            "principle or the answer cue."
        },
    )
    batch_size: int = field(default=16, metadata={"help": "Rows per forward pass."})
    seed: int = field(default=0, metadata={"help": "Seed of the principle draws."})

    def __post_init__(self) -> None:
        check_settings(self, self.feedback_problems())

    def feedback_problems(self) -> list[str]:
        """What is wrong with these settings (also checked in every job that extends them)."""
        problems = []
        if self.ensemble < 0:
            problems.append(f"ensemble must be 0 (all principles) or more (got {self.ensemble})")
        if self.batch_size < 1 or self.cot_max_tokens < 1 or self.max_tokens < 64:
            problems.append(
                "batch_size and cot_max_tokens must be at least 1 and max_tokens at least 64"
            )
        return problems

    @property
    def principle_ids(self) -> list[str]:
        return [p.strip() for p in self.principles.split(",") if p.strip()]
