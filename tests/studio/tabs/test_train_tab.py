"""The Train tab's handlers, without a browser."""

import dataclasses
import html
import json
import math

import pytest

from pipeline.runner import jobs
from studio.tabs import train as tab


def all_values(stage: str, **changes):
    """Stage `stage`'s form values in layout order, with `changes`."""
    return [changes.get(f.name, f.default) for f in dataclasses.fields(tab.FORMS[stage])]


def filled(updates: dict, stage: str) -> dict:
    """A form update's fields of stage `stage`, by field name."""
    return {
        f.name: updates[tab.field_elem_id(stage, f.name)]
        for f in dataclasses.fields(tab.FORMS[stage])
    }


def test_a_form_reads_typed_values():
    values = tab.form_values(
        tab.FORMS["reward"], all_values("reward", data=" labels ", max_steps=7.0)
    )
    assert values["data"] == "labels" and values["max_steps"] == 7 and values["lora_r"] == 8
    assert isinstance(values["max_steps"], int)


def test_a_preset_fills_only_the_chosen_stage_and_offers_earlier_outputs(store):
    updates = tab.on_preset(store, "ppo", "tiny", None)
    ppo = filled(updates, "ppo")
    assert ppo["steps"]["value"] == 6 and ppo["prompts"]["choices"] == ["red-team", "helpful"]
    assert not any(key.startswith("train-run-all-") for key in updates)  # others left alone
    assert "python -m pipeline ppo --config" in updates["command"]  # and previewed
    assert "steps: 6" in updates["command"] and updates["previewed"].split("/")[-1].startswith(
        "ppo-"
    )
    shown = tab.on_stage(store, "dpo", "tiny", None)
    assert "DPO" in shown["description"]["value"]
    assert [shown[f"form-{s}"]["visible"] for s in tab.FORMS] == [s == "dpo" for s in tab.FORMS]
    assert [shown[f"launch-{s}"]["visible"] for s in tab.FORMS] == [s == "dpo" for s in tab.FORMS]
    assert shown["filled"] == ["dpo", "tiny"] and updates["filled"] == ["ppo", "tiny"]


def test_the_stage_picker_firing_again_keeps_what_the_user_typed(store):
    """The stage dropdown fires again when it loses focus (a click into the form): the form
    it already holds is not refilled from the preset over what the user typed."""
    assert tab.on_stage(store, "rahf", "tiny", None, ["rahf", "tiny"]) == {}
    again = tab.on_stage(store, "rahf", "study", None, ["rahf", "tiny"])  # another preset
    assert again["filled"] == ["rahf", "study"] and "train-rahf-max-steps" in again
    other = tab.on_stage(store, "rahf", "tiny", None, ["dpo", "tiny"])  # another stage
    assert other["filled"] == ["rahf", "tiny"] and "train-rahf-max-steps" in other


def test_the_whole_pipeline_defaults_to_the_constitution_being_edited(store):
    run_all = filled(tab.on_preset(store, "run-all", "tiny", None), "run-all")
    assert run_all["constitution"]["value"] == "harmless-helpful"
    store.save_draft(store.version("honest").constitution, 1)  # an edit of another one
    run_all = filled(tab.on_preset(store, "run-all", "tiny", None), "run-all")
    assert run_all["constitution"]["value"] == "honest"


def test_every_command_has_a_form_fed_by_the_folders_of_earlier_stages(store, tmp_path):
    from pipeline.config.commands import COMMANDS

    # export writes a model beside the runs, not a run: the Runs tab's export panel runs it
    assert set(tab.FORMS) == set(COMMANDS) - {"export"}
    chains = tmp_path / "chains"
    job, _ = store.add_job("revise", ["revise"], str(chains), [])  # as the Chains tab leaves it
    store.set_job_status(job.id, "succeeded")
    choices = tab.field_choices(store, "sft")
    ((named, folder),) = choices["data"]  # a chain run feeds SFT directly
    assert (
        folder == str(chains) and named.startswith("chains · ") and named.endswith(f"job {job.id}")
    )
    assert str(tmp_path) not in named  # offered by name, never as a folder
    assert tab.field_choices(store, "sft-data")["chains"] == [(named, str(chains))]
    assert tab.field_choices(store, "label")["pairs"] == ["gold"]
    fit = tmp_path / "fit"
    job, _ = store.add_job("values-fit", ["values", "fit"], str(fit), [])
    store.set_job_status(job.id, "succeeded")
    assert tab.field_choices(store, "grpo")["reward_probe"] == []  # no probe saved in it
    (fit / "probe").mkdir(parents=True)
    (fit / "probe" / "probe.json").write_text("{}")
    assert tab.field_choices(store, "grpo")["reward_probe"] == [str(fit / "probe")]
    label = filled(tab.on_preset(store, "label", "tiny", None), "label")
    assert label["constitution"]["value"] == "harmless-helpful" and label["ensemble"]["value"] == 2


@pytest.mark.integration
def test_a_data_stage_launches_with_its_constitution_frozen(store):
    values = all_values("label", pairs="gold", constitution="honest", limit=1)
    folder = tab.on_preview(store, "label", None, *values)["previewed"]
    launched = tab.on_launch(store, "label", folder, *values)
    message, job_id = launched["message"], launched["selected"]
    assert f"Job {job_id} (label)" in message
    frozen = f"{folder}/constitution-input.yaml"
    assert f"constitution: {frozen}" in (tab.Path(folder) / "job.yaml").read_text()
    assert jobs.wait(store, job_id, timeout=300).status == "succeeded"


def test_schedules_are_plotted_raw_and_noisy_metrics_smoothed():
    rows = [
        {"step": 1, "loss": 2.0, "learning_rate": 1e-4},
        {"step": 2, "loss": 1.0, "learning_rate": 5e-5},
    ]
    frames = tab.metric_frames(rows, 0.6)
    assert set(frames["learning_rate"].series) == {"raw"}
    assert set(frames["loss"].series) == {"raw", "smoothed"}


@pytest.mark.integration
def test_the_preview_says_what_stops_a_launch_and_a_bad_launch_is_refused(store):
    shown = tab.on_preview(store, "sft", None, *all_values("sft"))
    preview, folder, checks = shown["command"], shown["previewed"], shown["checks"]
    again = tab.on_preview(store, "sft", folder, *all_values("sft"))
    assert again["previewed"] == folder  # kept while unused
    assert tab.on_preview(store, "dpo", folder, *all_values("dpo"))["previewed"] != folder
    assert preview.startswith("# not ready to launch")
    assert "data is required" in preview and "sft:" in preview
    assert f"python -m pipeline sft --config {folder}/job.yaml --out {folder}" in preview
    refused = tab.on_launch(store, "sft", folder, *all_values("sft", learning_rate=-1.0))
    assert list(refused) == ["message"]  # no job to watch, the table as it was
    message = refused["message"]
    assert (
        "learning_rate must be &gt; 0" in message
        or "learning_rate must be > 0" in html.unescape(message)
    )
    assert store.jobs() == []
    assert "data is required" in checks and "train-sft-data" in checks


def test_the_checks_name_and_mark_exactly_the_wrong_fields_and_warn_on_a_run_of_years(store):
    values = all_values(
        "sft",
        learning_rate=-1.0,
        batch_size=0,
        max_steps=999999999999,
        save_every=50,
        max_length=256,
        data="chains",
    )
    checks = tab.on_preview(store, "sft", None, *values)["checks"]
    text = html.unescape(checks)
    assert (
        "learning_rate must be > 0 (got -1.0)" in text
        and "batch_size must be at least 1 (got 0)" in text
    )
    assert "save_every" not in text and "max_length" not in text  # fine fields are not named
    assert "#train-sft-learning-rate input" in checks and "#train-sft-batch-size input" in checks
    assert "#train-sft-save-every" not in checks
    checks = tab.on_preview(
        store, "sft", None, *all_values("sft", max_steps=999999999999, data="chains")
    )["checks"]
    assert "Warning: max_steps = 999,999,999,999 would run about" in html.unescape(checks)
    assert "years" in checks
    checks = tab.on_preview(store, "sft", None, *all_values("sft", max_steps=20, data="chains"))[
        "checks"
    ]
    assert checks == ""


def test_bf16_asked_of_a_cpu_that_emulates_it_is_warned_about_and_auto_is_offered(
    store, monkeypatch
):
    from pipeline.core import precision

    assert tab.field_choices(store, "sft")["precision"] == ["auto", "fp32", "bf16"]
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    values = all_values("sft", max_steps=20, data="chains", precision="bf16")
    checks = html.unescape(tab.on_preview(store, "sft", None, *values)["checks"])
    assert "Warning: precision bf16 on this CPU, which has no bf16 instruction" in checks
    assert "auto takes fp32 here" in checks
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    assert tab.on_preview(store, "sft", None, *values)["checks"] == ""


@pytest.mark.integration
def test_a_launched_job_runs_in_the_previewed_folder_and_can_be_resumed(store, tmp_path):
    values = all_values("reward", data=str(tmp_path / "none"))
    folder = tab.on_preview(store, "reward", None, *values)["previewed"]
    launched = tab.on_launch(store, "reward", folder, *values)
    message, job_id = launched["message"], launched["selected"]
    assert f"Job {job_id} (reward)" in message and store.job(job_id).out_dir == folder
    again_folder = tab.on_preview(store, "reward", folder, *values)["previewed"]
    assert again_folder != folder  # the next preview names a folder no job has used
    ended = jobs.wait(store, job_id, timeout=300)
    assert ended.status == "failed"
    view = tab.job_view(store, job_id, 0.6)
    assert set(view) == set(tab.JOB_VIEW)
    assert "failed" in view["progress"] and view["artifacts"].startswith("<p>Artifacts of job")
    assert view["cancel"]["value"] == "Cancel job"
    assert view["health"] == "" and view["outliers"]["visible"] is False  # not a PPO job
    assert "not running or queued" in tab.on_cancel(store, job_id, None)["message"]
    resumed = tab.on_resume(store, job_id)
    again = resumed["selected"]
    assert again != job_id and f"resumes job {job_id}" in resumed["message"]
    jobs.wait(store, again, timeout=300)
    ticked = tab.on_tick(store, again, 0.6, [])
    rows = ticked["shown_rows"]
    assert [r[0] for r in rows] == [again] and ticked["jobs_table"]["value"] == rows  # resumed
    assert "jobs_table" not in tab.on_tick(store, again, 0.6, rows)  # unchanged: not re-sent
    assert rows[0][1].endswith(" · resumed")


def test_a_ppo_job_shows_its_health_and_its_reward_outliers_with_the_pms_nearest_pairs(
    store, tmp_path, tiny_folder
):
    from pipeline.config.commands import PPOJob, RewardJob, job_yaml
    from pipeline.data.preferences import LabelLog, Pair, Preference
    from pipeline.data.store import JobRecord

    labels = tmp_path / "labels"
    LabelLog(labels).append(
        [
            Preference(Pair(f"Topic {i}?", f"All about topic {i}.", "No."), 0.8, (), "j", "h")
            for i in range(4)
        ]
    )
    reward = tmp_path / "reward"
    reward.mkdir()
    (reward / "job.yaml").write_text(job_yaml(RewardJob(model=str(tiny_folder), data=str(labels))))
    ppo = tmp_path / "ppo"
    ppo.mkdir()
    (ppo / "job.yaml").write_text(
        job_yaml(PPOJob(model=str(tiny_folder), reward_adapter=str(reward / "adapter")))
    )
    metrics = [
        {"step": n, "reward_mean": r, "kl": k, "answer_length": 20, "refusal_rate": 0.0}
        for n, r, k in ((1, 0.1, 1), (2, 0.1, 2), (3, 0.6, 8), (4, 0.7, 9))
    ]
    (ppo / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    samples = [
        {"step": 4, "prompt": "Topic 2?", "answer": "All about topic 2.", "reward": 0.9},
        {"step": 4, "prompt": "Topic 0?", "answer": "Nothing.", "reward": -0.5},
    ]
    (ppo / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in samples))
    job = JobRecord(
        1,
        "ppo",
        "succeeded",
        ("ppo",),
        str(ppo),
        None,
        "2026-11-24T00:00:00",
        "2026-11-24T00:01:00",
        "",
        ("python",),
        "",
        "2026-11-24T00:00:01",
        (),
        None,
    )
    health, outliers = tab.rl_view(job, metrics)
    assert "may be exploiting the preference model" in health
    assert outliers["visible"] and list(outliers["value"]["extreme"]) == ["highest", "lowest"]
    shown = tab.outlier_html(job, 4, "highest")
    assert "step 4 · highest reward +0.9000" in shown and "Nearest training pairs" in shown
    assert shown.index("Topic 2?") < shown.index("Topic 0?") or "Topic 0?" not in shown


def test_a_preference_models_loss_is_drawn_beside_its_chance_line_on_whole_steps():
    rows = [{"step": s, "loss": 0.6931, "accuracy": 1.0} for s in (1, 2, 3)]
    frames = tab.metric_frames(rows, 0.6, tab.CHANCE["reward"])
    loss = frames["loss"]
    chance = loss[loss.series == "chance (ln 2)"]
    assert list(chance.step) == [1, 3] and all(abs(v - math.log(2)) < 1e-9 for v in chance.value)
    assert set(frames["accuracy"].series) == {"raw", "smoothed", "chance (0.5)"}
    assert "chance (ln 2)" not in set(tab.metric_frames(rows, 0.6)["loss"].series)  # SFT: none
    assert tab.step_axis(rows) == [0, 10] and tab.step_axis([{"step": 40}]) == [0, 40]
