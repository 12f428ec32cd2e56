"""Runs side by side (`runs compare`, the Runs tab's comparison): two or more runs of one
stage — their curves aligned by step, their settings with the differing ones marked, and the
number that says most about each, with its interval where it has one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.tracking import numbers
from pipeline.data.store import JobRecord, Store
from pipeline.runner.lineage import job_settings
from pipeline.runner.run_list import STAGE_NAMES, key_metric, run_name
from pipeline.train.runtime import read_metrics

NOT_CURVES = ("step", "time")


@dataclass(frozen=True)
class ComparedRun:
    name: str  # readable, with its job id
    folder: str
    key_metric: str  # with its interval and baseline where the stage has them
    settings: dict[str, Any]
    metrics: list[dict]


@dataclass(frozen=True)
class RunComparison:
    stage: str
    runs: list[ComparedRun]

    def settings(self) -> list[tuple[str, list[Any], bool]]:
        """Every setting: its value in each run and whether they differ (differing first)."""
        names = list(dict.fromkeys(k for r in self.runs for k in r.settings))
        rows = [(n, [r.settings.get(n, "—") for r in self.runs]) for n in names]
        marked = [(n, values, len({repr(v) for v in values}) > 1) for n, values in rows]
        return sorted(marked, key=lambda row: not row[2])

    def curves(self) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """metric → run name → (step, value), for every number a run logged per step."""
        out: dict[str, dict[str, list[tuple[int, float]]]] = {}
        for run in self.runs:
            for row in run.metrics:
                for name, value in numbers(row).items():
                    if name not in NOT_CURVES and "step" in row:
                        out.setdefault(name, {}).setdefault(run.name, []).append(
                            (int(row["step"]), value)
                        )
        return out


def find_run(store: Store, ref: str, records: list[JobRecord]) -> JobRecord:
    """A run by its job id or its folder (the newest job that wrote it)."""
    if ref.strip().isdigit():
        found = [j for j in records if j.id == int(ref)]
    else:
        folder = str(Path(ref).expanduser().resolve())
        found = [j for j in records if str(Path(j.out_dir).resolve()) == folder]
    if not found:
        raise ConfigError(
            f"No run {ref!r} in the workspace {store.workspace}: give a job id or a run folder."
        )
    return max(found, key=lambda j: j.id)


def compare_runs(store: Store, refs: list[str]) -> RunComparison:
    """Two or more runs of one stage, read from their folders."""
    records = store.jobs()
    jobs = list(dict.fromkeys(find_run(store, ref, records) for ref in refs))
    if len(jobs) < 2:
        raise ConfigError("Pick two or more different runs to compare.")
    kinds = sorted({j.kind for j in jobs})
    if len(kinds) > 1:
        names = ", ".join(f"job {j.id} is {STAGE_NAMES.get(j.kind, j.kind)}" for j in jobs)
        raise ConfigError(f"Compare runs of one stage: {names}.")
    runs = []
    for job in jobs:
        runs.append(
            ComparedRun(
                f"{run_name(job)} · job {job.id}",
                job.out_dir,
                key_metric(job),
                job_settings(Path(job.out_dir)),
                read_metrics(job.out_dir),
            )
        )
    return RunComparison(jobs[0].kind, runs)


def last_shared_step(series: dict[str, list[tuple[int, float]]]) -> int | None:
    """The last step every run of a curve reached (None when one has no steps)."""
    lasts = [max(s for s, _ in points) for points in series.values() if points]
    return min(lasts) if len(lasts) == len(series) and lasts else None


def value_at(points: list[tuple[int, float]], step: int) -> float | None:
    """The value logged at `step` (the last one logged there, as a resumed run rewrites it)."""
    at = [v for s, v in points if s == step]
    return at[-1] if at else None


def format_comparison(c: RunComparison) -> str:
    """The comparison as text for the command line."""
    lines = [f"{len(c.runs)} runs of {STAGE_NAMES.get(c.stage, c.stage)}", ""]
    for n, run in enumerate(c.runs, start=1):
        lines.append(f"[{n}] {run.name}: {run.key_metric or 'no result yet'}")
        lines.append(f"    {run.folder}")
    settings = c.settings()
    differing = [row for row in settings if row[2]]
    lines += ["", f"settings that differ ({len(differing)} of {len(settings)}):"]
    for name, values, _ in differing:
        lines.append(f"  {name}: " + " | ".join(f"[{n}] {v}" for n, v in enumerate(values, 1)))
    if not differing:
        lines.append("  none")
    curves = c.curves()
    if curves:
        lines += ["", "curves, at the last step every run reached:"]
    for metric, series in curves.items():
        step = last_shared_step(series) if len(series) == len(c.runs) else None
        if step is None:
            lines.append(f"  {metric}: logged by {len(series)} of {len(c.runs)} runs")
            continue
        values = [value_at(series[r.name], step) for r in c.runs]
        shown = " | ".join(
            f"[{n}] {'—' if v is None else f'{v:.4g}'}" for n, v in enumerate(values, 1)
        )
        lines.append(f"  {metric} at step {step}: {shown}")
    return "\n".join(lines)
