"""Runs compared: curves aligned by step, differing settings marked, one stage at a time."""

import json

import pytest
import yaml

from pipeline.cli import main
from pipeline.core.errors import ConfigError
from pipeline.data.store import Store
from pipeline.runner.compare import compare_runs, format_comparison


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "ws")


def trained_run(store, folder, learning_rate, losses):
    """A finished SFT run as the stage leaves its folder: job.yaml and metrics.jsonl."""
    folder.mkdir(parents=True)
    (folder / "job.yaml").write_text(
        yaml.safe_dump({"model": "embedded", "learning_rate": learning_rate, "max_steps": 3})
    )
    rows = [{"step": n + 1, "time": 0.0, "loss": loss} for n, loss in enumerate(losses)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    job, _ = store.add_job("sft", ["sft"], str(folder), [])
    store.set_job_status(job.id, "succeeded")
    return job


def test_two_runs_side_by_side_by_step_and_by_setting(store, tmp_path, capsys):
    a = trained_run(store, tmp_path / "a", 2e-4, [2.0, 1.5, 1.2])
    b = trained_run(store, tmp_path / "b", 1e-3, [2.0, 1.1])  # stopped a step earlier
    c = compare_runs(store, [str(a.id), str(tmp_path / "b")])  # by id or by folder
    assert c.stage == "sft" and [r.folder for r in c.runs] == [
        str(tmp_path / "a"),
        str(tmp_path / "b"),
    ]
    settings = c.settings()
    assert settings[0] == ("learning_rate", [2e-4, 1e-3], True)  # differing ones first
    assert ("max_steps", [3, 3], False) in settings
    loss = c.curves()["loss"]
    assert loss[c.runs[0].name] == [(1, 2.0), (2, 1.5), (3, 1.2)]
    text = format_comparison(c)
    assert (
        "settings that differ (1 of 3)" in text and "learning_rate: [1] 0.0002 | [2] 0.001" in text
    )
    assert "loss at step 2: [1] 1.5 | [2] 1.1" in text  # the last step both reached
    assert main(["--workspace", str(store.workspace), "runs", "compare", str(a.id), str(b.id)]) == 0
    assert "2 runs of SFT" in capsys.readouterr().out


def test_runs_of_different_stages_or_fewer_than_two_are_refused(store, tmp_path):
    a = trained_run(store, tmp_path / "a", 2e-4, [1.0])
    labels, _ = store.add_job("label", ["label"], str(tmp_path / "l"), [])
    with pytest.raises(ConfigError, match=f"job {a.id} is SFT, job {labels.id} is AI labels"):
        compare_runs(store, [str(a.id), str(labels.id)])
    with pytest.raises(ConfigError, match="two or more different runs"):
        compare_runs(store, [str(a.id), str(tmp_path / "a")])  # the same run twice
    with pytest.raises(ConfigError, match="No run '999'"):
        compare_runs(store, [str(a.id), "999"])
