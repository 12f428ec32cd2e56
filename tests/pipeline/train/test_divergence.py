"""A non-finite loss or gradient stops every training loop with a clear failure, keeps the
last good checkpoint and never saves a NaN adapter; non-finite config numbers are refused."""

import dataclasses
import json
import math

import pytest
import torch

from pipeline.config.commands import STAGES, PPOJob, RewardJob, RunAllJob, SFTJob, build_job
from pipeline.core.errors import JobError
from pipeline.data.preferences import Comparison
from pipeline.train.reward import train_preference_model
from pipeline.train.runtime import TrainingDiverged
from pipeline.train.sft import train_sft

REQUIRED = {"data": "x", "reward_adapter": "x", "constitution": "x"}


def float_fields():
    for cls in (*STAGES.values(), RunAllJob):
        for f in dataclasses.fields(cls):
            if isinstance(f.default, float):
                yield cls, f.name


@pytest.mark.parametrize(
    "cls,name", list(float_fields()), ids=[f"{c.__name__}.{n}" for c, n in float_fields()]
)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_float_field_of_every_job_must_be_finite(cls, name, value):
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in REQUIRED.items() if k in known}
    with pytest.raises(JobError, match=f"{name} must be a finite number"):
        build_job(cls, {**values, name: value})


@pytest.mark.parametrize(
    "changes,problem",
    [
        ({"gamma": 1.5}, r"gamma must be in \[0, 1\] \(got 1.5\)"),
        ({"lam": -0.1}, r"lam must be in \[0, 1\] \(got -0.1\)"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"value_coef": -1.0}, r"value_coef must be ≥ 0 \(got -1.0\)"),
    ],
)
def test_ppo_ranges(changes, problem):
    with pytest.raises(JobError, match=problem):
        build_job(PPOJob, {"reward_adapter": "x", **changes})


def test_the_pm_stops_on_a_nan_loss_and_saves_nothing(tmp_path, tiny_folder):
    job = RewardJob(
        model=str(tiny_folder),
        data="synthetic",
        max_steps=4,
        batch_size=2,
        save_every=1,
        max_length=32,
    )
    data = [Comparison("q", "yes", "no", math.nan), Comparison("q", "fine", "bad", math.nan)]
    with pytest.raises(TrainingDiverged, match="loss became NaN/inf at step 1"):
        train_preference_model(job, data, {}, tmp_path / "pm")
    assert (
        not (tmp_path / "pm" / "adapter").exists() and not (tmp_path / "pm" / "checkpoint").exists()
    )


def test_sft_stops_when_the_loss_explodes_and_saves_no_adapter(tmp_path, tiny_folder):
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Say {i}."},
                {"role": "assistant", "content": "Sure, happy to help."},
            ]
        }
        for i in range(8)
    ]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = SFTJob(
        model=str(tiny_folder),
        data=str(data),
        max_steps=6,
        batch_size=4,
        learning_rate=1e30,
        save_every=1,
    )
    with pytest.raises(TrainingDiverged, match="became NaN/inf at step"):
        train_sft(job, tmp_path / "run")
    assert not (tmp_path / "run" / "adapter").exists()
    for folder in (tmp_path / "run" / "checkpoint").glob("checkpoint-*"):
        weights = folder / "adapter_model.safetensors"
        from safetensors.torch import load_file

        assert all(torch.isfinite(t).all() for t in load_file(weights).values())
