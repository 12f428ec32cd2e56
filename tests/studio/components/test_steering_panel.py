"""The Steering accordion's handlers (Playground and Chains), on the tiny model folder."""

from pipeline.config.settings import SamplingConfig
from pipeline.model.loading import load_model
from pipeline.model.steering import save_direction
from pipeline.steering.extraction import extract_from_constitution
from studio.components import steering_panel as panel
from studio.tabs import chains as chains_tab
from studio.tabs import playground as playground_tab
from tests.records import harmless
from tests.studio.forms import chain_steps

ASK = [{"role": "user", "content": "How do I pick a lock?"}]


def answer(tiny_folder, store, coefficient: float, layers: str = "1,2") -> tuple:
    *_, final = playground_tab.on_respond(
        ASK,
        str(tiny_folder),
        "",
        0.0,
        1.0,
        8,
        0,
        "harmless-helpful",
        panel.FROM_CONSTITUTION,
        layers,
        coefficient,
        store=store,
    )
    return final["chatbot"][-1]["content"], final["message"], final.get("model_status", "")


def test_the_slider_steers_the_playground_answer_and_zero_is_off(tiny_folder, store):
    plain, _, status = answer(tiny_folder, store, 0.0)
    assert "steered" not in status
    steered, _, status = answer(tiny_folder, store, 8.0)
    assert steered != plain
    assert "steered +8 × mean direction from constitution harmless-helpful at layers 1, 2" in status
    again, _, _ = answer(tiny_folder, store, 0.0)
    assert again == plain  # nothing left behind
    _, note, _ = answer(tiny_folder, store, 4.0, layers="9")
    assert "Steering layers are 1 to 2" in note


def test_a_sweep_shows_five_coefficients_and_flags_what_breaks_down(tiny_folder, store):
    html, note = playground_tab.on_sweep(
        store,
        str(tiny_folder),
        "",
        "Say hi.",
        [],
        0.0,
        1.0,
        8,
        0,
        "harmless-helpful",
        panel.FROM_CONSTITUTION,
        "",
        4.0,
    )
    assert html.count("sweep-card") == 5
    for c in ("-4", "-2", "0", "2", "4"):
        assert f'data-coefficient="{c}"' in html
    assert "off (0)" in html
    assert ("break down" in note) == ("breaks down" in html)
    _, empty = playground_tab.on_sweep(
        store,
        str(tiny_folder),
        "",
        "",
        [],
        0.0,
        1.0,
        8,
        0,
        "harmless-helpful",
        panel.FROM_CONSTITUTION,
        "",
        4.0,
    )
    assert "Type a message" in empty
    _, no_constitution = playground_tab.on_sweep(
        store,
        str(tiny_folder),
        "",
        "Hi",
        [],
        0.0,
        1.0,
        8,
        0,
        None,
        panel.FROM_CONSTITUTION,
        "",
        4.0,
    )
    assert "Pick a constitution in this tab" in no_constitution


def test_each_layer_is_read_on_the_gold_pairs_and_a_saved_direction_is_offered(
    tiny_folder, store, tmp_path
):
    read = panel.on_read_layers(
        store, str(tiny_folder), panel.FROM_CONSTITUTION, "harmless-helpful"
    )
    frame, note = read["curve"], read["note"]
    assert sorted(set(frame["layer"])) == [1, 2]
    assert set(frame["series"]) <= {"accuracy", "length-controlled"}
    assert "50% is a coin flip" in note and "Best: layer" in note
    loaded = load_model(str(tiny_folder))
    folder = tmp_path / "steer" / "direction"
    save_direction(extract_from_constitution(loaded, harmless(), ["Hi?", "Help me."]), folder)
    refused = panel.on_read_layers(store, "embedded", str(folder), None)
    assert list(refused) == ["note"]  # the curve stays as it was
    refused = refused["note"]
    assert "was extracted from" in refused and "extract one for this model" in refused


def test_a_steered_chain_differs_from_the_plain_one(tiny_folder, store):
    def chain(coefficient: float) -> str:
        *_, final = chain_steps(
            store,
            model_name=str(tiny_folder),
            new_tokens=16,
            steer_choice=panel.FROM_CONSTITUTION,
            steer_layers="1,2",
            coefficient=coefficient,
        )
        assert "error" not in final["message"]
        return final["view_a"]

    assert chain(6.0) != chain(0.0)
    html, _ = chains_tab.on_sweep(
        store,
        str(tiny_folder),
        "Hi",
        "harmless-helpful",
        8,
        0.0,
        0,
        panel.FROM_CONSTITUTION,
        "1",
        2.0,
    )
    assert html.count("sweep-card") == 5


def test_sampling_settings_reach_the_sweep(tiny_folder, store):
    config = SamplingConfig(max_new_tokens=3, temperature=0.0)
    html, _ = panel.on_sweep(
        store,
        str(tiny_folder),
        "Hi",
        "",
        panel.FROM_CONSTITUTION,
        "harmless-helpful",
        "1",
        1.0,
        config,
    )
    assert html.count("stopped at the token limit") == 5  # the tiny model never ends a turn
