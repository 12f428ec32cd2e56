"""kill -9 at each step of a checkpoint or adapter save (SFT, PM, PPO), then resume: the run
always finds a complete checkpoint, finishes, and logs each step once."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.core.files import is_complete
from pipeline.train.reward import train_preference_model
from pipeline.train.runtime import read_metrics
from tests.crashing import comparisons, pm_job, run
from tests.tiny import small_vocab_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]

# each step of a save: its files half written (optimizer), written but unmarked (mark), the
# old one moved aside (first rename), the new one moved in (second rename), the old deleted
# (rmtree); the second save is the one killed, so an earlier checkpoint exists
OWN_LOOP = ["optimizer:2", "mark:2", "rename:2", "rename:3", "rmtree:1", "mark:4"]
TRL = ["optimizer:2", "mark:2", "rmtree:1", "mark:4"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_folder):
    root = tmp_path_factory.mktemp("crash")
    small = small_vocab_model()
    small.model.save_pretrained(root / "small")
    small.tokenizer.save_pretrained(root / "small")
    pm = train_preference_model(pm_job(str(root / "small")), comparisons(), {}, root / "pm")
    return {
        "sft": (str(tiny_folder), ""),
        "pm": (str(tiny_folder), ""),
        "ppo": (str(root / "small"), str(pm)),
    }


def kill_then_resume(scenario: str, point: str, models, tmp_path) -> Path:
    out = tmp_path / "run"
    model, pm = models[scenario]
    child = subprocess.run(
        [
            sys.executable,
            "-m",  # from the root: as a script, tests/pipeline would shadow pipeline
            "tests.crashing",
            scenario,
            str(out),
            model,
            *[pm][: bool(pm)],
            "--kill-at",
            point,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert child.returncode == -9, f"not killed at {point}:\n{child.stderr[-3000:]}"
    resumed_at = time.time()
    adapter = run(scenario, out, model, pm)
    assert is_complete(adapter)
    rows = [r for r in read_metrics(out) if "loss" in r or "reward_mean" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["time"] < resumed_at  # resumed from a checkpoint, not from the start
    return out


@pytest.mark.parametrize("point", OWN_LOOP)
def test_the_preference_model_resumes_after_a_kill_during_a_save(point, models, tmp_path):
    kill_then_resume("pm", point, models, tmp_path)


@pytest.mark.parametrize("point", OWN_LOOP)
def test_ppo_resumes_after_a_kill_during_a_save(point, models, tmp_path):
    kill_then_resume("ppo", point, models, tmp_path)


@pytest.mark.parametrize("point", TRL)
def test_sft_resumes_after_a_kill_during_a_save(point, models, tmp_path):
    out = kill_then_resume("sft", point, models, tmp_path)
    assert [p.name for p in (out / "checkpoint").glob("checkpoint-*")] == ["checkpoint-3"]
