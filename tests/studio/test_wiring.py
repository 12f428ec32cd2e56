"""Handlers answer by name: the wiring maps names to components and refuses unknown names."""

import gradio as gr
import pytest

from studio.wiring import by_keyword, named, to_components


def test_named_outputs_become_components_and_unnamed_ones_are_left_out():
    message, answer = gr.Textbox(), gr.Textbox()
    components = {"message": message, "answer": answer}
    call = named(lambda text: {"message": f"got {text}"}, components)
    assert call("hi") == {message: "got hi"}  # `answer` is not sent: it stays as it is


def test_an_answer_that_names_nothing_leaves_every_output_as_it_is():
    components = {"message": gr.HTML(), "plot": gr.LinePlot(), "table": gr.HTML()}
    assert named(lambda: {}, components)() == [gr.skip()] * 3
    steps = list(named(_nothing_then_done, components)())
    assert steps == [[gr.skip()] * 3, {components["message"]: "done"}]


def _nothing_then_done():
    yield {}
    yield {"message": "done"}


def test_a_streaming_handler_streams_by_name():
    message, bars = gr.HTML(), gr.HTML()

    def handler(n):
        for i in range(n):
            yield {"bars": f"{i} of {n}"}
        yield {"message": "done", "bars": "all"}

    steps = list(named(handler, {"message": message, "bars": bars})(2))
    assert steps == [{bars: "0 of 2"}, {bars: "1 of 2"}, {message: "done", bars: "all"}]


def test_an_unknown_output_name_is_a_clear_error():
    with pytest.raises(KeyError, match="no output named mesage"):
        to_components({"mesage": "typo"}, {"message": gr.Textbox()})


def test_inputs_given_by_name_reach_the_handler_by_keyword_and_a_wrong_name_fails_at_build():
    def handler(prompt, seed=0):
        return {"message": f"{prompt}/{seed}"}

    message = gr.Textbox()
    call = by_keyword(handler, ["seed", "prompt"])  # any order: the names decide
    assert call(3, "hi") == {"message": "hi/3"}
    assert named(call, {"message": message})(3, "hi") == {message: "hi/3"}
    with pytest.raises(TypeError, match="promt"):
        by_keyword(handler, ["promt"])
