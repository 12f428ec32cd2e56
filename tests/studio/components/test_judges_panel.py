"""The judges panel without a browser: refusals, a real comparison job on a tiny model, its
board and what auto then uses, in the panel and in the Preferences tab."""

import json

import pytest

from pipeline.evaluation.judge_choice import read_choice
from studio.components import judges_panel as panel
from studio.tabs import preferences as tab
from tests.studio.forms import score_steps


def label_pairs(store, n: int, shorter_every: int = 2) -> None:
    """n human labels: the kind answer chosen, shorter than the other every `shorter_every`."""
    for i in range(n):
        kind, cruel = f"kind gentle helpful reply {i}", f"cruel {i}"
        if i % shorter_every == 0:
            kind, cruel = f"kind {i}", f"cruel nasty harmful hurtful reply {i}"
        a, b = (kind, cruel) if i % 3 else (cruel, kind)
        store.set_human_label(f"id{i}", "A" if i % 3 else "B", f"Question {i}?", a, b)


def test_labels_no_judge_can_be_checked_on_are_refused_before_a_job(store):
    assert "Pick a constitution first" in panel.on_compare(store, "human", None, "embedded")
    refused = panel.on_compare(store, "human", "harmless-helpful", "embedded")
    assert "notice-error" in refused and "None of these pairs has a human A or B label" in refused
    label_pairs(store, 6)
    refused = panel.on_compare(store, "human", "harmless-helpful", "embedded")
    assert "needs at least 10 human A/B labels" in refused and "label 4 more" in refused
    assert not store.jobs()  # nothing launched
    board = panel.on_board_load(store)
    summary, rows = board["summary"], board["table"]
    assert "You have labelled 6 pair(s)" in summary and "label 34 more" in summary and rows == []
    assert panel.auto_choice(store).method == "logprob"
    assert [v for _, v in panel.label_sources(store)][:2] == ["human", "gold"]


@pytest.mark.integration
def test_a_comparison_runs_as_a_job_and_auto_then_uses_its_winner(store, tiny_folder):
    label_pairs(store, 30)
    launched = panel.on_compare(store, "human", "honest", str(tiny_folder))
    assert "Launched job" in launched
    job = store.jobs("judges-compare")[0]
    assert panel.jobs.wait(store, job.id, timeout=600).status == "succeeded", job.error
    ticked = panel.on_board_tick(store, None)
    summary, rows, shown = ticked["summary"], ticked["table"], ticked["shown"]
    assert shown == job.id and "30 human-labelled pairs" in summary and "auto uses" in summary
    assert [r[0] for r in rows] == [1, 2, 3] and all(r[-1] for r in rows)
    assert "%" in rows[0][2] and "/" in rows[0][4]
    assert list(panel.on_board_tick(store, job.id)) == ["progress"]  # the board is not re-sent
    choice = read_choice(job.out_dir)
    assert panel.auto_choice(store) == choice
    board = json.loads((panel.Path(job.out_dir) / "judges.json").read_text())
    assert rows[0][1] == board["rows"][0]["judge"]
    if choice.verified and choice.probe:  # the winning probe was fitted and saved for use
        assert (panel.Path(choice.probe) / "probe.json").exists()
    *_, final = score_steps(
        store,
        prompt="Question 1?",
        answer_a="kind 1",
        answer_b="cruel 1",
        constitution="honest",
        ensemble=0,
        model=str(tiny_folder),
        judge_choice=tab.AUTO,
    )
    assert choice.text in final["message"].replace("&#x27;", "'")
