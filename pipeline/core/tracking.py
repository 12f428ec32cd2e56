"""Experiment trackers (`report_to`): a run's metrics mirrored to TensorBoard, Trackio or
Weights & Biases, under the names and steps its own metrics.jsonl holds, with the job's
settings and lineage as the run's config.

One tracker is open per process at a time (`tracked`); every `log` while it is open reaches
it, so each stage — trl-based or our own loop — reports through the one place it already
writes its metrics. The trackers are optional installs; each is imported only when chosen.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol

from pipeline.core.errors import ConfigError
from pipeline.core.job_folder import is_main_process

# name → what installs it ('' for none); trl's `report_to` names
TRACKERS = {
    "none": "",
    "tensorboard": "pip install tensorboard",
    "trackio": "pip install trackio",
    "wandb": "pip install wandb",
}
PROJECT = "constitution-studio"  # the Trackio / W&B project every run is filed under
TENSORBOARD_DIR = "tensorboard"  # in the run folder: `tensorboard --logdir WORKSPACE/runs`


def tracker_problem(report_to: str) -> str:
    """What is wrong with a `report_to` value ('' when nothing is): unknown, or not installed
    (with the command that installs it)."""
    if report_to not in TRACKERS:
        return f"report_to must be one of {', '.join(TRACKERS)} (got {report_to!r})"
    if report_to != "none" and importlib.util.find_spec(report_to) is None:
        return f"report_to {report_to} is not installed here: {TRACKERS[report_to]}"
    return ""


class Tracker(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row (a tracker plots numbers; text and NaN stay in the
    JSONL, where the run's health checks read them)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


class TensorBoardTracker:
    """Event files in `folder`; the config as a text summary at step 0."""

    def __init__(self, folder: Path, config: dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))
        self.writer.add_text("config", f"```\n{json.dumps(config, indent=2)}\n```", 0)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()  # a run killed mid-way still shows what it logged

    def close(self) -> None:
        self.writer.close()


class TrackioTracker:
    """A run in the local Trackio project (`trackio show` opens its dashboard); resumed by
    name when the same run folder is run again."""

    def __init__(self, name: str, config: dict[str, Any]):
        import trackio

        self.trackio = trackio
        trackio.init(project=PROJECT, name=name, config=config, resume="allow", embed=False)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.trackio.log(metrics, step=step)

    def close(self) -> None:
        self.trackio.finish()


def logged_in(wandb: Any) -> bool:
    """Whether W&B has credentials here, asked without a prompt."""
    try:
        return bool(wandb.login(prompt=False))
    except wandb.errors.UsageError:  # an empty key is refused rather than reported
        return False


class WandbTracker:
    """A W&B run, resumed by the run folder's id; offline (files only) when WANDB_MODE says."""

    def __init__(self, name: str, run_id: str, folder: Path, config: dict[str, Any]):
        import wandb

        offline = os.environ.get("WANDB_MODE") in ("offline", "disabled")
        if not offline and not logged_in(wandb):
            raise ConfigError(
                "report_to wandb: W&B is not logged in here. Run `wandb login`, or set "
                "WANDB_MODE=offline to keep the run in files for `wandb sync` later."
            )
        self.run = wandb.init(
            project=PROJECT, name=name, id=run_id, resume="allow", dir=str(folder), config=config
        )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


_active: Tracker | None = None


def run_name(folder: Path) -> str:
    """The run's name in a tracker: its folder's name, made unique across workspaces by a
    hash of the whole path (a rerun of the same folder resumes the same tracker run)."""
    return f"{folder.name}-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:6]}"


def open_tracker(report_to: str, folder: Path, config: dict[str, Any]) -> Tracker | None:
    """The tracker `report_to` names for the run in `folder` (None for 'none'); refused by
    name when it is unknown or not installed."""
    problem = tracker_problem(report_to)
    if problem:
        raise ConfigError(problem)
    name = run_name(folder)
    if report_to == "tensorboard":
        return TensorBoardTracker(folder / TENSORBOARD_DIR, config)
    if report_to == "trackio":
        return TrackioTracker(name, config)
    if report_to == "wandb":
        return WandbTracker(name, name, folder, config)
    return None


@contextmanager
def tracked(report_to: str, folder: Path, config: dict[str, Any]) -> Iterator[Tracker | None]:
    """Mirror every `log` to the chosen tracker while the block runs; closed however it ends.
    Under several processes only the first reports (the others write no metrics either)."""
    global _active
    tracker = open_tracker(report_to, folder, config) if is_main_process() else None
    _active = tracker
    try:
        yield tracker
    finally:
        _active = None
        if tracker is not None:
            tracker.close()


def log(step: int, metrics: dict[str, Any]) -> None:
    """One metrics row to the open tracker, if any."""
    if _active is not None:
        values = numbers(metrics)
        if values:
            _active.log(step, values)
