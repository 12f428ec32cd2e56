"""Experiment trackers: a tiny SFT and a tiny PPO run from the command line with
`report_to: tensorboard` write event files whose metric names and steps are those of their
metrics.jsonl; Trackio keeps the metrics and the run's config; an unknown or missing tracker
is refused by name; the tournament's results flatten into named metrics."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from pipeline.cli import main
from pipeline.config.commands import PPOJob, SFTJob
from pipeline.core import tracking
from pipeline.core.errors import ConfigError
from pipeline.evaluation.tournament import AxisResult, JudgeResult, PolicyStats, TournamentResult
from pipeline.runner.evaluate import tournament_metrics
from pipeline.train.runtime import read_metrics
from tests.tiny import small_vocab_stages

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="pip install tensorboard"
)


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a run's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / tracking.TENSORBOARD_DIR))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def jsonl_series(folder) -> dict[str, list[tuple[int, float]]]:
    """The same series as the run's metrics.jsonl holds them (its finite numbers)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for row in read_metrics(folder):
        for name, value in tracking.numbers(row).items():
            if name not in ("step", "time"):
                series.setdefault(name, []).append((row["step"], value))
    return series


def assert_same_series(folder) -> None:
    logged, written = scalars(folder), jsonl_series(folder)
    assert logged.keys() == written.keys() and written
    for name, rows in written.items():
        assert [s for s, _ in logged[name]] == [s for s, _ in rows], name
        assert all(math.isclose(a, b, rel_tol=1e-5) for (_, a), (_, b) in zip(logged[name], rows))


@pytest.mark.integration
@needs_tensorboard
def test_a_tiny_sft_and_ppo_report_their_jsonl_to_tensorboard(tmp_path):
    base, adapter, pm = small_vocab_stages(tmp_path, ("--report-to", "tensorboard"))
    sft = adapter.parent
    assert_same_series(sft)
    assert "loss" in scalars(sft)
    ws = ["--workspace", str(tmp_path / "ws")]
    ppo = tmp_path / "ppo"
    args = ["ppo", "--model", str(base), "--policy-adapter", str(adapter)]
    args += ["--reward-adapter", str(pm), "--steps", "2", "--rollouts", "2"]
    args += ["--minibatch-size", "2", "--max-new-tokens", "4", "--no-steady-heap"]
    assert main([*ws, *args, "--report-to", "tensorboard", "--out", str(ppo)]) == 0
    assert_same_series(ppo)
    assert {"reward_mean", "kl", "policy_loss"} <= scalars(ppo).keys()


TRACKIO_RUN = """
import json, math, sys
from pathlib import Path
from pipeline.core import tracking
run = Path(sys.argv[1]) / "runs" / "sft-1"
with tracking.tracked("trackio", run, {"stage": "sft", "lineage": {"base_model": "m"}}):
    tracking.log(1, {"loss": 2.0, "note": "text stays in the JSONL", "nan": math.nan})
    tracking.log(2, {"loss": 1.5})
from trackio.sqlite_storage import SQLiteStorage as storage
name = tracking.run_name(run)
logs = storage.get_logs(tracking.PROJECT, name)
print(json.dumps({"logs": logs, "config": storage.get_run_config(tracking.PROJECT, name)}))
"""


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("trackio") is None, reason="pip install trackio")
def test_trackio_keeps_the_metrics_and_the_config(tmp_path):
    # its own process: trackio reads TRACKIO_DIR once, when it is first imported
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio")}
    done = subprocess.run(
        [sys.executable, "-c", TRACKIO_RUN, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    read = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(r["step"], r["loss"]) for r in read["logs"]] == [(1, 2.0), (2, 1.5)]
    assert all("note" not in r and "nan" not in r for r in read["logs"])
    assert read["config"]["lineage"] == {"base_model": "m"}
    assert list((tmp_path / "trackio").glob(f"{tracking.PROJECT}*"))  # kept where it was told


def test_an_unknown_or_missing_tracker_is_refused_by_name(tmp_path):
    assert SFTJob(data="d", report_to="mlflow").problems() == [
        "report_to must be one of none, tensorboard, trackio, wandb (got 'mlflow')"
    ]
    assert PPOJob(reward_adapter="r", report_to="none").problems() == []
    if importlib.util.find_spec("wandb") is None:
        assert PPOJob(reward_adapter="r", report_to="wandb").problems() == [
            "report_to wandb is not installed here: pip install wandb"
        ]
        with pytest.raises(ConfigError, match="pip install wandb"):
            tracking.open_tracker("wandb", tmp_path, {})
    tracking.log(1, {"loss": 1.0})  # no tracker open: nothing happens, nothing fails


def test_the_tournament_flattens_into_named_metrics():
    axis = AxisResult(
        "harmlessness",
        [
            {"name": "base", "elo": 0.0, "low": 0.0, "high": 0.0, "comparisons": 8},
            {"name": "ppo", "elo": 12.5, "low": -3.0, "high": 30.0, "comparisons": 8},
        ],
        [[None, 0.4], [0.6, None]],
        {},
        8,
    )
    result = TournamentResult(
        ["base", "ppo"],
        [JudgeResult("pm:/runs/reward/adapter", [axis], 0.0, "")],
        [PolicyStats("ppo", "m", 41.5, None, 0.25, 0.1, 0.02)],
        [],
    )
    metrics = tournament_metrics(result)
    assert metrics["pm/harmlessness/ppo/elo"] == 12.5
    assert (metrics["pm/harmlessness/ppo/elo_low"], metrics["pm/harmlessness/ppo/elo_high"]) == (
        -3.0,
        30.0,
    )
    assert metrics["policy/ppo/mean_words"] == 41.5 and metrics["policy/ppo/pm_mean"] == 0.1
    assert "policy/ppo/refusal_rate" not in metrics  # no helpful prompts: no rate to plot


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="pip install wandb")
def test_wandb_keeps_the_run_offline_or_asks_for_a_login(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = tmp_path / "runs" / "sft-1"
    run.mkdir(parents=True)
    with tracking.tracked("wandb", run, {"stage": "sft"}):
        tracking.log(1, {"loss": 2.0})
    assert list((run / "wandb").glob("offline-run-*"))  # kept for `wandb sync`
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "")
    with pytest.raises(ConfigError, match="W&B is not logged in here"):
        tracking.open_tracker("wandb", tmp_path / "runs" / "a", {})
