"""A `pairs` run cancelled midway keeps the pairs it finished and a rerun samples only the
prompts left, drawing the same answers an uncancelled run draws."""

from __future__ import annotations

import os
import signal

import pytest

from pipeline.config.commands import PairsJob
from pipeline.core.job_folder import JobCancelled, read_progress, read_status
from pipeline.data.preferences import PairLog, PromptsSampled
from pipeline.runner import pairs
from pipeline.runner.invocation import Invocation
from pipeline.runner.run_list import kept_note


def test_a_cancelled_pairs_run_keeps_its_chunks_and_resumes_after_them(
    tmp_path, tiny_folder, monkeypatch
):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"Tell me fact number {i}.\n" for i in range(4)))
    job = PairsJob(
        policy=str(tiny_folder), prompts=str(prompts), batch_size=2, max_new_tokens=8
    )  # one prompt (two answers) per chunk
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert pairs.run(job, Invocation(str(tmp_path / "ws"), whole)) == 0

    real, asked = pairs.make_pairs, []

    def sampled_then_cancelled(backend, chunk, sampling, places):
        asked.append([p.id for p in chunk])
        if len(asked) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the job's own cancel, during chunk 2
        return real(backend, chunk, sampling, places)

    monkeypatch.setattr(pairs, "make_pairs", sampled_then_cancelled)
    with pytest.raises(JobCancelled):
        pairs.run(job, Invocation(str(tmp_path / "ws"), cut))
    assert read_status(cut)[0] == "cancelled"
    assert len(PromptsSampled(cut).read()) == 1  # the first chunk is on disk
    assert len(PairLog(cut).read()) == 1
    assert kept_note("pairs", cut) == "1 finished pair is kept; a resume continues after it."
    progress = read_progress(cut)
    assert progress["stage"] == "sampling two answers per prompt (chunk 2 of 4)"

    assert pairs.run(job, Invocation(str(tmp_path / "ws"), cut)) == 0
    assert len(asked) == 5 and asked[0] not in asked[2:]  # the first prompt is not redone
    assert [p.id for p in PairLog(cut).read()] == [p.id for p in PairLog(whole).read()]
    assert len(PromptsSampled(cut).read()) == 4
    assert read_progress(cut)["stage"] == "done"


def test_a_pairs_run_is_not_resumed_under_other_settings(tmp_path, tiny_folder):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hello.\n")
    out = tmp_path / "run"
    job = PairsJob(policy=str(tiny_folder), prompts=str(prompts), max_new_tokens=4)
    pairs.run(job, Invocation(str(tmp_path / "ws"), out))
    with pytest.raises(Exception, match="other settings"):
        pairs.run(
            PairsJob(policy=str(tiny_folder), prompts=str(prompts), max_new_tokens=5),
            Invocation(str(tmp_path / "ws"), out),
        )
