"""The command registry: every command's flags, job file and command line come from its one
dataclass, and a job survives the trip job → to_argv → CLI parser → job unchanged."""

import dataclasses
from pathlib import Path

import pytest

from pipeline.cli import build_parser, stage_job
from pipeline.config.commands import COMMANDS, build_job, job_yaml, to_argv
from pipeline.core.errors import ConfigError

REQUIRED = {
    "constitution": "c.yaml",
    "data": "d",
    "reward_adapter": "pm",
    "chains": "ch",
    "pairs": "p.jsonl",
    "adapter": "ad",
}


def changed(cls):
    """A valid job of `cls` with every field moved off its default."""
    values = {}
    for f in dataclasses.fields(cls):
        d = f.default
        values[f.name] = (
            not d
            if isinstance(d, bool)
            else d + 1
            if isinstance(d, int)
            else round(d / 2 + 0.01, 4)
            if isinstance(d, float)
            else d
        )
    values.update({k: v for k, v in REQUIRED.items() if k in values})
    special = {
        "split": "train",
        "preset": "paper",
        "policy": "a=x,b=y",
        "principles": "p1,p2",
        "lora_targets": "q_proj",
        "prompts": "helpful",
        "judge": "pm",
        "judge_model": "jm",
        "model": "m",
        "policy_adapter": "pa",
        "init_adapter": "ia",
        "base": "b",
        "helpful_set": "red-team",
        "processes": 1,
        "minibatch_size": 2,
        "rounds": 2,
        "max_tokens": 128,
        "max_length": 64,
        "lora_dropout": 0.1,
        "label_smoothing": 0.1,
        "min_margin": 0.1,
        "eval_fraction": 0.1,
        "clip": 0.1,
        "gamma": 0.9,
        "lam": 0.9,
        "top_p": 0.5,
        "dtype": "fp16",
        "generations": 3,  # rollouts 9: a multiple
    }
    values.update({k: v for k, v in special.items() if k in values})
    if cls is COMMANDS["steer-extract"]:  # reads a constitution or pairs, not both
        values["pairs"] = ""
    return build_job(cls, values)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_job_survives_its_command_line(command, tmp_path):
    job = changed(COMMANDS[command])
    args = build_parser().parse_args(to_argv(command, job, tmp_path / "out"))
    assert Path(args.out) == tmp_path / "out"
    assert stage_job(command, args) == job


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_runs_from_a_job_file(command, tmp_path):
    job = changed(COMMANDS[command])
    (tmp_path / "job.yaml").write_text(job_yaml(job))
    args = build_parser().parse_args(
        [command, "--config", str(tmp_path / "job.yaml"), "--out", str(tmp_path / "out")]
    )
    assert stage_job(command, args) == job


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_bad_value_is_one_config_error_naming_the_field(command):
    cls = COMMANDS[command]
    unknown = {f.name: getattr(changed(cls), f.name) for f in dataclasses.fields(cls)}
    with pytest.raises(ConfigError, match=f"The {command} settings have no field colour"):
        build_job(cls, {**unknown, "colour": "red"})
    numbers = [f for f in dataclasses.fields(cls) if type(f.default) is int]
    field = (numbers or [f for f in dataclasses.fields(cls) if type(f.default) is bool])[0]
    kind = type(field.default).__name__
    with pytest.raises(ConfigError, match=f"{command}: {field.name} must be {kind}"):
        build_job(cls, {**unknown, field.name: "many"})
