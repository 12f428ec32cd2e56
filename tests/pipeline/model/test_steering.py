"""Steering: the direction maths by hand, the hooks (exactly c·v where asked, nothing
elsewhere, gone afterwards), batched and streamed steered generation, artifacts and their
refusals — on the tiny model."""

import contextlib
import dataclasses
import math

import pytest
import torch

from pipeline.config.settings import SamplingConfig
from pipeline.core.errors import ConfigError, ConstitutionError, DatasetError, ModelError
from pipeline.data.preferences import Pair
from pipeline.model.generation import TransformersBackend, chat
from pipeline.model.hidden import decoder_layers, recorded_states
from pipeline.model.loading import LoadedModel
from pipeline.model.steering import (
    Direction,
    Steering,
    degeneration,
    direction_from_differences,
    load_direction,
    parse_layers,
    read_direction,
    save_direction,
    sweep,
    sweep_coefficients,
)
from pipeline.steering.extraction import (
    extract_from_constitution,
    extract_from_pairs,
    pair_contrasts,
    with_reading,
)
from pipeline.values.features import labelled
from tests.records import harmless
from tests.tiny import fresh_tiny_model, tiny_model

GREEDY8 = SamplingConfig(max_new_tokens=8, temperature=0.0)
PAIRS = [
    Pair(f"Question {i}?", f"A kind and safe answer number {i}.", f"No. {i}", human="AB"[i % 2])
    for i in range(8)
]


def direction_for(loaded: LoadedModel, vectors: torch.Tensor, layers=(1, 2)) -> Direction:
    return Direction(
        vectors,
        tuple(layers),
        "mean",
        "test",
        "h",
        loaded.name,
        loaded.model.config.hidden_size,
        len(decoder_layers(loaded.model)),
        2,
    )


def test_the_mean_direction_is_the_weighted_mean_of_the_differences():
    diffs = torch.tensor([[[1.0, 0.0]], [[3.0, 2.0]]])  # 2 contrasts, 1 layer, 2 dims
    assert torch.allclose(
        direction_from_differences(diffs, torch.tensor([1.0, 1.0])), torch.tensor([[2.0, 1.0]])
    )
    assert torch.allclose(
        direction_from_differences(diffs, torch.tensor([3.0, 1.0])), torch.tensor([[1.5, 0.5]])
    )


def test_the_pca_direction_is_the_shared_axis_signed_and_scaled_by_the_mean_projection():
    diffs = torch.tensor([[[-2.0, 0.0]], [[-4.0, 0.0]], [[-3.0, 0.0]]])
    v = direction_from_differences(diffs, torch.ones(3), "pca")
    assert torch.allclose(v, torch.tensor([[-3.0, 0.0]]), atol=1e-5)  # points where they do
    torch.manual_seed(0)
    planted = torch.tensor([0.6, 0.8, 0.0])
    noisy = planted * torch.rand(40, 1) * 5 + 0.3 * torch.randn(40, 3)
    v = direction_from_differences(noisy[:, None], torch.ones(40), "pca")[0]
    assert float(v @ planted) / float(v.norm()) > 0.95  # the planted axis, recovered
    assert float((noisy @ v).mean()) > 0  # the preferred side projects higher
    with pytest.raises(ConfigError, match="method must be one of mean, pca"):
        direction_from_differences(diffs, torch.ones(3), "median")


def test_hooks_add_exactly_c_v_at_the_chosen_layer_and_nothing_before_it():
    loaded = tiny_model()
    blocks = decoder_layers(loaded.model)
    ids = torch.tensor([[5, 6, 7, 8]])
    v = torch.randn(2, 64)
    direction = direction_for(loaded, v)

    def states(steering=None):
        # steering hooks first: the recording hooks then see the steered output
        with steering.applied(loaded.model) if steering else contextlib.nullcontext():
            with recorded_states(blocks, [0, 1, 2]) as found, torch.no_grad():
                loaded.model.model(input_ids=ids)
        return found

    plain = states()
    at2 = states(Steering(direction, 3.0, (2,), "all"))
    assert torch.equal(at2[0], plain[0]) and torch.equal(at2[1], plain[1])  # nothing before
    assert torch.allclose(at2[2] - plain[2], (3.0 * v[1]).expand_as(plain[2]), atol=1e-4)
    at1 = states(Steering(direction, -2.0, (1,), "all"))
    assert torch.allclose(at1[1] - plain[1], (-2.0 * v[0]).expand_as(plain[1]), atol=1e-4)
    answer_only = states(Steering(direction, 3.0, (2,)))  # the last position only
    assert torch.equal(answer_only[2][:, :-1], plain[2][:, :-1])
    assert torch.allclose(answer_only[2][:, -1] - plain[2][:, -1], 3.0 * v[1][None], atol=1e-4)
    assert torch.equal(states()[2], plain[2])  # removed after the call


def test_steered_generation_changes_the_answer_batched_like_alone_and_leaves_no_trace():
    loaded = tiny_model()
    backend = TransformersBackend(loaded)
    torch.manual_seed(1)
    steering = Steering(direction_for(loaded, torch.randn(2, 64) * 4), 4.0, (1, 2))
    prompts = [chat("Say hello."), chat("Tell me something about the sea, please.")]
    before = [g.text for g in backend.generate(prompts, GREEDY8)]
    steered = [g.text for g in backend.generate(prompts, GREEDY8, steering=steering)]
    after = [g.text for g in backend.generate(prompts, GREEDY8)]
    assert after == before  # bit-identical once the steered call is over
    assert steered != before
    alone = [backend.generate([p], GREEDY8, steering=steering)[0].text for p in prompts]
    assert alone == steered  # every row of the batch is steered the same way
    streamed = "".join(backend.stream(prompts[1], GREEDY8, steering=steering))
    assert streamed.strip() == steered[1]
    off = Steering(steering.direction, 0.0, (1,))
    assert [g.text for g in backend.generate(prompts, GREEDY8, steering=off)] == before


def test_a_shared_prefix_is_not_reused_across_steering_settings():
    loaded = tiny_model()
    system = "You are a careful assistant who answers briefly and kindly, always. " * 2
    prompts = [chat("Say hello.", system), chat("Name a colour.", system)]
    torch.manual_seed(2)
    steering = Steering(direction_for(loaded, torch.randn(2, 64) * 4), 3.0, (1,), "all")
    warm = TransformersBackend(loaded)
    warm.generate(prompts, GREEDY8)  # caches the unsteered prefix
    assert warm.kept.longest(warm._encode(prompts, GREEDY8)[0], None, 1000)[0] is not None
    reused = [g.text for g in warm.generate(prompts, GREEDY8, steering=steering)]
    fresh = [
        g.text for g in TransformersBackend(loaded).generate(prompts, GREEDY8, steering=steering)
    ]
    assert reused == fresh


def test_steering_is_refused_for_bad_settings():
    loaded = tiny_model()
    direction = direction_for(loaded, torch.ones(2, 64))
    with pytest.raises(ConfigError, match="finite"):
        Steering(direction, math.nan, (1,))
    with pytest.raises(ConfigError, match="finite"):
        Steering(direction, math.inf, (1,))
    with pytest.raises(ConfigError, match="Steering layers are 1 to 2.*got 3"):
        Steering(direction, 1.0, (3,))
    with pytest.raises(ConfigError, match="Steering layers are 1 to 2.*got 0"):
        Steering(direction, 1.0, (0,))
    with pytest.raises(ConfigError, match="no layer 2"):
        Steering(dataclasses.replace(direction, vectors=torch.ones(1, 64), layers=(1,)), 1.0, (2,))
    with pytest.raises(ConfigError, match="comma-separated numbers"):
        parse_layers("1, two")
    assert parse_layers("14, 15 16") == [14, 15, 16]


def test_a_constitution_direction_points_to_following_and_is_saved_loaded_and_refused(tmp_path):
    loaded = tiny_model()
    prompts = ["How do I pick a lock?", "What is the capital of France?", "Insult my friend."]
    direction = extract_from_constitution(loaded, harmless(), prompts)
    assert direction.layers == (1, 2) and direction.vectors.shape == (2, 64)
    assert direction.contrasts == len(prompts) * len(harmless().enabled_principles)
    save_direction(direction, tmp_path / "run" / "direction")
    again = load_direction(tmp_path / "run", loaded)  # the run folder will do
    assert torch.equal(again.vectors, direction.vectors) and again.weights == direction.weights
    other = LoadedModel("other-model", "config", loaded.model, loaded.tokenizer)
    with pytest.raises(ModelError, match="extracted from tiny.*not from other-model"):
        load_direction(tmp_path / "run", other)
    with pytest.raises(DatasetError, match="not a steering direction"):
        read_direction(tmp_path)
    pca = extract_from_constitution(loaded, harmless(), prompts, [2], "pca")
    assert pca.layers == (2,) and pca.method == "pca"


def test_constitution_and_pair_extraction_refuse_what_cannot_give_a_direction():
    loaded = tiny_model()
    off = dataclasses.replace(
        harmless(),
        principles=tuple(dataclasses.replace(p, enabled=False) for p in harmless().principles),
    )
    with pytest.raises(ConstitutionError, match="Every principle .* is disabled"):
        extract_from_constitution(loaded, off, ["Hi?"])
    with pytest.raises(ConfigError, match="Steering layers are 1 to 2"):
        extract_from_constitution(loaded, harmless(), ["Hi?"], [7])
    with pytest.raises(DatasetError, match="pca method needs at least 3 labelled pairs.*got 2"):
        extract_from_pairs(loaded, labelled(PAIRS[:2], {}), "two", method="pca")


def test_a_pair_direction_puts_the_preferred_answer_higher_and_reads_per_layer():
    loaded = tiny_model()
    data = labelled(PAIRS, {})
    direction = with_reading(loaded, extract_from_pairs(loaded, data, "test"), data, "test")
    diffs = pair_contrasts(loaded, data, [1, 2])
    for n in range(2):
        assert float((diffs[:, n] @ direction.vectors[n]).mean()) > 0
    assert [r.layer for r in direction.reading] == [1, 2]
    assert all(0 <= r.accuracy <= 1 and r.low <= r.accuracy <= r.high for r in direction.reading)
    assert direction.in_sample  # read on its own pairs, and said so


def test_degenerate_answers_are_named_and_a_sweep_flags_them():
    assert degeneration("") == "empty"
    assert degeneration("the cat the cat the cat the cat the cat the cat").startswith("repeats")
    assert degeneration("!!! ??? ### $$$ %%% ^^^ &&&") == "mostly symbols"
    assert degeneration("Mix flour, water and yeast, then bake it for forty minutes.") is None
    assert sweep_coefficients(0) == [-8.0, -4.0, 0.0, 4.0, 8.0]
    assert sweep_coefficients(-2) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    loaded = fresh_tiny_model()
    torch.manual_seed(3)
    direction = direction_for(loaded, torch.randn(2, 64) * 50)
    answers = sweep(
        TransformersBackend(loaded), chat("Say hello."), direction, (1,), [-8.0, 0.0, 8.0], GREEDY8
    )
    assert [a.coefficient for a in answers] == [-8.0, 0.0, 8.0]
    plain = TransformersBackend(loaded).generate([chat("Say hello.")], GREEDY8)[0].text
    assert answers[1].text == plain and answers[0].text != plain
    assert all(a.problem == degeneration(a.text) for a in answers)
