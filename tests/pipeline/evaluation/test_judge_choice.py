"""judge auto: the judge that agrees with people beyond length is chosen and kept; without
one the labels say they are unverified, and the stages after them repeat it."""

import json

import pytest

from pipeline.data.preferences import Pair, Preference
from pipeline.evaluation.judge_choice import (
    CHOICE_FILE,
    NOTE_FILE,
    JudgeChoice,
    domain_check,
    from_board,
    labels_note,
    read_choice,
    save_choice,
    training_note,
    unverified,
)
from tests.pipeline.evaluation.test_leaderboard import judge, longer, pairs_people


def board_of(*judges):
    from pipeline.evaluation.leaderboard import leaderboard

    data = pairs_people(30, 10)
    return leaderboard("human", data, [judge(name, data, pick) for name, pick in judges])


def test_the_best_verified_judge_is_chosen_and_none_means_unverified(tmp_path):
    board = board_of(("always longer", longer), ("people's twin", lambda pair, a: a))
    choice = from_board(board, str(tmp_path / "probe"))
    assert choice.verified and choice.judge == "people's twin" and choice.pairs == 40
    assert choice.text.startswith(
        "judge: people's twin, chosen by agreement with 40 human labels (human): 100%"
    )
    save_choice(choice, tmp_path)
    assert read_choice(tmp_path) == choice and labels_note(tmp_path) == choice.text
    none = from_board(board_of(("always longer", longer)), "")
    assert not none.verified and none.method == "logprob"
    assert none.text == (
        "labels unverified: no judge agrees with your 40 human labels beyond "
        "answer length and chance; label pairs where people chose the shorter "
        "answer too, or try another constitution"
    )
    few = unverified("human", 12, "too few")
    assert "label 28 more pairs in the Preferences tab's labelling queue" in few.text
    (tmp_path / "other").mkdir()
    assert labels_note(tmp_path / "other").startswith("labels unverified: the judge of")
    (tmp_path / "other" / CHOICE_FILE).write_text("{not json")
    assert read_choice(tmp_path / "other") is None


def prefs_picking(longer_share: float, n: int = 40) -> list[Preference]:
    out = []
    for i in range(n):
        a, b = f"a long answer with many words {i}", f"short {i}"
        pick_longer = i < longer_share * n
        out.append(Preference(Pair(f"Q{i}?", a, b), 0.8 if pick_longer else 0.2, (), "probe", ""))
    return out


def test_the_domain_check_flags_a_probe_that_follows_length_beyond_its_fit_data():
    warning = domain_check(prefs_picking(0.95), fitted_longer=0.6)
    assert (
        warning.startswith(
            "this probe mostly follows answer length here: it picks the longer answer in 95%"
        )
        and "people chose the longer answer in 60%" in warning
    )
    assert domain_check(prefs_picking(0.65), fitted_longer=0.6) == ""
    assert "picks the shorter answer in 95%" in domain_check(prefs_picking(0.05), fitted_longer=0.5)
    assert domain_check(prefs_picking(0.95, n=6), fitted_longer=0.5) == ""  # too few to tell
    assert domain_check(prefs_picking(0.95), fitted_longer=None) == ""


def test_training_on_labels_carries_whether_they_were_verified(tmp_path):
    from pipeline.config.commands import PPOJob, RewardJob

    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "labels.jsonl").write_text("")
    note = training_note(RewardJob(data=str(labels)))
    assert note["verified"] is False and note["note"].startswith("labels unverified")
    save_choice(JudgeChoice("representation", "p", True, "probe", "90%", "human", 50, "ok"), labels)
    assert training_note(RewardJob(data=str(labels)))["verified"] is True
    reward = tmp_path / "reward"
    reward.mkdir()
    (reward / NOTE_FILE).write_text(json.dumps(note))
    assert training_note(PPOJob(reward_adapter=str(reward / "adapter")))["verified"] is False
    assert training_note(RewardJob(data=str(tmp_path / "nowhere"))) is None


@pytest.mark.integration
def test_label_auto_picks_a_probe_from_human_labels_and_keeps_it_on_resume(tmp_path, tiny_folder):
    from tests.pipeline.test_cli import run

    rows = []
    for i in range(30):
        kind, cruel = f"kind gentle helpful reply {i}", f"cruel {i}"
        if i % 2:  # the preferred answer is the shorter one half of the time
            kind, cruel = f"kind {i}", f"cruel nasty harmful hurtful reply {i}"
        rows.append({"prompt": f"Question {i}?", "chosen": kind, "rejected": cruel})
    humans = tmp_path / "humans.jsonl"
    humans.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps(
                {"prompt": f"New {i}?", "response_a": f"kind {i} words", "response_b": f"cruel {i}"}
            )
            + "\n"
            for i in range(6)
        )
    )
    ws, out = tmp_path / "ws", tmp_path / "labels"
    args = (
        "label",
        "--pairs",
        str(pairs),
        "--constitution",
        "honest",
        "--model",
        str(tiny_folder),
        "--judge-method",
        "auto",
        "--human-labels",
        str(humans),
        "--out",
        str(out),
    )
    proc = run(*args, workspace=ws)
    choice = read_choice(out)
    assert choice.verified and choice.method == "representation" and choice.pairs == 30
    assert choice.probe == str(out / "probe") and (out / "probe" / "probe.json").exists()
    assert json.loads((out / "judges.json").read_text())["best"] == choice.judge
    assert choice.text in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge"] == choice.text
    labels = [json.loads(x) for x in (out / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 6 and all(
        r["feedback_model"].startswith("representation") for r in labels
    )
    assert all(r["p_a"] > 0.5 for r in labels)  # the kind answer, as people chose
    board = (out / "judges.json").stat().st_mtime_ns
    again = run(*args, workspace=ws)
    assert choice.text in again.stdout and (out / "judges.json").stat().st_mtime_ns == board
    empty = run(
        "label",
        "--pairs",
        str(pairs),
        "--constitution",
        "honest",
        "--model",
        str(tiny_folder),
        "--judge-method",
        "auto",
        "--out",
        str(tmp_path / "plain"),
        workspace=ws,
    )
    assert (
        "labels unverified: there are no human A/B labels in 'human'; label 40 more" in empty.stdout
    )
    assert read_choice(tmp_path / "plain").method == "logprob"


def test_an_evaluation_auto_judge_is_the_one_its_label_run_chose(tmp_path):
    from pipeline.config.commands import EvaluateJob
    from pipeline.core.errors import ConfigError
    from pipeline.runner.evaluate import evaluation_judges

    save_choice(JudgeChoice("representation", "/p", True, "probe", "", "human", 40, ""), tmp_path)
    job = EvaluateJob(
        policy="x=y",
        constitution="honest",
        judge="auto,pm",
        reward_adapter="pm",
        judge_from=str(tmp_path),
    )
    assert evaluation_judges(job) == [("representation", "/p"), ("pm", "")]
    with pytest.raises(ConfigError, match="has no readable judge.json"):
        evaluation_judges(
            EvaluateJob(
                policy="x=y", constitution="honest", judge="auto", judge_from=str(tmp_path / "none")
            )
        )
    assert "judge_from" in " ".join(
        EvaluateJob(policy="x=y", constitution="c", judge="auto").problems()
    )
