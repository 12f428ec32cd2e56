"""The tournament end to end on the tiny model: answers, both judges, ratings per axis,
resume with more prompts, cancel, people as a judge, and bad input."""

import json

import pytest

from pipeline.config.commands import EvaluateJob, build_job
from pipeline.config.settings import FeedbackConfig
from pipeline.core.errors import ConfigError, DatasetError, ModelError
from pipeline.core.job_folder import JobCancelled
from pipeline.data.preferences import Pair, Preference, PrincipleLabel
from pipeline.evaluation.judges import PEOPLE, make_judge
from pipeline.evaluation.tournament import (
    AnswerLog,
    Match,
    MatchLog,
    judge_result,
    read_results,
    run_tournament,
    tournament_prompts,
)
from pipeline.model.loading import load_model
from pipeline.model.steering import save_direction
from pipeline.steering.extraction import extract_from_constitution
from pipeline.train.runtime import CancelFlag
from tests.records import harmless


def steered_policy(tiny_folder, tmp_path) -> str:
    loaded = load_model(str(tiny_folder))
    folder = save_direction(
        extract_from_constitution(loaded, harmless(), ["Hi?", "Help me."]), tmp_path / "direction"
    )
    return f"{tiny_folder}@steer:{folder}:6:1+2"


def tournament(
    tiny_folder,
    tmp_path,
    limit: int,
    cancel=None,
    humans=None,
    judges=None,
    progress=None,
    engine: str = "auto",
):
    job = build_job(
        EvaluateJob,
        {
            "base": str(tiny_folder),
            "policy": f"steered={steered_policy(tiny_folder, tmp_path)}",
            "judge": "logprob,representation",
            "constitution": "c",
            "limit": limit,
            "max_new_tokens": 6,
            "bootstrap": 50,
            "ensemble": 1,
            "engine": engine,
        },
    )
    loaded = load_model(str(tiny_folder))
    judges = judges or {
        "logprob": make_judge("logprob", str(tiny_folder), config=FeedbackConfig(ensemble=1)),
        "representation": make_judge("representation", str(tiny_folder)),
    }
    said = progress or (lambda text: None)
    return run_tournament(
        job,
        tmp_path / "eval",
        harmless(),
        judges,
        cancel or CancelFlag(),
        lambda text, *counts: said(text),
        humans,
    ), loaded


def test_a_tournament_rates_both_axes_and_resumes_with_more_prompts(tmp_path, tiny_folder):
    result, _ = tournament(tiny_folder, tmp_path, limit=1)
    assert result.policies == ["base", "steered"]
    assert [j.judge for j in result.judges] == ["logprob", "representation"]
    for j in result.judges:
        assert [a.axis for a in j.axes] == ["harmlessness", "helpfulness"]
        for axis in j.axes:
            assert {r["name"] for r in axis.ratings} == {"base", "steered"}
            base = next(r for r in axis.ratings if r["name"] == "base")
            assert base["elo"] == 0 and axis.comparisons == 1
            assert axis.matrix[0][1] is not None and axis.matrix[0][0] is None
    assert result.judges[1].position_decided == 0  # the representation judge is position-free
    assert len(result.agreement) == 1 and result.agreement[0]["judges"] == [
        "logprob",
        "representation",
    ]
    assert result.lineage["constitution"] == "harmless-helpful" and result.lineage["seed"] == 0
    assert read_results(tmp_path / "eval").policies == ["base", "steered"]
    assert "95% bootstrap interval" in (tmp_path / "eval" / "eval.md").read_text()
    more, _ = tournament(tiny_folder, tmp_path, limit=2)
    answers = (tmp_path / "eval" / "answers.jsonl").read_text().splitlines()
    comparisons = (tmp_path / "eval" / "comparisons.jsonl").read_text().splitlines()
    assert len(answers) == 2 * 4 and len(comparisons) == 2 * 4  # nothing done twice
    assert more.judges[0].axes[0].comparisons == 2


def test_a_cancelled_tournament_resumes_and_adds_nothing_twice(tmp_path, tiny_folder):
    class AfterFirstBatch(CancelFlag):
        @property
        def requested(self):
            return (tmp_path / "eval" / "answers.jsonl").exists()

        @requested.setter
        def requested(self, value):
            pass

    with pytest.raises(JobCancelled):
        tournament(tiny_folder, tmp_path, limit=1, cancel=AfterFirstBatch())
    assert len(AnswerLog(tmp_path / "eval").read()) == 2  # the base's answers only
    tournament(tiny_folder, tmp_path, limit=1)
    rows = [json.loads(x) for x in (tmp_path / "eval" / "answers.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["id"] for r in rows}) == 4


def test_what_crashed_processes_left_is_folded_in_and_not_done_again(tmp_path, tiny_folder):
    tournament(tiny_folder, tmp_path, limit=1)
    run = tmp_path / "eval"
    for name in ("answers", "comparisons"):  # as two processes left them, killed before folding
        rows = (run / f"{name}.jsonl").read_text().splitlines(keepends=True)
        (run / f"{name}.rank0.jsonl").write_text("".join(rows[::2]))
        (run / f"{name}.rank1.jsonl").write_text("".join(rows[1::2]))
        (run / f"{name}.jsonl").unlink()
    result, _ = tournament(tiny_folder, tmp_path, limit=1)
    assert sorted(p.name for p in run.glob("*.jsonl")) == ["answers.jsonl", "comparisons.jsonl"]
    assert len((run / "answers.jsonl").read_text().splitlines()) == 4  # nothing answered again
    assert len((run / "comparisons.jsonl").read_text().splitlines()) == 2 * 2  # nor judged
    assert result.judges[0].axes[0].comparisons == 1


def test_people_join_as_their_own_judge(tmp_path, tiny_folder):
    tournament(tiny_folder, tmp_path, limit=1)
    first = MatchLog(tmp_path / "eval").read()[0]
    result, _ = tournament(tiny_folder, tmp_path, limit=1, humans={first.preference.pair.id: "A"})
    people = next(j for j in result.judges if j.judge == PEOPLE)
    axis = next(a for a in people.axes if a.comparisons)
    winner = first.a
    assert next(r for r in axis.ratings if r["name"] == winner)["elo"] >= 0
    assert axis.matrix[result.policies.index(first.a)][result.policies.index(first.b)] == 1.0


def test_a_judge_decided_by_position_is_flagged():
    pair = Pair("q", "x", "y")
    flipped = Preference(pair, 0.5, (PrincipleLabel("p", 0.9, 0.1, 1, 1),), "j", "h")
    prompts = tournament_prompts(["red-team"], "test", 1)
    comparisons = [Match("j", prompts[0].id, "base", "b", flipped)]
    result = judge_result("j", comparisons, ["base", "b"], prompts, 20, 0)
    assert result.position_decided == 1.0 and "carry no signal" in result.warning


def test_bad_tournaments_are_refused(tmp_path, tiny_folder):
    with pytest.raises(ConfigError, match="at least one policy besides the base"):
        build_job(EvaluateJob, {"constitution": "c"})
    with pytest.raises(ConfigError, match="the pm judge needs reward_adapter"):
        build_job(EvaluateJob, {"policy": "a=x", "judge": "pm"})
    with pytest.raises(ConfigError, match="judge must be one of logprob, representation, pm"):
        build_job(EvaluateJob, {"policy": "a=x", "judge": "coin", "constitution": "c"})
    plain = tmp_path / "plain.txt"
    plain.write_text("one prompt\nanother\n")
    with pytest.raises(DatasetError, match="plain.txt has no test split"):
        tournament_prompts([str(plain)], "test", 0)
    other = tmp_path / "other-adapter"
    other.mkdir()
    (other / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "someone/another-model"})
    )
    job = build_job(
        EvaluateJob,
        {
            "base": str(tiny_folder),
            "policy": f"other={other}",
            "judge": "representation",
            "constitution": "c",
            "limit": 1,
            "max_new_tokens": 4,
            "bootstrap": 20,
        },
    )
    with pytest.raises(ModelError, match="was trained on someone/another-model"):
        run_tournament(
            job,
            tmp_path / "e",
            harmless(),
            {"r": make_judge("representation", str(tiny_folder))},
            CancelFlag(),
            lambda *a: None,
        )


def test_an_empty_answer_is_judged_as_no_answer(tmp_path, tiny_folder):
    from pipeline.evaluation.tournament import NO_ANSWER, Answer, judge_all

    prompts = tournament_prompts(["red-team"], "test", 1)
    AnswerLog(tmp_path).append(
        [
            Answer("base", prompts[0].id, "", "stop"),
            Answer("other", prompts[0].id, "A real answer.", "stop"),
        ]
    )
    judge_all(
        {"r": make_judge("representation", str(tiny_folder))},
        ["base", "other"],
        prompts,
        harmless(),
        0,
        tmp_path,
        CancelFlag(),
        lambda *a: None,
    )
    [c] = MatchLog(tmp_path).read()
    assert c.preference.pair.response_a == NO_ANSWER and c.preference.labels  # judged


@pytest.mark.integration
def test_two_processes_share_a_tournament_and_give_its_results(tmp_path, tiny_folder):
    """`evaluate --processes 2` runs itself again through `accelerate launch` (two CPU
    processes here): each answers and judges its share, the first rates; the records match
    a one-process run's."""
    from pipeline import cli
    from tests.records import SHIPPED

    args = [
        "--workspace",
        str(tmp_path / "ws"),
        "evaluate",
        "--base",
        str(tiny_folder),
        "--policy",
        f"steered={steered_policy(tiny_folder, tmp_path)}",
        "--judge",
        "logprob",
        "--judge",
        "representation",
        "--constitution",
        str(SHIPPED / "harmless-helpful.yaml"),
        "--limit",
        "2",
        "--max-new-tokens",
        "6",
        "--bootstrap",
        "50",
        "--ensemble",
        "1",
    ]
    assert cli.main(args + ["--out", str(tmp_path / "one")]) == 0
    assert cli.main(args + ["--processes", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = read_results(tmp_path / "one"), read_results(tmp_path / "two")
    assert (one.lineage["processes"], two.lineage["processes"]) == (1, 2)
    assert sorted(p.name for p in (tmp_path / "two").glob("*.jsonl")) == [
        "answers.jsonl",
        "comparisons.jsonl",
    ]  # each process's own log folded in
    texts = [{a.key: a.text for a in AnswerLog(tmp_path / run).read()} for run in ("one", "two")]
    assert texts[0] == texts[1] and len(texts[0]) == 8  # 2 policies × 4 prompts
    labels = [
        {c.key: c.preference.p_a for c in MatchLog(tmp_path / run).read()} for run in ("one", "two")
    ]
    assert labels[0].keys() == labels[1].keys() and len(labels[0]) == 8  # 2 judges × 4
    assert all(abs(labels[0][k] - labels[1][k]) < 1e-5 for k in labels[0])
    for a, b in zip(one.judges, two.judges):
        for x, y in zip(a.axes, b.axes):
            assert [r["name"] for r in x.ratings] == [r["name"] for r in y.ratings]
            assert [r["elo"] for r in x.ratings] == pytest.approx(
                [r["elo"] for r in y.ratings], abs=0.01
            )  # Elo points


@pytest.mark.integration
def test_a_cancel_reaches_every_process_of_a_tournament_and_the_rerun_resumes(
    tmp_path, tiny_folder
):
    """Cancelled while answering, neither process is left waiting at a barrier: the job ends
    'cancelled'; run again, it finishes and nothing is answered or judged twice."""
    import time

    from pipeline.core import job_folder
    from pipeline.core.shards import read_all
    from pipeline.data.store import Store
    from pipeline.runner import jobs
    from tests.records import SHIPPED

    store = Store(tmp_path / "ws")
    out = tmp_path / "eval"
    args = [
        "evaluate",
        "--base",
        str(tiny_folder),
        "--policy",
        f"steered={steered_policy(tiny_folder, tmp_path)}",
        "--judge",
        "logprob",
        "--constitution",
        str(SHIPPED / "harmless-helpful.yaml"),
        "--limit",
        "6",
        "--max-new-tokens",
        "48",
        "--bootstrap",
        "20",
        "--ensemble",
        "1",
        "--processes",
        "2",
        "--out",
        str(out),
    ]
    progress = out / job_folder.PROGRESS_FILE

    def answering() -> bool:
        return progress.exists() and "answers of" in progress.read_text()

    job = jobs.launch(store, "evaluate", args, out, processes=2)
    deadline = time.time() + 120
    while time.time() < deadline and not answering():
        time.sleep(0.1)
    jobs.cancel(store, job.id)
    assert jobs.wait(store, job.id, timeout=120).status == "cancelled", job_folder.log_tail(out)
    assert len(read_all(AnswerLog(out))) < 2 * 12  # stopped part way
    again = jobs.resume(store, job.id)
    assert jobs.wait(store, again.id, timeout=600).status == "succeeded", job_folder.log_tail(out)
    rows = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["id"] for r in rows}) == 2 * 12  # 2 policies × 6 prompts × 2 sets
    compared = [json.loads(x)["id"] for x in (out / "comparisons.jsonl").read_text().splitlines()]
    assert len(compared) == len(set(compared)) == 12
    assert not list(out.glob("*.rank*.jsonl"))
