"""Every run of a workspace in one list: what it is (its stage and constitution, in words), how
it went (status, time) and the one number that says most about it — the studio's Runs tab
and `python -m pipeline runs`."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.core.job_folder import RUN_FILE, SUMMARY_FILE, stage_names, succeeded
from pipeline.core.stats import Accuracy
from pipeline.data.preferences import LABELS_FILE, PAIRS_FILE
from pipeline.data.store import JobRecord

STAGE_NAMES = {
    "revise": "chains",
    "sft-data": "SFT data",
    "sft": "SFT",
    "pairs": "pairs",
    "label": "AI labels",
    "pmp": "PM pretraining",
    "reward": "preference model",
    "ppo": "PPO",
    "dpo": "DPO",
    "grpo": "GRPO",
    "rloo": "RLOO",
    "evaluate": "evaluation",
    "values-report": "values report",
    "values-fit": "representation judge",
    "rahf": "RAHF",
    "steer-extract": "steering direction",
    "run-all": "pipeline",
    "judges-compare": "judges compared",
    "principles-rank": "principles ranked",
}
# Which studio tab shows a run of each kind.
TABS = {
    "revise": "chains",
    "pairs": "preferences",
    "label": "preferences",
    "judges-compare": "preferences",
    "values-report": "values",
    "evaluate": "evaluate",
}


@dataclass(frozen=True)
class RunSummary:
    job_id: int
    kind: str
    name: str  # stage · constitution or model · started, in words
    status: str
    duration: str
    metric: str  # the number that says most about the run, in words ("" when none yet)
    folder: str
    tab: str  # the studio tab that opens it
    parent: int | None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rows(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


# the chain log's file (pipeline.cai.critique.ChainLog; named here, as that module loads torch)
CHAINS_FILE = "chains.jsonl"

# what a batch job writes one record at a time, so a cancel keeps what it finished
RECORDS = {
    "revise": ("chain", CHAINS_FILE),
    "label": ("label", LABELS_FILE),
    "pairs": ("pair", PAIRS_FILE),
}


def kept_note(kind: str, folder: str | Path) -> str:
    """What a cancel of a `kind` job keeps, counted in its run folder: "finished work is
    kept" is said only where some is (a line torn by a kill does not count); otherwise that a
    resume starts over."""
    if kind not in RECORDS:
        return "finished work is kept."
    noun, file = RECORDS[kind]
    try:
        with open(Path(folder) / file, encoding="utf-8", errors="replace") as records:
            kept = sum(1 for line in records if line.endswith("\n") and line.strip())
    except OSError:
        kept = 0
    if not kept:
        return f"no {noun}s finished yet: a resume starts over."
    verb, them = ("is", "it") if kept == 1 else ("are", "them")
    return f"{counted(kept, 'finished ' + noun)} {verb} kept; a resume continues after {them}."


def counted(n: int, noun: str, plural: str = "") -> str:
    """'1 principle', '3 principles' ('1 labelled pair', not '1 labelled pairs')."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def ran_for(job: JobRecord, now: float | None = None) -> float:
    """Seconds the job has run (0 while queued)."""
    if not job.started_at:
        return 0.0
    end = (
        datetime.fromisoformat(job.finished_at).timestamp()
        if job.finished_at
        else now
        if now is not None
        else datetime.now().timestamp()
    )
    return max(0.0, end - datetime.fromisoformat(job.started_at).timestamp())


def subject(job: JobRecord) -> str:
    """What the run is about: its constitution, else its model or data."""
    folder = Path(job.out_dir)
    settings = _json(folder / RUN_FILE) or {}
    if isinstance(settings.get("constitution"), str) and "/" not in settings["constitution"]:
        return settings["constitution"]
    config = settings.get("config")
    plan: dict = config if isinstance(config, dict) else {}
    for name in ("constitution-input.yaml", "constitution.yaml"):
        text = (folder / name).read_text() if (folder / name).exists() else ""
        for line in text.splitlines():
            if line.startswith("name:"):
                return line.split(":", 1)[1].strip().strip("'\"")
    return str(plan.get("model") or settings.get("model") or "")


def key_metric(job: JobRecord) -> str:
    """The run's telling number, from what it wrote."""
    folder = Path(job.out_dir)
    if job.kind == "revise":
        chains = _rows(folder / CHAINS_FILE)
        failed = sum(bool(r.get("failure")) for c in chains for r in c.get("rounds", []))
        return f"{len(chains)} chains, {failed} failed rounds" if chains else ""
    if job.kind == "label":
        report = _json(folder / SUMMARY_FILE) or {}
        labels = _rows(folder / LABELS_FILE)
        if not report:
            return f"{len(labels)} pairs labelled" if labels else ""
        agreement = report.get("agreement") or {}
        text = (
            f"{report.get('labels', 0)} pairs, position bias {report.get('position_bias', 0):.0%}"
        )
        if agreement.get("compared"):
            text += (
                f", human agreement {agreement['agreeing']}/{agreement['compared']} "
                "(see its verdict)"
            )
        judge = report.get("judge")
        if isinstance(judge, str) and judge:
            text += "; " + (
                "labels unverified"
                if judge.startswith("labels unverified")
                else "judge chosen by agreement with people"
            )
        return text
    if job.kind == "judges-compare":
        board = _json(folder / "judges.json") or {}
        rows = [r for r in board.get("rows") or [] if isinstance(r, dict)]
        if not rows:
            return ""
        return (
            f"{board.get('pairs')} human labels; auto picks {board['best']}"
            if board.get("best")
            else f"{board.get('pairs')} human labels; no judge passes"
        )
    if job.kind == "pairs":
        pairs = _rows(folder / PAIRS_FILE)
        return f"{len(pairs)} pairs" if pairs else ""
    if job.kind == "sft-data":
        summary = _json(folder / SUMMARY_FILE) or {}
        return (
            f"{summary['revisions']} revisions + {summary['helpful']} helpful examples"
            if "revisions" in summary
            else ""
        )
    if job.kind == "values-report":
        raw = _json(folder / "values.json")
        reports = raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else []
        return "; ".join(
            f"{r.get('constitution')}: adversarial "
            f"{'yes' if r.get('adversarial') else 'no'}{_mean_cos(r)}"
            for r in reports
            if isinstance(r, dict)
        )
    if (
        job.kind == "steer-extract"
    ):  # pipeline/model/steering.py's artifact (not imported: no torch here)
        lineage = _json(folder / "direction" / "direction.json") or {}
        reading = [r for r in lineage.get("reading") or [] if isinstance(r, dict)]
        if reading:
            best = max(reading, key=lambda r: r.get("accuracy", 0))
            acc = Accuracy(
                best.get("accuracy", 0),
                best.get("low", 0),
                best.get("high", 1),
                best.get("controlled"),
            )
            return f"best layer {best.get('layer')}: {acc.text} on {lineage.get('read_on')}"
        return f"{lineage.get('contrasts')} contrasts" if lineage else ""
    if job.kind == "evaluate":
        raw = _json(folder / "eval.json") or {}
        judges = [j for j in raw.get("judges") or [] if isinstance(j, dict)]
        axes = [a for a in (judges[0].get("axes") or []) if isinstance(a, dict)] if judges else []
        return "; ".join(
            f"{a.get('axis')}: best {a['ratings'][0]['name']}" for a in axes if a.get("ratings")
        )
    if job.kind == "run-all":
        stages = stage_names(folder)
        done = sum(succeeded(folder / s) for s in stages)
        return f"{done} of {len(stages)} stages done" if stages else ""
    note = _json(folder / "labels-note.json") or {}  # judge_choice.NOTE_FILE (no torch here)
    unverified = "labels unverified · " if note.get("verified") is False else ""
    return unverified + trained_metric(job, folder)


def trained_metric(job: JobRecord, folder: Path) -> str:
    """A training run's telling number: the PM's held-out accuracy, else its last metric."""
    held_out = (
        (_json(folder / SUMMARY_FILE) or {}).get("held_out") if job.kind in PM_KINDS else None
    )
    if isinstance(held_out, dict) and held_out:
        return "held-out accuracy: " + "; ".join(
            f"{HELD_OUT.get(k, k)} {v}" for k, v in held_out.items()
        )
    metrics = [r for r in _rows(folder / "metrics.jsonl") if isinstance(r, dict)]
    for name, label in (
        ("reward_mean", "reward"),
        ("reward", "reward"),  # trl's GRPO and RLOO
        ("accuracy", "training-batch accuracy"),
        ("loss", "loss"),
    ):
        rows = [r for r in metrics if isinstance(r.get(name), (int, float))]
        if rows:
            last = rows[-1]
            text = f"{label} {last[name]:.3g} at step {last.get('step', '?')}"
            if name == "accuracy":  # a batch the model was just fitted on says little alone
                loss = last.get("loss")
                text += (
                    " (not held out"
                    + (f"; loss {loss:.3f}{chance(loss)}" if isinstance(loss, (int, float)) else "")
                    + ")"
                )
            return text
    return ""


PM_KINDS = ("reward", "pmp")
HELD_OUT = {"held_out_ai": "on held-out AI labels", "gold": "on the gold pairs"}


def chance(loss: float) -> str:
    """', chance level (ln 2)' for a pairwise loss that has not left ln 2, else ''."""
    return ", chance level (ln 2)" if abs(loss - 0.6931) < 0.005 else ""


def _mean_cos(report: dict) -> str:
    """(mean cos(w_c, w*) and its interval), what the flag rests on — when written."""
    interval = report.get("mean_cos_constitution_interval")
    if not isinstance(interval, list) or len(interval) != 2:
        return ""
    return (
        f" (mean cos(w_c, w*) {report.get('mean_cos_constitution', 0):+.3f}, 95% "
        f"{interval[0]:+.3f} to {interval[1]:+.3f})"
    )


@functools.lru_cache(maxsize=1024)
def _subject(job: JobRecord) -> str:
    return subject(job)


def run_name(job: JobRecord) -> str:
    """stage · constitution or model · when it started (UTC), e.g. "chains ·
    harmless-helpful · 2026-11-23 22:40". What a run is about is read from its folder once
    per state of its record (the job list asks every tick)."""
    started = (job.started_at or job.created_at)[:16].replace("T", " ")
    return " · ".join(
        part for part in (STAGE_NAMES.get(job.kind, job.kind), _subject(job), started) if part
    )


def summarise(
    job: JobRecord, now: float | None = None, attempts: tuple[JobRecord, ...] = ()
) -> RunSummary:
    """One run from its newest job; `attempts` are all its jobs (a resume is the same run:
    its time is theirs added up)."""
    attempts = attempts or (job,)
    return RunSummary(
        job.id,
        job.kind,
        run_label(job, len(attempts)),
        job.status,
        run_time(attempts, now),
        key_metric(job),
        job.out_dir,
        TABS.get(job.kind, "train"),
        job.parent,
    )


def run_time(attempts: tuple[JobRecord, ...], now: float | None = None) -> str:
    """How long a run has run, all its attempts together ('' before it started)."""
    started = [a for a in attempts if a.started_at]
    return duration_text(sum(ran_for(a, now) for a in started)) if started else ""


def run_label(job: JobRecord, attempts: int) -> str:
    """The run's name, saying how often it was resumed."""
    resumed = attempts - 1
    return run_name(job) + (
        f" · resumed{'' if resumed == 1 else f' {resumed}×'}" if resumed else ""
    )


def by_run(records: list[JobRecord]) -> list[tuple[JobRecord, tuple[JobRecord, ...]]]:
    """Each run folder once, newest first: (its newest job, every job that ran in it)."""
    runs: dict[str, list[JobRecord]] = {}
    for job in records:
        runs.setdefault(job.out_dir, []).append(job)
    return [(attempts[0], tuple(attempts)) for attempts in runs.values()]


def summaries(records: list[JobRecord], kind: str = "") -> list[RunSummary]:
    """Every run (newest first), or those of one kind; a resumed run is one run."""
    return [
        summarise(job, attempts=attempts)
        for job, attempts in by_run(records)
        if not kind or job.kind == kind
    ]


DAY = 86_400.0
# With no run of a stage in the workspace to measure: the fastest training step we measured
# on a laptop CPU (the embedded model, the tiny preset), so an estimate from it is a floor.
ASSUMED_STEP_SECONDS = 0.5
STEP_FIELDS = {
    "ppo": "steps",
    "sft": "max_steps",
    "reward": "max_steps",
    "pmp": "max_steps",
    "dpo": "max_steps",
    "rahf": "max_steps",
}


def step_seconds(records: list[JobRecord], kind: str) -> tuple[float, str]:
    """(seconds a training step of `kind` takes here, where that figure comes from): the
    median gap between logged steps of the newest succeeded run of that kind that logged
    two or more, else ASSUMED_STEP_SECONDS."""
    for job in records:
        if job.kind != kind or job.status != "succeeded":
            continue
        times = [
            r["time"]
            for r in _rows(Path(job.out_dir) / "metrics.jsonl")
            if isinstance(r, dict) and isinstance(r.get("time"), (int, float))
        ]
        gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
        if gaps:
            return gaps[len(gaps) // 2], f"measured on your {kind} run, job {job.id}"
    return ASSUMED_STEP_SECONDS, "at least that: the fastest step measured on a laptop CPU"


def long_run_warning(kind: str, job: Any, records: list[JobRecord]) -> str:
    """A warning when the job's step count would run longer than a day ('' otherwise)."""
    name = STEP_FIELDS.get(kind)
    steps = getattr(job, name, 0) if name else 0
    if not isinstance(steps, int) or steps <= 0:
        return ""
    seconds, source = step_seconds(records, kind)
    if steps * seconds <= DAY:
        return ""
    return (
        f"{name} = {steps:,} would run about {span_text(steps * seconds)} at {seconds:.2g} s "
        f"a step ({source}): more than a day. Is that the number you meant?"
    )


def span_text(seconds: float) -> str:
    """A long duration in the unit that reads best (days, years)."""
    days = seconds / DAY
    return f"{days:,.1f} days" if days < 365 else f"{days / 365.25:,.0f} years"
