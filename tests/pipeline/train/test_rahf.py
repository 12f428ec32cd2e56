"""RAHF end to end on the tiny model: Dual and SCIT train their pattern, then a fresh LoRA
moves the hidden states toward base + α·pattern; cancel and resume; bad input."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from pipeline.config.commands import RAHFJob, build_job
from pipeline.core.errors import ConfigError, DatasetError
from pipeline.core.job_folder import JobCancelled
from pipeline.model.hidden import encode_conversations, states_at
from pipeline.model.loading import load_model
from pipeline.train.rahf import default_layers, labelled_pairs, train_rahf
from pipeline.train.runtime import CancelFlag, read_metrics
from tests.pipeline.train.test_dpo import write_labels
from tests.records import harmless


def job_for(tiny_folder, data, **values) -> RAHFJob:
    settings = {
        "model": str(tiny_folder),
        "data": str(data),
        "max_steps": 8,
        "pattern_steps": 4,
        "batch_size": 4,
        "learning_rate": 2e-2,
        "save_every": 100,
        "target_layers": "1,2",
        "max_length": 64,
        **values,
    }
    return build_job(RAHFJob, settings)


def distance_to_target(tiny_folder, adapter, job: RAHFJob, pattern_folders) -> float:
    """Mean ‖h − (h_base + α·v)‖ over the answer tokens of the training pairs, for the model
    with `adapter` (None: the base) — measured apart from the training loop."""
    from peft import PeftModel

    loaded = load_model(str(tiny_folder))
    rows = labelled_pairs(job.data)
    ids, mask, answer = encode_conversations(
        loaded.tokenizer, [r.prompt for r in rows], [r.chosen for r in rows], 64
    )
    w = int(answer.sum(1).max())
    model = PeftModel.from_pretrained(
        loaded.model, str(pattern_folders["good"]), adapter_name="good"
    )
    try:
        model.load_adapter(str(pattern_folders["bad"]), adapter_name="bad")
        with torch.no_grad():
            with model.disable_adapter():
                base = states_at(model, ids, mask, [1, 2])[:, :, -w:]
            model.set_adapter("good")
            good = states_at(model, ids, mask, [1, 2])[:, :, -w:]
            model.set_adapter("bad")
            bad = states_at(model, ids, mask, [1, 2])[:, :, -w:]
            target = base + job.alpha * (good - bad)
            if adapter is None:
                h = base
            else:
                model.load_adapter(str(adapter), adapter_name="rahf")
                model.set_adapter("rahf")
                h = states_at(model, ids, mask, [1, 2])[:, :, -w:]
    finally:
        model.unload()
    weights = answer[:, -w:][None].expand(h.shape[:3]).float()
    return float(((h - target).norm(dim=-1) * weights).sum() / weights.sum())


def test_dual_rahf_moves_the_states_toward_the_target(tmp_path, tiny_folder):
    job = job_for(tiny_folder, write_labels(tmp_path / "labels", 8))
    adapter = train_rahf(job, tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert all(r["pattern_norm"] > 0 for r in rows if "pattern_norm" in r)
    patterns = {side: tmp_path / "run" / side / "adapter" for side in ("good", "bad")}
    assert all((p / "adapter_config.json").exists() for p in patterns.values())
    before = distance_to_target(tiny_folder, None, job, patterns)
    after = distance_to_target(tiny_folder, adapter, job, patterns)
    assert after < before
    card = (adapter / "README.md").read_text()
    assert "RAHF policy adapter (dual)" in card and "target layers**: 1, 2" in card
    policy = load_model(str(adapter))  # loads as a model, like every policy adapter
    assert policy.model is not load_model(str(tiny_folder)).model


def test_scit_rahf_trains_its_contrastive_adapter_then_the_states(tmp_path, tiny_folder):
    job = job_for(
        tiny_folder,
        write_labels(tmp_path / "labels", 8),
        variant="scit",
        constitution="harmless-helpful",
        scit_margin=0.5,
    )
    adapter = train_rahf(job, tmp_path / "run", constitution=harmless())
    scit = read_metrics(tmp_path / "run" / "scit")
    assert len([r for r in scit if "loss" in r]) == 4 and "preferred_gap" in scit[0]
    # 8 steps of 4 pairs on a random tiny model are too few for the loss to fall on every
    # seed (it moved 0.3 -> 0.45 on one, without dropout): the dual test above checks that
    # this phase moves the states toward their target; here, that it trained at all
    losses = [r["loss"] for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    weights = load_file(adapter / "adapter_model.safetensors")
    assert any(w.abs().sum() > 0 for name, w in weights.items() if "lora_B" in name)
    with pytest.raises(DatasetError, match="needs the constitution"):
        train_rahf(job, tmp_path / "again")


def test_a_cancelled_rahf_run_resumes_without_repeating_steps(tmp_path, tiny_folder):
    job = job_for(tiny_folder, write_labels(tmp_path / "labels", 8), save_every=2)
    cancel = CancelFlag()
    out = tmp_path / "run"

    class CancelAtStep3(CancelFlag):
        @property
        def requested(self):
            logged = read_metrics(out) if (out / "metrics.jsonl").exists() else []
            return len(logged) >= 3

        @requested.setter
        def requested(self, value):
            pass

    with pytest.raises(JobCancelled):
        train_rahf(job, out, CancelAtStep3())
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3
    train_rahf(job, out, cancel)
    steps = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert steps == list(range(1, 9))  # each step once


def test_rahf_refuses_bad_input(tmp_path, tiny_folder):
    with pytest.raises(ConfigError, match="variant must be one of dual, scit"):
        build_job(RAHFJob, {"data": "x", "variant": "triple"})
    with pytest.raises(ConfigError, match="constitution is required for the scit variant"):
        build_job(RAHFJob, {"data": "x", "variant": "scit"})
    with pytest.raises(ConfigError, match="alpha must be > 0"):
        build_job(RAHFJob, {"data": "x", "alpha": 0.0})
    with pytest.raises(ConfigError, match="target_layers must be comma-separated"):
        build_job(RAHFJob, {"data": "x", "target_layers": "middle"})
    with pytest.raises(DatasetError, match="at least 2 labelled pairs.*gives 1"):
        labelled_pairs(str(write_labels(tmp_path / "one", 1)))
    job = job_for(tiny_folder, write_labels(tmp_path / "labels", 4), target_layers="5")
    with pytest.raises(DatasetError, match="target_layers are 1 to 2 for this model"):
        train_rahf(job, tmp_path / "run")
    assert default_layers(30) == [11, 13, 15, 17, 19] and default_layers(2) == [1]
    assert len(labelled_pairs("gold")) >= 70  # human labels work as well as AI ones
