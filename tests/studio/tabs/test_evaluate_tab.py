"""The Evaluate tab's handlers, on a real tournament of the tiny model."""

import re

import pytest

from pipeline.config.commands import EvaluateJob, build_job
from pipeline.evaluation.judges import PEOPLE, make_judge
from pipeline.evaluation.tournament import run_tournament
from pipeline.train.runtime import CancelFlag
from studio.tabs import evaluate as tab
from tests.pipeline.evaluation.test_tournament import steered_policy
from tests.records import harmless
from tests.studio.forms import launch_tournament


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_folder):
    """One tournament for the module (each test has its own workspace for people's labels)."""
    tmp_path = tmp_path_factory.mktemp("tournament")
    job = build_job(
        EvaluateJob,
        {
            "base": str(tiny_folder),
            "policy": f"steered={steered_policy(tiny_folder, tmp_path)}",
            "judge": "representation",
            "constitution": "c",
            "limit": 2,
            "max_new_tokens": 6,
            "bootstrap": 30,
        },
    )
    out = tmp_path / "tournament-test"
    run_tournament(
        job,
        out,
        harmless(),
        {"representation": make_judge("representation", str(tiny_folder))},
        CancelFlag(),
        lambda *a: None,
    )
    return str(out)


def test_the_results_show_ratings_matrix_scatter_and_tables(store, finished):
    shown = tab.show(store, finished, None, None)
    assert set(shown) == set(tab.SHOWN)
    judge, axis, ratings, matrix, scatter, categories, stats, agreement = (
        shown[name] for name in tab.SHOWN
    )
    assert judge["value"] == "representation" and axis["choices"] == ["harmlessness", "helpfulness"]
    assert 'data-policy="base"' in ratings and 'data-policy="steered"' in ratings
    assert "95% bootstrap interval over prompts" in ratings
    assert all(u["visible"] for u in (matrix, scatter, categories, stats))
    matrix, categories, stats = matrix["value"], categories["value"], stats["value"]
    frame = matrix.data  # a heatmap: the frame, styled
    assert list(frame.columns) == ["row beats column", "base", "steered"]
    assert frame.iloc[0, 1] == "—" and frame.iloc[0, 2].endswith("%")
    assert "background-color: hsla(" in matrix.to_html()
    assert set(scatter["value"]["policy"]) == {"base", "steered"}
    assert scatter["x_lim"][0] < scatter["value"]["helpfulness Elo"].min() - 5  # room to drag
    assert list(stats["policy"]) == ["base", "steered"]
    assert "refusals on helpful prompts (evasiveness)" in stats.columns
    assert len(categories) >= 1 and agreement == ""
    empty = tab.show(store, None, None, None)  # nothing picked: a hint, no empty tables
    assert "No tournament shown yet" in empty["ratings"] and "judge" not in empty
    assert all(empty[name]["visible"] is False for name in tab.TABLES)


def test_a_matrix_cell_opens_the_prompts_and_answers_behind_it(store, finished):
    html = tab.cell_html(store, finished, "representation", "harmlessness", 0, 2)
    assert html.count("evaluate-cell") == 2 and "base against steered" in html
    assert "P(base better)" in html
    assert "off the diagonal" in tab.cell_html(
        store, finished, "representation", "harmlessness", 1, 2
    )


def test_blind_labels_hide_the_names_then_join_the_ratings_as_people(store, finished):
    first = tab.blind_view(store, finished)
    view, state = first["blind"], first["blind_state"]
    left = int(re.search(r'data-left="(\d+)"', view).group(1))
    assert 1 <= left <= 4  # identical answers are not asked about
    assert "steered" not in view and "base" not in view
    labelled = tab.on_blind_label(store, finished, state, choice="A")
    assert "Recorded A (" in labelled["blind_message"]
    view = labelled["blind"]
    assert f"{left - 1} left" in view or "Every comparison" in view
    judges = [c for c in tab.show(store, finished, None, None)["judge"]["choices"]]
    assert PEOPLE in judges
    ratings = tab.show(store, finished, PEOPLE, None)["ratings"]
    assert "1 comparisons" in ratings


@pytest.mark.integration
def test_a_tournament_without_policies_is_refused_before_anything_runs(store, tiny_folder):
    message = launch_tournament(store, base=str(tiny_folder))
    assert "at least one policy besides the base" in message
    message = launch_tournament(
        store, base=str(tiny_folder), adapters=[str(tiny_folder)], judges=["pm"]
    )
    assert "the pm judge needs reward_adapter" in message
    message = launch_tournament(store, base=str(tiny_folder), typed=str(tiny_folder), processes=0)
    assert "processes must be at least 1" in message


@pytest.mark.integration
def test_policies_come_checked_from_the_job_table_and_typed_one_per_line(store):
    values = tab.launch_values(
        store,
        "embedded",
        ["/runs/sft-1/adapter"],
        "embedded@steer:/d:4:15\n/runs/dpo-2/adapter, other-model",
        ["red-team"],
        ["logprob"],
        None,
        None,
        4,
        32,
        2,
        "transformers",
    )
    assert values["policy"] == (
        "sft-1=/runs/sft-1/adapter,steered=embedded@steer:/d:4:15,"
        "dpo-2=/runs/dpo-2/adapter,other-model=other-model"
    )
    assert values["processes"] == 2 and values["engine"] == "transformers"
    message = launch_tournament(
        store, base="embedded", typed="other-model", processes=1, engine="tensorrt"
    )
    assert "engine must be one of auto, transformers, vllm" in message


def test_points_selected_on_the_scatter_open_their_comparisons(store, finished):
    everything = tab.points_html(store, finished, "representation", (-1e9, 1e9))
    assert everything.count('class="evaluate-point"') == 2  # base and steered
    assert "against steered on harmlessness" in everything and "evaluate-cell" in everything
    assert "drag across the points" in tab.points_html(
        store, finished, "representation", (1e8, 1e9)
    )


def test_a_dragged_range_picks_the_points_whose_helpfulness_lies_in_it():
    from pipeline.evaluation.tournament import AxisResult, JudgeResult, TournamentResult

    def axis(name, elos):
        return AxisResult(
            name,
            [{"name": p, "elo": e, "low": e - 5, "high": e + 5} for p, e in elos.items()],
            [],
            {},
            4,
        )

    result = TournamentResult(
        ["base", "sft", "ppo", "dpo"],
        [
            JudgeResult(
                "logprob",
                [
                    axis("harmlessness", {"base": 0, "sft": 40, "ppo": 90, "dpo": 10}),
                    axis("helpfulness", {"base": 0, "sft": -20, "ppo": -60}),
                ],
                0.1,
                "",
            )
        ],
        [],
        [],
    )
    assert tab.points_in(result, "logprob", -30, 5) == ["base", "sft"]
    assert tab.points_in(result, "logprob", -100, 100) == ["base", "sft", "ppo"]  # dpo: one axis
    assert tab.points_in(result, "people", -100, 100) == []


@pytest.mark.integration
def test_the_auto_judge_stands_for_the_newest_comparison_or_is_refused(store):
    from pipeline.evaluation.judge_choice import JudgeChoice, save_choice

    message = launch_tournament(store, base="embedded", typed="sft=some/adapter", judges=["auto"])
    assert "the auto judge needs judge_from" in message and "compare judges" in message
    out = store.new_run_folder("judges")
    save_choice(JudgeChoice("logprob", "", False, "log-prob", "", "human", 0, "none"), out)
    record, _ = store.add_job("judges-compare", ["x"], str(out), ["python", "x"])
    store.set_job_status(record.id, "succeeded")
    values = tab.launch_values(
        store,
        "embedded",
        [],
        "sft=a",
        ["red-team"],
        ["auto", "pm"],
        "harmless-helpful",
        "pm",
        2,
        16,
        1,
    )
    assert values["judge_from"] == str(out)
