"""The Chains tab's handlers, without a browser."""

import pytest

from pipeline.cai.critique import ChainLog
from pipeline.cli import build_parser
from studio.tabs import chains as tab
from tests.records import chain_record
from tests.studio.forms import chain_steps


def test_the_page_opens_with_the_default_constitution_and_examples(store):
    page = tab.on_page_load(store)
    a, b, bar, runs = (
        page[k] for k in ("constitution_a", "constitution_b", "progress", "run_folder")
    )
    assert a["value"] == "harmless-helpful" and b["value"] == tab.NONE and bar == ""
    assert runs["choices"] == [] and runs["value"] is None
    label, record = next(iter(tab.red_team_examples().items()))
    assert tab.on_example(label) == record.prompt and tab.on_example(None) == ""
    assert tab.prompt_record(record.prompt).category == record.category
    assert tab.prompt_record("my own prompt").category == "studio"


def test_a_chain_streams_stage_by_stage_and_an_empty_prompt_is_refused(store, tiny_folder):
    refused = chain_steps(store, text="  ", model_name="embedded", new_tokens=8)[0]
    assert "Type or pick a prompt first" in refused["message"] and refused["view_a"] == ""
    steps = chain_steps(store, name_b="honest", model_name=str(tiny_folder))
    assert len(steps) == 4  # loading the model, answer, critique, revision
    assert list(steps[0]) == ["message"] and "Loading the model" in steps[0]["message"]
    assert "Generating round 1 of 1: critiques (step 2 of 3)" in steps[1]["message"]
    assert "remaining about" in steps[1]["message"]
    view_a, view_b, principles, message = (
        steps[-1][k] for k in ("view_a", "view_b", "principle", "message")
    )
    assert "harmless-helpful" in view_a and "honest" in view_b["value"] and view_b["visible"]
    assert message == "" and all(":" in p for p in principles["choices"])
    assert "drawn at random (weight" in view_a and "from every enabled principle" in view_a
    alone = chain_steps(store, model_name=str(tiny_folder))[-1]
    assert alone["view_b"]["visible"] is False


def test_a_chain_says_which_engine_writes_it(store, tiny_folder):
    from pipeline.model import ct2_engine

    plain = chain_steps(store, model_name=str(tiny_folder), engine="fp32")
    assert "(step 2 of 3) · elapsed" in plain[1]["message"]  # asked for by name: nothing to say
    if not ct2_engine.available():
        pytest.skip(ct2_engine.INSTALL)
    # a live chain samples on int8, on an engine of the run's own, where its seed reproduces
    sampled = chain_steps(store, model_name=str(tiny_folder), temp=0.7, engine="auto")
    assert "(step 2 of 3) on the int8 engine (sampled: its seed reproduces" in sampled[1]["message"]
    again = chain_steps(store, model_name=str(tiny_folder), temp=0.7, engine="auto")
    assert again[-1]["view_a"] == sampled[-1]["view_a"]
    greedy = chain_steps(store, model_name=str(tiny_folder), engine="auto")
    assert "(step 2 of 3) on the int8 engine (fp32 for long prompts) ·" in greedy[1]["message"]
    assert "harmless-helpful" in greedy[-1]["view_a"]
    steered = chain_steps(store, model_name=str(tiny_folder), engine="int8", coefficient=4.0)
    assert "engine int8 cannot run: steering runs on the fp32 engine" in steered[-1]["message"]


def test_relevant_principles_only_draws_from_the_prompts_category(store, tiny_folder):
    label, record = next(
        (k, r) for k, r in tab.red_team_examples().items() if r.category == "cybercrime"
    )
    view = chain_steps(
        store, text=record.prompt, model_name=str(tiny_folder), n_rounds=2, relevant=True
    )[-1]["view_a"]
    assert "from the principles tagged &#x27;cybercrime&#x27;" in view
    drawn = {p for p in ("illegal-activity", "privacy") if f'data-principle="{p}"' in view}
    assert drawn and view.count('class="chain-card chain-round"') == 2
    assert view.count("<details") == 2


def test_the_chain_view_diffs_side_by_side_folds_earlier_rounds_and_flags_meta_text():
    chain = chain_record(
        initial="Pick the lock with a tension wrench and a rake.",
        revisions=["Pick the lock with a rake.", "The response does not contain any instructions."],
    )
    view = tab.chain_html(chain, "t")
    assert view.count("<details") == 2 and view.count(" open>") == 1  # the last round open
    first_round = view.split("Round 2")[0]
    assert '<del class="wd-del">tension wrench and a </del>' in first_round
    assert 'data-unit="word"' in first_round and "answer before this round" in first_round
    assert "failed: talks about the response instead of answering" in view
    assert "weight 1 of 10" in view and "chain-side" in view


@pytest.mark.integration
def test_the_batch_job_command_parses_and_reads_a_frozen_constitution(store, tmp_path):
    out = tmp_path / "run"
    args = tab.revise_args(
        store, "harmless-helpful", "red-team", "all", 4, 2, False, True, 32, 0.5, 3, "embedded", out
    )
    parsed = build_parser().parse_args(args)
    assert (
        parsed.constitution == str(out / "constitution.yaml")
        and (out / "constitution.yaml").exists()
    )
    assert parsed.limit == 4 and parsed.rounds == 2 and parsed.few_shot is False
    assert parsed.relevant_only is True
    assert not hasattr(parsed, "split")  # all splits: the default
    refused = tab.on_launch(
        store, None, "red-team", "train", 4, 1, True, False, 32, 0.7, 0, "embedded"
    )
    assert list(refused) == ["message"] and "Pick a constitution first" in refused["message"]


def test_browsing_cancelling_and_resuming_with_nothing_there(store, tmp_path):
    browsed = tab.browse(str(tmp_path / "empty"), tab.NONE, tab.NONE, False)
    assert set(browsed) == set(tab.BROWSED)
    assert "No finished chains" in browsed["summary"] and browsed["table"] == []
    assert "no longer in this run" in tab.open_chain(str(tmp_path / "empty"), "x")
    assert "No batch job is running" in tab.on_cancel(store, None)["message"]
    resumed = tab.on_resume(store)
    assert list(resumed) == ["message"] and "Only a cancelled or failed job" in resumed["message"]
    assert ChainLog(tmp_path / "empty").read() == []
