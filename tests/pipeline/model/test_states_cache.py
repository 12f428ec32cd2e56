"""The states cache: answers a model has read come back without a forward pass, equal to a
fresh read; a changed model, a steered or LoRA-carrying model, or a spent budget never
serves (or keeps) a stale entry."""

import dataclasses
import os

import pytest
import torch

from pipeline.model import states_cache
from pipeline.model.hidden import added_at_layers, hidden_states
from pipeline.model.loading import CACHE_ENV
from pipeline.values import features
from tests.tiny import tiny_model

PROMPTS = ["How do I bake bread?", "Is the sea salty?", "How do I bake bread?"]
ANSWERS = ["Mix flour, water and yeast.", "Yes, it is.", "Buy it."]


@pytest.fixture
def cache(tmp_path, monkeypatch, tiny_folder):
    """The tiny model as if loaded from its folder, with an empty cache; counts real reads."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(states_cache.BUDGET_ENV, raising=False)
    reads = []

    def counted(*args, **kwargs):
        reads.append(len(args[2]))
        return hidden_states(*args, **kwargs)

    monkeypatch.setattr(features, "hidden_states", counted)
    loaded = dataclasses.replace(tiny_model(), source=str(tiny_folder))
    # transformers keeps hooks of its own once outputs were recorded: they change nothing
    loaded.model(torch.tensor([[1, 2, 3]]), output_hidden_states=True, output_attentions=True)
    return loaded, reads, tmp_path / "cache" / states_cache.FOLDER


def entries(root):
    return sorted(p for p in root.glob("*/*/*") if not p.name.startswith("."))


def fresh(loaded, layers=None):
    return hidden_states(loaded.model, loaded.tokenizer, PROMPTS, ANSWERS, layers)


def test_a_second_read_comes_from_the_cache_and_equals_a_fresh_read(cache):
    loaded, reads, root = cache
    first = features.answer_states(loaded, PROMPTS, ANSWERS, "answer_mean")
    assert reads == [3] and len(entries(root)) == 3
    again = features.answer_states(loaded, PROMPTS, ANSWERS, "answer_mean")
    assert reads == [3]  # no forward pass the second time
    torch.testing.assert_close(again, first)
    torch.testing.assert_close(again, fresh(loaded), atol=1e-5, rtol=1e-4)


def test_a_row_read_at_one_layer_is_read_again_for_the_others_and_then_kept(cache):
    loaded, reads, _ = cache
    one = features.answer_states(loaded, PROMPTS[:1], ANSWERS[:1], "answer_mean", [1])
    every = features.answer_states(loaded, PROMPTS, ANSWERS, "answer_mean")
    assert reads == [1, 3]  # the first row lacked layers 0 and 2
    again = features.answer_states(loaded, PROMPTS[:1], ANSWERS[:1], "answer_mean", [2, 0])
    assert reads == [1, 3]
    torch.testing.assert_close(one[:, 0], every[:1, 1])
    torch.testing.assert_close(again, every[:1][:, [2, 0]])
    assert every.shape == fresh(loaded).shape


def test_pooling_and_text_are_part_of_the_key(cache):
    loaded, reads, _ = cache
    features.answer_states(loaded, PROMPTS, ANSWERS, "answer_mean")
    last = features.answer_states(loaded, PROMPTS, ANSWERS, "last")
    features.answer_states(loaded, PROMPTS[:1], ["Mix flour, water and yeast!"], "answer_mean")
    assert reads == [3, 3, 1]
    assert last.shape == fresh(loaded).shape
    assert not torch.allclose(last, features.answer_states(loaded, PROMPTS, ANSWERS, "answer_mean"))
    assert reads == [3, 3, 1]


def test_a_changed_model_file_is_a_miss(cache, tiny_folder):
    loaded, reads, _ = cache
    features.answer_states(loaded, PROMPTS, ANSWERS, "answer_mean")
    weights = next(tiny_folder.glob("*.safetensors"))
    stamp = os.stat(weights).st_mtime_ns
    try:
        os.utime(weights, ns=(stamp + 10**9, stamp + 10**9))
        features.answer_states(loaded, PROMPTS, ANSWERS, "answer_mean")
    finally:
        os.utime(weights, ns=(stamp, stamp))
    assert reads == [3, 3]


def test_a_steered_model_or_a_hub_id_is_never_cached(cache):
    loaded, reads, root = cache
    with added_at_layers(loaded.model, {1: torch.ones(loaded.model.config.hidden_size)}):
        features.answer_states(loaded, PROMPTS, ANSWERS, "answer_mean")
    hub = dataclasses.replace(loaded, source="someone/some-model")
    features.answer_states(hub, PROMPTS, ANSWERS, "answer_mean")
    assert reads == [3, 3] and not entries(root)


def test_an_unreadable_entry_is_a_miss_and_is_rewritten(cache):
    loaded, reads, root = cache
    first = features.answer_states(loaded, PROMPTS, ANSWERS, "answer_mean")
    broken = entries(root)[0]
    broken.write_bytes(b"half an entry")
    again = features.answer_states(loaded, PROMPTS, ANSWERS, "answer_mean")
    assert reads == [3, 1]
    torch.testing.assert_close(again, first, atol=1e-5, rtol=1e-4)
    assert broken.stat().st_size > 100


def test_the_budget_keeps_the_newest_entries_and_zero_turns_it_off(cache, monkeypatch):
    loaded, reads, root = cache
    features.answer_states(loaded, PROMPTS[:1], ANSWERS[:1], "answer_mean")
    (oldest,) = entries(root)
    size = oldest.stat().st_size
    monkeypatch.setenv(states_cache.BUDGET_ENV, str(1.5 * size / 2**20))
    features.answer_states(loaded, PROMPTS[1:], ANSWERS[1:], "answer_mean")
    assert len(entries(root)) == 1 and not oldest.exists()  # one entry fits: the oldest went
    monkeypatch.setenv(states_cache.BUDGET_ENV, "0")
    for path in entries(root):
        path.unlink()
    features.answer_states(loaded, PROMPTS, ANSWERS, "answer_mean")
    assert not entries(root)


def test_answers_are_written_once_per_request_and_the_request_is_the_key(cache):
    loaded, _, root = cache
    asked = []

    def write(rows):
        asked.append(rows)
        return [f"answer {i}" for i in rows]

    requests = [[[{"role": "user", "content": q}], {"temperature": 0.0}, 0] for q in PROMPTS[:2]]
    assert states_cache.cached_answers(loaded, requests, write) == ["answer 0", "answer 1"]
    changed = requests[:1] + [[requests[1][0], {"temperature": 0.5}, 0]]
    assert states_cache.cached_answers(loaded, changed, write) == ["answer 0", "answer 1"]
    assert asked == [[0, 1], [1]]  # the changed settings were a miss, the same request a hit
    hub = dataclasses.replace(loaded, source="someone/some-model")
    states_cache.cached_answers(hub, requests, write)
    assert asked[-1] == [0, 1]


def test_a_constitution_direction_is_read_again_without_generating(cache, monkeypatch):
    from pipeline.data.constitution import load_constitution
    from pipeline.model.generation import TransformersBackend
    from pipeline.values.directions import constitution_direction

    loaded, reads, _ = cache
    generated = []
    real = TransformersBackend.generate

    def counted(self, conversations, *args, **kwargs):
        generated.append(len(conversations))
        return real(self, conversations, *args, **kwargs)

    monkeypatch.setattr(TransformersBackend, "generate", counted)
    constitution = load_constitution("constitutions/harmless-helpful.yaml")
    first = constitution_direction(loaded, constitution, "answer_mean", [1], prompts=PROMPTS[:1])
    again = constitution_direction(loaded, constitution, "answer_mean", [1], prompts=PROMPTS[:1])
    assert len(generated) == 1 and len(reads) == 1
    assert first.examples == again.examples
    torch.testing.assert_close(again.total, first.total)


def test_answer_likelihoods_are_scored_once_and_a_changed_answer_is_scored_again(
    cache, monkeypatch
):
    from pipeline.model import scoring

    loaded, _, root = cache
    scored = []
    real = scoring.teacher_forced

    def counted(loaded, contexts, continuations, batch_size):
        scored.append(len(contexts))
        return real(loaded, contexts, continuations, batch_size)

    monkeypatch.setattr(scoring, "teacher_forced", counted)
    ids = [list(loaded.tokenizer(text)["input_ids"]) for text in PROMPTS + ANSWERS]
    contexts, answers = ids[:3], ids[3:]
    first = scoring.sequence_logprobs(loaded, contexts, answers)
    again = scoring.sequence_logprobs(loaded, contexts, answers)
    assert scored == [3] and again == first == real(loaded, contexts, answers, 8)
    changed = scoring.sequence_logprobs(loaded, contexts, answers[:2] + [answers[2][:-1]])
    assert scored == [3, 1] and changed[:2] == first[:2] and changed[2] != first[2]
    assert len(entries(root)) == 4
