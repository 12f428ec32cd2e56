"""Principles as judges on human labels: per-principle rows, near-duplicates and the draft,
by hand; the command on a tiny model; the shipped catalogue."""

import json

import pytest

from pipeline.data.constitution import Constitution, Principle, load_constitution
from pipeline.data.preferences import Preference, PrincipleLabel
from pipeline.evaluation.principles import (
    CATALOGUE,
    draft_constitution,
    near_duplicates,
    per_principle,
    rank,
)
from tests.pipeline.evaluation.test_leaderboard import length_pairs_file, longer, pairs_people


def principle(pid: str) -> Principle:
    return Principle(pid, pid.title(), "Critique?", "Revise.", "Which is better?")


def records(data, picks: dict[str, callable]) -> list[Preference]:
    """Records where each principle's P(A) (both orders) is 0.9 where its pick says A."""
    out = []
    for pair, y in zip(data.pairs, data.y.tolist()):
        labels = tuple(
            PrincipleLabel(pid, p, p, 1.0, 1.0)
            for pid, pick in picks.items()
            for p in [0.9 if pick(pair, bool(y)) else 0.1]
        )
        out.append(Preference(pair, sum(x.p_a_ab for x in labels) / len(labels), labels, "m", "h"))
    return out


def test_each_principle_is_a_judge_and_the_draft_keeps_the_ones_people_agree_with():
    data = pairs_people(30, 10)
    mine = Constitution("mine", (principle("length"), principle("people")))
    catalogue = Constitution("cat", (principle("twin"), principle("contrary")))
    people = lambda pair, a: a  # noqa: E731
    labelled = {
        "representation": {
            "constitution": records(data, {"length": longer, "people": people}),
            "catalogue": records(data, {"twin": people, "contrary": lambda pair, a: not a}),
        }
    }
    ranking = rank(data, "human", mine, catalogue, labelled)
    order = [r.principle for r in ranking.rows]
    assert set(order[:2]) == {"people", "twin"} and order[-1] == "contrary"
    assert ranking.draft_ids == ("people", "twin")  # yours first among equals
    assert ranking.duplicates == (("people", "twin", 1.0),)
    # the current constitution is the mean of length and people: where they disagree (people
    # chose the shorter answer) it is 0.5, no preference
    assert ranking.current.agreement == 30 / 40
    assert ranking.draft_row.agreement == 1
    draft = draft_constitution(ranking, mine, catalogue)
    assert draft.name == "mine-ranked" and [p.id for p in draft.principles] == ["people", "twin"]
    assert json.loads(json.dumps(ranking.as_json()))["draft"] == ["people", "twin"]
    judged = per_principle(labelled["representation"]["catalogue"], "representation")
    assert near_duplicates(judged) == []


def test_the_shipped_catalogue_has_at_least_40_principles_with_all_three_texts():
    catalogue = load_constitution(CATALOGUE)
    assert len(catalogue.principles) >= 40
    assert all(
        p.critique_request and p.revision_request and p.preference_question
        for p in catalogue.principles
    )
    tags = {t for p in catalogue.principles for t in p.tags}
    assert {"harmlessness", "helpfulness", "honesty", "autonomy", "privacy", "fairness"} <= tags


@pytest.mark.integration
def test_principles_rank_from_the_command_line(tmp_path, tiny_folder):
    from pipeline.data.constitution import to_yaml
    from pipeline.data.store import SHIPPED_CONSTITUTIONS
    from tests.pipeline.test_cli import run

    pairs = length_pairs_file(tmp_path / "pairs.jsonl", 20, shorter_every=2)
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(to_yaml(Constitution("cat", (principle("alpha"), principle("beta")))))
    out = tmp_path / "rank"
    proc = run(
        "principles",
        "rank",
        "--labels",
        str(pairs),
        "--constitution",
        "honest",
        "--catalogue",
        str(catalogue),
        "--model",
        str(tiny_folder),
        "--out",
        str(out),
        workspace=tmp_path / "ws",
    )
    ranking = json.loads((out / "principles.json").read_text())
    honest = load_constitution(SHIPPED_CONSTITUTIONS / "honest.yaml")
    assert len(ranking["rows"]) == 2 * (len(honest.enabled_principles) + 2)  # both methods
    assert {r["method"] for r in ranking["rows"]} == {"representation", "logprob"}
    assert all(r["verdict"]["text"] for r in ranking["rows"])
    assert "Principles as judges on 20 human-labelled pairs" in proc.stdout
    assert ("draft (" in proc.stdout) == (out / "draft.yaml").exists()
