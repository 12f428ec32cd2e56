"""PPO end to end on a tiny small-vocabulary model: adapter roles, a learnable reward rises,
cancel saves a checkpoint and a rerun resumes from it."""

import json
import math
import shutil

import pytest
import torch

from pipeline.cai.reward_model import reward_scores
from pipeline.config.commands import PPOJob, RewardJob
from pipeline.core.files import is_complete
from pipeline.core.job_folder import JobCancelled, failure_reason, job_context, read_status
from pipeline.data.preferences import Comparison
from pipeline.train.ppo import build_roles, train_ppo, update_mode
from pipeline.train.reward import train_preference_model
from pipeline.train.runtime import CancelFlag, TrainingDiverged, read_metrics
from tests.tiny import small_vocab_model

GOOD = set("good kind safe help yes sure thanks glad fine great".split())


def good_word_share(prompts, answers):
    return torch.tensor(
        [sum(w in GOOD for w in a.split()) / max(len(a.split()), 1) for a in answers]
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo")
    small = small_vocab_model()
    small.model.save_pretrained(root / "base")
    small.tokenizer.save_pretrained(root / "base")
    pm = train_preference_model(
        RewardJob(
            model=str(root / "base"), data="synthetic", max_steps=4, batch_size=2, max_length=32
        ),
        [Comparison("q", "good kind", "bad harm", 1.0), Comparison("q", "rude", "glad", 0.0)],
        {},
        root / "pm",
    )
    return root, pm


def job(root, pm, **changes):
    values = dict(
        model=str(root / "base"),
        reward_adapter=str(pm),
        steps=10,
        rollouts=16,
        minibatch_size=8,
        max_new_tokens=8,
        learning_rate=1e-2,
        kl_coef=0.0,
        save_every=100,
    )
    return PPOJob(**{**values, **changes})


def test_adapter_roles_share_one_base(setup):
    root, pm = setup
    from pipeline.model.loading import load_model

    base = load_model(str(root / "base"))
    ids = base.tokenizer("good bad the", return_tensors="pt")["input_ids"].to(base.device)
    with torch.no_grad():
        base_logits = base.model(input_ids=ids).logits
    roles = build_roles(job(root, pm))
    try:
        assert roles.model.get_base_model() is base.model  # one base model in memory
        with torch.no_grad():
            roles.model.set_adapter("policy")
            with roles.model.disable_adapter():
                reference = roles.model(input_ids=ids).logits
            assert torch.equal(reference, base_logits)  # the reference is the bare base
            assert torch.equal(roles.value_head.weight, roles.reward_head.weight)
            roles.model.set_adapter("reward")
            pm_score = reward_scores(
                roles.model, roles.reward_head, base.tokenizer, ["q"], ["good"]
            )
            roles.model.set_adapter("value")
            value = reward_scores(roles.model, roles.value_head, base.tokenizer, ["q"], ["good"])
        assert torch.allclose(pm_score, value)  # the value function starts as the PM
        assert roles.value_head.weight.requires_grad and not roles.reward_head.weight.requires_grad
    finally:
        roles.model.unload()


def test_updates_recompute_layers_and_keep_no_cache_then_generation_gets_both_back(setup):
    """An update runs in training mode with checkpointed layers and no KV cache (asking
    for one there makes transformers warn into every PPO job's log); generation after it
    has its cache again."""
    root, pm = setup
    roles = build_roles(job(root, pm))
    base = roles.loaded.model
    try:
        update_mode(roles, True)
        assert base.is_activation_checkpointing and roles.model.training
        assert base.config.use_cache is False
        update_mode(roles, False)
        assert not base.is_activation_checkpointing and not roles.model.training
        assert base.config.use_cache is True
    finally:
        roles.model.unload()


def test_packed_rollouts_give_each_rows_own_logits_and_values(setup, monkeypatch):
    """Scoring and updates run a rollout's rows packed (their common start once): at every
    answer token the same logits and hidden states as each row's own padded pass."""
    from pipeline.train import ppo

    root, pm = setup
    roles = build_roles(job(root, pm))
    assert ppo.packs(roles.model)
    try:
        rollout = ppo.make_rollout(roles, ["q", "good q", "the q"] * 2, job(root, pm), seed=3)
        mask = rollout.answer_mask.bool()
        assert not mask.all()  # answers of several lengths: placeholders are masked out
        rows = torch.tensor([4, 0, 2])

        def both(**kwargs) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                roles.model.set_adapter("policy")
                logits = ppo.answer_logits(roles, rollout, **kwargs)
                roles.model.set_adapter("value")
                return logits, ppo.answer_logits(roles, rollout, hidden=True, **kwargs)

        packed = [both(), both(rows=rows)]
        monkeypatch.setattr(ppo, "packs", lambda model: False)
        alone = [both(), both(rows=rows)]
        for (logits, states), (own_logits, own_states), m in zip(packed, alone, [mask, mask[rows]]):
            assert torch.allclose(logits[m], own_logits[m], atol=1e-4)
            assert torch.allclose(states[m], own_states[m], atol=1e-4)
    finally:
        roles.model.unload()


def test_a_short_ppo_run_raises_a_learnable_reward(setup, tmp_path):
    root, pm = setup
    adapter = train_ppo(job(root, pm), tmp_path / "run", reward_fn=good_word_share)
    rewards = [r["reward_mean"] for r in read_metrics(tmp_path / "run")]
    assert len(rewards) == 10
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.2
    metrics = read_metrics(tmp_path / "run")[-1]
    for name in (
        "kl",
        "entropy",
        "clip_fraction",
        "approx_kl",
        "value_loss",
        "policy_loss",
        "reward_std",
        "answer_length",
        "beta",
    ):
        assert name in metrics
    assert (adapter / "adapter_config.json").exists()
    assert (tmp_path / "run" / "samples.jsonl").exists()


def test_cancel_saves_a_checkpoint_and_a_rerun_resumes(setup, tmp_path):
    root, pm = setup
    cancel = CancelFlag()
    cancel.set()  # as if SIGTERM arrived during the first step
    with pytest.raises(JobCancelled):
        train_ppo(job(root, pm, steps=3), tmp_path / "run", cancel, reward_fn=good_word_share)
    assert (tmp_path / "run" / "checkpoint" / "state.json").exists()
    train_ppo(job(root, pm, steps=3), tmp_path / "run", reward_fn=good_word_share)
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3]


def test_a_full_disk_mid_job_fails_with_the_reason_and_keeps_the_checkpoint(setup, tmp_path):
    root, pm = setup
    out = tmp_path / "run"
    train_ppo(job(root, pm, steps=1, save_every=1), out, reward_fn=good_word_share)
    shutil.rmtree(out / "adapter")
    (out / "samples.jsonl").unlink()
    (out / "samples.jsonl").symlink_to("/dev/full")  # every write there: ENOSPC
    with pytest.raises(OSError), job_context(out):
        train_ppo(job(root, pm, steps=3, save_every=1), out, reward_fn=good_word_share)
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and status["message"].startswith("Out of disk space")
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 1
    (out / "samples.jsonl").unlink()  # space freed: the rerun resumes from step 1
    train_ppo(job(root, pm, steps=3, save_every=1), out, reward_fn=good_word_share)
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3]  # the failed step 2 logged once


def test_out_of_memory_is_named_with_what_to_lower():
    assert failure_reason(MemoryError()).startswith("Out of memory")
    assert "batch_size" in failure_reason(torch.OutOfMemoryError("CUDA out of memory"))
    assert failure_reason(ValueError("x")) == "ValueError: x"


def test_an_adapter_trained_on_another_base_is_refused_by_name(setup, tiny_folder):
    from pipeline.core.errors import ModelError

    root, pm = setup
    with pytest.raises(ModelError, match=r"was trained on .*base.*vocab_size"):
        build_roles(job(root, pm, model=str(tiny_folder)))


def test_ppo_stops_at_the_first_nan_reward_and_keeps_the_last_good_checkpoint(setup, tmp_path):
    root, pm = setup
    calls = []

    def reward(prompts, answers):
        calls.append(1)
        return torch.full((len(answers),), math.nan if len(calls) == 3 else 0.5)

    out = tmp_path / "ppo"
    with pytest.raises(TrainingDiverged, match="reward \\(PM score\\) became NaN/inf at step 3"):
        with job_context(out):
            train_ppo(job(root, pm, steps=5, save_every=1), out, reward_fn=reward)
    status, message = read_status(out)
    assert status == "failed" and "became NaN/inf at step 3" in message
    assert not (out / "adapter").exists()
    assert is_complete(out / "checkpoint")
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 2
    assert [r["step"] for r in read_metrics(out)] == [1, 2]


def test_a_resume_logs_each_steps_samples_once(setup, tmp_path):
    """Steps run after the last checkpoint by a run that died are run again on resume; their
    samples, like their metrics, are kept once (a step keeps at most 3 answers)."""
    root, pm = setup
    out, calls = tmp_path / "run", []

    def dies_at_step_4(prompts, answers):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("killed")
        return good_word_share(prompts, answers)

    with pytest.raises(RuntimeError):
        train_ppo(job(root, pm, steps=4, save_every=2), out, reward_fn=dies_at_step_4)
    assert {
        json.loads(line)["step"] for line in (out / "samples.jsonl").read_text().splitlines()
    } == {1, 2, 3}
    train_ppo(job(root, pm, steps=4, save_every=2), out, reward_fn=good_word_share)
    steps = [json.loads(line)["step"] for line in (out / "samples.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and set(steps) == {1, 2, 3, 4}
    assert all(steps.count(s) <= 3 for s in set(steps))
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4]
