"""What a constitution edit would change, before anything is re-run: a stored label run
relabelled under the draft, with the run's own feedback settings — the principle draw is
seeded by the pair and the principles' weights, so a principle left alone is drawn (and
scored) the same, and a label moves only because of the edit — and the labels that flip."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.config.commands import LabelJob, build_job, read_job_file
from pipeline.config.fields import settings_of
from pipeline.config.settings import FeedbackConfig
from pipeline.core.errors import DatasetError
from pipeline.data.constitution import Constitution
from pipeline.data.preferences import Pair, read_labels
from pipeline.evaluation.judge_choice import read_choice

MOVED = 0.05  # a label whose P(A) moves more than this has changed, even without a flip


@dataclass(frozen=True)
class Flip:
    pair: Pair
    before: float  # P(A) in the stored run
    after: float  # P(A) under the draft
    principles: tuple[str, ...]  # the principles that judged it under the draft


@dataclass(frozen=True)
class Relabelling:
    compared: int
    moved: int  # |ΔP(A)| > MOVED
    largest_move: float
    flips: tuple[Flip, ...]
    settings: str  # the feedback settings used, in words

    @property
    def text(self) -> str:
        return (
            f"{len(self.flips)} of {self.compared} labels flip side under the draft; "
            f"{self.moved} move by more than {MOVED}, the largest by {self.largest_move:.3f} "
            f"({self.settings})."
        )


def run_settings(folder: str | Path) -> LabelJob:
    """The label run's own settings (its job.yaml), else the defaults."""
    path = Path(folder) / "job.yaml"
    values = read_job_file(path) if path.exists() else {}
    job = build_job(
        LabelJob,
        {
            **values,
            "pairs": values.get("pairs") or str(folder),
            "constitution": values.get("constitution") or "draft",
        },
    )
    if job.judge_method != "auto":
        return job
    choice = read_choice(folder)  # the judge auto chose for this run (log-prob without one)
    return replace(
        job,
        judge_method=choice.method if choice else "logprob",
        probe=choice.probe if choice else "",
    )


def relabel(draft: Constitution, labels: str | Path, limit: int = 0, judge=None) -> Relabelling:
    """Relabel the first `limit` pairs (0 = all) of a label run under `draft`."""
    from pipeline.evaluation.judges import make_judge

    stored = [p for p in read_labels(labels) if "identical" not in p.flags][: limit or None]
    if not stored:
        raise DatasetError(f"{labels} holds no labelled pair to relabel.")
    job = run_settings(labels if Path(labels).is_dir() else Path(labels).parent)
    judge = judge or make_judge(
        job.judge_method, job.model, job.probe, job.layer, settings_of(job, FeedbackConfig)
    )
    fresh = judge.label(draft, [p.pair for p in stored])
    flips, moved = [], 0
    for old, new in zip(stored, fresh):
        moved += abs(new.p_a - old.p_a) > MOVED
        if old.p_a != 0.5 and new.p_a != 0.5 and (old.p_a > 0.5) != (new.p_a > 0.5):
            flips.append(
                Flip(old.pair, old.p_a, new.p_a, tuple(x.principle_id for x in new.labels))
            )
    settings = f"{job.judge_method} judge {job.model}, ensemble {job.ensemble}, seed {job.seed}"
    largest = max(abs(new.p_a - old.p_a) for old, new in zip(stored, fresh))
    return Relabelling(len(stored), moved, largest, tuple(flips), settings)


def format_relabelling(result: Relabelling) -> str:
    lines = [result.text]
    for f in result.flips:
        lines.append(
            f"- P(A) {f.before:.2f} → {f.after:.2f} ({', '.join(f.principles)}): "
            f"{f.pair.prompt[:90]}"
        )
    return "\n".join(lines)
