"""The Train tab's handlers, without a browser."""
import dataclasses
import html

from pipeline import jobs
from studio import train_tab as tab



def all_values(stage: str, **changes):
    """Every form's values in layout order, with stage `stage`'s form changed."""
    raw = []
    for name, cls in tab.FORMS.items():
        for f in dataclasses.fields(cls):
            raw.append(changes.get(f.name, f.default) if name == stage else f.default)
    return raw


def test_a_stage_reads_its_own_form_out_of_all_of_them():
    values = tab.stage_values("reward", all_values("reward", data="labels", max_steps=7.0))
    assert values["data"] == "labels" and values["max_steps"] == 7 and values["lora_r"] == 8
    assert tab.stage_values("sft", all_values("reward", data="labels"))["data"] == ""


def test_a_preset_fills_only_the_chosen_stage_and_offers_earlier_outputs(store):
    updates = tab.on_preset(store, "ppo", "tiny")
    assert len(updates) == sum(len(dataclasses.fields(c)) for c in tab.FORMS.values())
    offset = sum(len(dataclasses.fields(tab.FORMS[s])) for s in list(tab.FORMS)[:list(tab.FORMS).index("ppo")])
    ppo = {f.name: u for f, u in zip(dataclasses.fields(tab.FORMS["ppo"]), updates[offset:])}
    assert ppo["steps"]["value"] == 6 and ppo["prompts"]["choices"] == ["red-team", "helpful"]
    assert updates[0] == {"__type__": "update"}  # run-all's form is left as it is
    description, *visible = tab.on_stage(store, "dpo", "tiny")[:1 + len(tab.FORMS)]
    assert "DPO" in description["value"]
    assert [v["visible"] for v in visible] == [s == "dpo" for s in tab.FORMS]


def test_the_preview_says_what_stops_a_launch_and_a_bad_launch_is_refused(store):
    preview = tab.on_preview(store, "sft", *all_values("sft"))["value"]
    assert preview.startswith("# not ready to launch") and "data is required" in preview
    assert "python -m pipeline sft --config" in preview
    message, watched, table = tab.on_launch(store, "sft", *all_values("sft", learning_rate=-1.0))
    assert "learning_rate must be &gt; 0" in message or "learning_rate must be > 0" in html.unescape(message)
    assert store.jobs() == []


def test_a_launched_job_is_watched_and_can_be_resumed_after_it_fails(store, tmp_path):
    message, job_id, _ = tab.on_launch(store, "reward", *all_values("reward", data=str(tmp_path / "none")))
    assert f"Job {job_id} (reward)" in message
    ended = jobs.wait(store, job_id, timeout=300)
    assert ended.status == "failed"
    bar, *rest = tab.job_view(store, job_id, 0.6)
    assert "failed" in bar and rest[-1].startswith("<p>Artifacts of job")
    assert "not running or queued" in tab.on_cancel(store, job_id)
    text, again = tab.on_resume(store, job_id)
    assert again != job_id and f"resumes job {job_id}" in text
    jobs.wait(store, again, timeout=300)
    table, rows, *_ = tab.on_tick(store, again, 0.6, [])
    assert [r[0] for r in rows] == [again, job_id] and table["value"] == rows
