"""The one-click pipeline's plan: every stage command is one the CLI accepts, each stage reads
the folders of the stages before it, and the closing tournament rates SFT and the aligned
policy against the base."""

import json
from pathlib import Path

import pytest

from pipeline.cli import build_parser
from pipeline.config.commands import EvaluateJob, RunAllJob, build_job, preset
from pipeline.core.errors import JobError
from pipeline.runner.run_all import plan


def test_every_stage_command_parses_and_reads_the_stage_before(tmp_path):
    job = build_job(RunAllJob, {**preset("run-all", "tiny"), "constitution": "c.yaml"})
    stages = plan(job, tmp_path)
    assert [s.kind for s in stages] == [
        "revise",
        "sft-data",
        "sft",
        "pairs",
        "label",
        "reward",
        "ppo",
        "evaluate",
    ]
    parser = build_parser()
    for stage in stages:
        args = parser.parse_args(list(stage.args))
        assert Path(args.out) == tmp_path / stage.name
    by_name = {s.name: parser.parse_args(list(s.args)) for s in stages}
    assert by_name["sft"].data == str(tmp_path / "sft-data")
    assert by_name["pairs"].policy == str(tmp_path / "sft" / "adapter")
    assert by_name["ppo"].policy_adapter == str(tmp_path / "sft" / "adapter")
    assert by_name["ppo"].reward_adapter == str(tmp_path / "reward" / "adapter")
    assert by_name["eval"].split == "test" and by_name["eval"].limit == 8
    assert by_name["chains"].split == "train" and by_name["chains"].limit == 16
    assert by_name["sft"].preset == "tiny"
    assert not hasattr(by_name["labels"], "judge_method")  # the default: auto
    assert by_name["eval"].judge == ["auto", "pm"] and by_name["eval"].judge_from == str(
        tmp_path / "labels"
    )
    with_probe = build_job(
        RunAllJob,
        {"constitution": "c.yaml", "judge_method": "representation", "judge_probe": "mine/probe"},
    )
    labels = parser.parse_args(list(plan(with_probe, tmp_path)[4].args))
    assert (labels.judge_method, labels.probe) == ("representation", "mine/probe")


def test_the_alignment_stage_is_a_choice_of_ppo_grpo_rloo_dpo_or_rahf(tmp_path):
    parser = build_parser()
    for alignment in ("dpo", "rahf"):
        job = build_job(RunAllJob, {"constitution": "c.yaml", "alignment": alignment})
        stages = plan(job, tmp_path)
        assert [s.kind for s in stages][-2:] == [alignment, "evaluate"]
        args = {s.name: parser.parse_args(list(s.args)) for s in stages}
        assert args[alignment].data == str(tmp_path / "labels")
        assert args["eval"].policy == [
            "sft=" + str(tmp_path / "sft" / "adapter"),
            f"{alignment}={tmp_path / alignment / 'adapter'}",
        ]
    with pytest.raises(JobError, match="alignment must be one of ppo, dpo, rahf, grpo, rloo"):
        build_job(RunAllJob, {"constitution": "c", "alignment": "sac"})


def test_run_all_config_is_checked_before_anything_starts():
    with pytest.raises(JobError, match="constitution is required"):
        build_job(RunAllJob, {})
    with pytest.raises(JobError, match="probe needs the representation judge"):
        build_job(EvaluateJob, {"constitution": "c", "policy": "a=x", "probe": "p"})
    assert build_job(
        EvaluateJob,
        {
            "constitution": "c",
            "policy": "a=x",
            "judge": "representation,pm",
            "reward_adapter": "pm",
        },
    ).judges == ["representation", "pm"]
    with pytest.raises(JobError, match="judge_probe needs judge_method: representation"):
        build_job(RunAllJob, {"constitution": "c", "judge_probe": "p"})
    with pytest.raises(JobError, match="preset must be one of"):
        build_job(RunAllJob, {"constitution": "c", "preset": "huge"})
    paper = build_job(RunAllJob, {**preset("run-all", "paper"), "constitution": "c"})
    assert paper.rounds == 4 and paper.ensemble == 0 and paper.train_prompts == 0


def test_config_layers_defaults_preset_file_flags(tmp_path):
    from pipeline.cli import build_parser, stage_job

    job_file = tmp_path / "job.yaml"
    job_file.write_text("constitution: c\npreset: paper\nensemble: 3\n")
    args = build_parser().parse_args(["run-all", "--config", str(job_file), "--rounds", "2"])
    job = stage_job("run-all", args)  # the preset named in the file, the file, then the flag
    assert (job.preset, job.train_prompts, job.ensemble, job.rounds) == ("paper", 0, 3, 2)
    tiny = stage_job("run-all", build_parser().parse_args(["run-all", "--constitution", "c"]))
    assert (tiny.preset, tiny.train_prompts) == ("tiny", 16)
    sft = stage_job(
        "sft",
        build_parser().parse_args(
            ["sft", "--preset", "tiny", "--data", "d", "--batch-size", "2", "--out", "o"]
        ),
    )
    assert (sft.max_steps, sft.batch_size) == (24, 2)


@pytest.mark.integration
def test_run_all_on_a_tiny_model_records_every_stage_and_the_table(tmp_path, tiny_folder):
    """The whole pipeline for real, on a tiny model: eight stage jobs in the workspace's
    queue, each succeeded with its artifacts, and the tournament's ratings."""
    import os
    import subprocess
    import sys

    from pipeline.data.store import Store
    from pipeline.evaluation.tournament import read_results

    root = Path(__file__).resolve().parents[3]
    out, ws = tmp_path / "run", tmp_path / "ws"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "--workspace",
            str(ws),
            "run-all",
            "--constitution",
            str(root / "constitutions" / "harmless-helpful.yaml"),
            "--model",
            str(tiny_folder),
            "--train-prompts",
            "4",
            "--pair-prompts",
            "6",
            "--eval-prompts",
            "2",
            "--max-new-tokens",
            "8",
            "--ensemble",
            "1",
            "--no-few-shot",
            "--out",
            str(out),
        ],
        cwd=root,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    records = Store(ws).jobs()
    assert sorted(j.kind for j in records) == sorted(
        ["revise", "sft-data", "sft", "pairs", "label", "reward", "ppo", "evaluate"]
    )
    assert all(j.status == "succeeded" and j.started_at and j.finished_at for j in records)
    assert "adapter/" in next(j for j in records if j.kind == "ppo").artifacts
    results = read_results(out / "eval")
    assert results.policies == ["base", "sft", "ppo"]
    judged = {j.judge: j for j in results.judges}
    assert len(judged) == 2 and any(name.startswith("pm:") for name in judged)  # + the PM
    axes = {a.axis for j in results.judges for a in j.axes}
    assert axes == {"harmlessness", "helpfulness"}
    assert all(len(a.ratings) == 3 for j in results.judges for a in j.axes)
    assert "| ppo |" in proc.stdout and "95% interval" in proc.stdout
    # no human labels in the workspace: auto fell back to the log-prob judge and says so first
    assert "labels unverified: there are no human A/B labels in 'human'" in proc.stdout
    report = (out / "report.md").read_text()
    assert report.startswith("## What training changed") and "ppo vs base Elo" in report
    assert "answer length: base" in report and "harmlessness, ppo vs base: won" in report
    assert json.loads((out / "reward" / "labels-note.json").read_text())["verified"] is False
