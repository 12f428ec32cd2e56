"""The Playground tab's handlers, without a browser."""
from pipeline.store import Store
from studio import playground_tab as tab


def test_the_page_opens_on_the_default_constitution_and_its_principles(tmp_path):
    store = Store(tmp_path / "ws")
    store.seed()
    names, principles = tab.on_load_page(store)
    assert names["value"] == "harmless-helpful" and "honest" in names["choices"]
    assert principles["value"] == tab.NO_PRINCIPLE and "privacy" in principles["choices"]
    assert tab.principle_choices(store, None)["choices"] == [tab.NO_PRINCIPLE]
    assert "Follow this principle" in tab.on_principle(store, "harmless-helpful", "privacy")
    assert tab.on_principle(store, "harmless-helpful", tab.NO_PRINCIPLE) == ""


def test_an_empty_message_is_refused_and_a_real_one_is_added():
    _, history, message = tab.on_user("   ", [])
    assert history == [] and "Type a message first" in message
    cleared, history, message = tab.on_user("hi", [])
    assert cleared == "" and history == [{"role": "user", "content": "hi"}] and message == ""


def test_the_answer_streams_into_the_conversation(tiny_folder):
    history = [{"role": "user", "content": "Say something."}]
    steps = list(tab.on_respond(history, str(tiny_folder), "Be brief.", 0.0, 1.0, 6, 0))
    assert len(steps) >= 2 and all(message == "" for _, message in steps)
    final, _ = steps[-1]
    assert final[:1] == history and final[-1]["role"] == "assistant" and final[-1]["content"]
    assert list(tab.on_respond([], str(tiny_folder), "", 0.0, 1.0, 6, 0)) == []  # nothing asked


def test_a_model_that_cannot_load_is_a_visible_message(tmp_path):
    html = tab.on_load_model(str(tmp_path / "no-such-model"))
    assert "notice-error" in html and "does not exist" in html
    steps = list(tab.on_respond([{"role": "user", "content": "hi"}], str(tmp_path / "nope"), "",
                                0.7, 0.95, 8, 0))
    assert "does not exist" in steps[-1][1]
