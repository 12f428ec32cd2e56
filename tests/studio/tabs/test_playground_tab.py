"""The Playground tab's handlers, without a browser."""

import pytest

from pipeline.data.store import Store
from pipeline.model import ct2_engine
from studio.tabs import playground as tab


def test_the_page_opens_on_the_default_constitution_and_its_principles(tmp_path):
    store = Store(tmp_path / "ws")
    store.seed()
    page = tab.on_load_page(store)
    names, principles = page["constitution"], page["principle"]
    assert names["value"] == "harmless-helpful" and "honest" in names["choices"]
    assert principles["value"] == tab.NO_PRINCIPLE and "privacy" in principles["choices"]
    assert tab.principle_choices(store, None)["choices"] == [tab.NO_PRINCIPLE]
    system = tab.on_principle(store, "harmless-helpful", "privacy")
    assert "Follow this principle in every answer: Respect privacy." in system
    assert "Write your answer so that it does not help track" in system
    assert "Which of these" not in system  # not the pairwise preference question
    assert tab.on_principle(store, "harmless-helpful", tab.NO_PRINCIPLE) == ""


def test_an_empty_message_is_refused_and_a_real_one_is_added():
    refused = tab.on_user("   ", [])
    assert "prompt" not in refused  # what was typed stays in the box
    assert refused["chatbot"] == [] and "Type a message first" in refused["message"]
    asked = tab.on_user("hi", [])
    assert asked == {"prompt": "", "chatbot": [{"role": "user", "content": "hi"}], "message": ""}


def test_the_answer_streams_into_the_conversation(tiny_folder):
    history = [{"role": "user", "content": "Say something."}]
    steps = list(tab.on_respond(history, str(tiny_folder), "Be brief.", 0.0, 1.0, 6, 0))
    assert len(steps) >= 2 and all(step["message"] == "" for step in steps[:-1])
    final, note, status = (steps[-1][k] for k in ("chatbot", "message", "model_status"))
    assert steps[-1]["said_of"] == str(tiny_folder)  # a late choice of it keeps this line
    assert final[:1] == history and final[-1]["role"] == "assistant" and final[-1]["content"]
    assert (
        "stopped at the token limit (6 new tokens)" in note
    )  # a tiny model never stops on its own
    assert f"Model in use: {tiny_folder}" in status
    assert list(tab.on_respond([], str(tiny_folder), "", 0.0, 1.0, 6, 0)) == []  # nothing asked


def test_a_model_that_cannot_load_is_a_visible_message(tmp_path):
    loaded = tab.on_load_model(str(tmp_path / "no-such-model"))
    html = loaded["model_status"]
    assert "notice-error" in html and "does not exist" in html
    assert loaded["said_of"] == str(tmp_path / "no-such-model")
    steps = list(
        tab.on_respond(
            [{"role": "user", "content": "hi"}], str(tmp_path / "nope"), "", 0.7, 0.95, 8, 0
        )
    )
    assert "does not exist" in steps[-1]["message"] and "model_status" not in steps[-1]


def test_compare_answers_the_same_prompt_with_and_without_the_system_prompt(tiny_folder):
    out, message = tab.on_compare(str(tiny_folder), "Be brief.", "Say hi.", [], 0.7, 0.95, 6, 3)
    assert message == "" and "With the system prompt" in out and "Without it" in out
    assert 'data-seed="3"' in out and "stopped at the token limit" in out
    history = [{"role": "user", "content": "Earlier question?"}]
    out, _ = tab.on_compare(str(tiny_folder), "Be brief.", "", history, 0.7, 0.95, 6, 3)
    assert "Earlier question?" in out
    assert "Type a message" in tab.on_compare(str(tiny_folder), "x", "", [], 0.7, 0.95, 6, 0)[1]
    assert "Pick a principle" in tab.on_compare(str(tiny_folder), " ", "q", [], 0.7, 0.95, 6, 0)[1]
    picked = tab.on_model_choice("embedded")
    assert "loads with the first message" in picked["model_status"] and picked["said_of"] is None
    # a choice that runs after Load spoke of the same model leaves Load's answer shown
    said = tab.on_load_model("/no/such/model")["said_of"]
    assert tab.on_model_choice("/no/such/model", said) == {}
    assert "loads with the first message" in tab.on_model_choice("/no/such", said)["model_status"]
    assert "first message" in tab.on_model_choice("", None)["model_status"]  # the page opens


@pytest.mark.skipif(not ct2_engine.available(), reason=ct2_engine.INSTALL)
def test_the_model_line_says_which_engine_answered(tiny_folder):
    asked = [{"role": "user", "content": "Say something."}]
    *_, greedy = tab.on_respond(asked, str(tiny_folder), "", 0.0, 1.0, 6, 0, engine="auto")
    assert greedy["chatbot"][-1]["content"] and "on the int8 engine" in greedy["model_status"]
    *_, sampled = tab.on_respond(asked, str(tiny_folder), "", 0.7, 1.0, 6, 0, engine="auto")
    assert "on the int8 engine (sampled: its seed reproduces" in sampled["model_status"]
    *_, again = tab.on_respond(asked, str(tiny_folder), "", 0.7, 1.0, 6, 0, engine="auto")
    assert again["chatbot"] == sampled["chatbot"]  # a live answer's seed reproduces on int8
    # Compare's two answers are runs of their own with the seed: the same seed, the same pair
    compared = [
        tab.on_compare(str(tiny_folder), "Be brief.", "Say something.", [], 0.7, 1, 6, 0)[0]
        for _ in range(2)
    ]
    assert compared[0] == compared[1] and "Without it" in compared[0]
    out, message = tab.on_compare(str(tiny_folder), "Be brief.", "Hi.", [], 0, 1, 6, 0, "int8")
    assert message == "" and "With the system prompt" in out
