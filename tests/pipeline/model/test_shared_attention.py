"""A batch's shared start held once and attended apart gives what attending to every row's
own copy gives."""

from types import SimpleNamespace

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from pipeline.config.settings import SamplingConfig
from pipeline.model import generation, shared_attention
from pipeline.model.generation import KEEP_ROWS, KeptPrompts, TransformersBackend, chat
from tests.tiny import tiny_model

ROWS, HEADS, GROUPS, DIM, START, OWN = 5, 4, 2, 16, 40, 12


@pytest.mark.parametrize("queries", [1, 7])
def test_attending_to_the_start_apart_equals_attending_to_each_rows_copy(queries):
    torch.manual_seed(0)
    module = SimpleNamespace(layer_idx=0, num_key_value_groups=HEADS // GROUPS, is_causal=True)
    query = torch.randn(ROWS, HEADS, queries, DIM)
    start = torch.randn(1, GROUPS, START, DIM), torch.randn(1, GROUPS, START, DIM)
    own = torch.randn(ROWS, GROUPS, OWN, DIM), torch.randn(ROWS, GROUPS, OWN, DIM)
    mask = torch.ones(ROWS, 1, queries, OWN, dtype=torch.bool)
    mask[1, ..., :3] = False  # a left-padded row
    mask[..., OWN - 2 :] = False  # not yet written
    copies = [torch.cat([s.expand(ROWS, -1, -1, -1), o], dim=2) for s, o in zip(start, own)]
    seen = torch.cat([torch.ones(ROWS, 1, queries, START, dtype=torch.bool), mask], dim=-1)
    expected = sdpa_attention_forward(module, query, *copies, seen, scaling=DIM**-0.5)[0]
    with shared_attention.shared_start([start]):
        got = shared_attention.attention(module, query, *own, mask, scaling=DIM**-0.5)[0]
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)


def test_without_a_start_it_is_transformers_sdpa_attention():
    module = SimpleNamespace(layer_idx=0, num_key_value_groups=HEADS // GROUPS, is_causal=True)
    query, key, value = torch.randn(2, HEADS, 3, DIM), *torch.randn(2, 2, GROUPS, 5, DIM)
    expected = sdpa_attention_forward(module, query, key, value, None)[0]
    shared_attention.install()  # as transformers finds it: in SDPA's place
    assert torch.equal(shared_attention.attention(module, query, key, value, None)[0], expected)


def test_under_a_cpus_bf16_autocast_attention_computes_in_fp32():
    """Training's bf16 autocast would run SDPA in bf16 (slower on a CPU at training lengths,
    and rounded); the projections' bf16 outputs are attended in fp32 instead."""
    torch.manual_seed(0)
    module = SimpleNamespace(layer_idx=0, num_key_value_groups=HEADS // GROUPS, is_causal=True)
    query = torch.randn(2, HEADS, 6, DIM, dtype=torch.bfloat16)
    key, value = torch.randn(2, 2, GROUPS, 6, DIM, dtype=torch.bfloat16)
    exact = sdpa_attention_forward(module, query.float(), key.float(), value.float(), None)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = sdpa_attention_forward(module, query, key, value, None)[0]
        got = shared_attention.attention(module, query, key, value, None)[0]
    assert rounded.dtype == torch.bfloat16  # what autocast alone does
    assert got.dtype == torch.float32 and torch.equal(got, exact)


def test_loading_a_cpu_model_puts_it_in_sdpas_place(monkeypatch):
    from transformers import AttentionInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from pipeline.model import loading

    shared_attention.install()
    AttentionInterface.register("sdpa", shared_attention._replaced[0])  # as a fresh process
    monkeypatch.setattr(shared_attention, "_replaced", [])
    loading._load("embedded", loading.resolve_source("embedded"), "cpu")
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is shared_attention.attention


SYSTEM = "You are a careful assistant who answers briefly. " * 10
TOPICS = ("Hi", "Name a fruit", "Count to three", "Why is the sky blue?", "Name a tree", "Go")


def fresh() -> TransformersBackend:
    return TransformersBackend(tiny_model(), kept=KeptPrompts())


def test_a_large_batch_holds_its_shared_start_once_and_predicts_as_full_passes():
    backend = fresh()
    rows = backend._encode([chat(t, system=SYSTEM) for t in TOPICS], SamplingConfig())
    assert len(rows) > KEEP_ROWS
    with torch.inference_mode():
        out, cache, mask, _, start = backend._prefill(rows, 4)
        assert start is not None and mask.shape[1] == cache.layers[0].keys.shape[2]
        assert mask.shape[1] < min(map(len, rows))  # the cache holds no copy of the start
        for i, row in enumerate(rows):
            full = backend.loaded.model(input_ids=torch.tensor([row])).logits[0, -1]
            assert torch.allclose(out.logits[i, -1], full, atol=1e-4)


def test_a_start_kept_from_an_earlier_call_is_held_once_too():
    """A chain's critiques begin with the few-shot start its answers kept."""
    backend = fresh()
    first = backend._encode([chat(t, system=SYSTEM) for t in TOPICS], SamplingConfig())
    later = backend._encode([chat(t + "?", system=SYSTEM) for t in TOPICS[::-1]], SamplingConfig())
    with torch.inference_mode():
        backend._prefill(first, 2)
        out, *_, start = backend._prefill(later, 2)
        assert start is not None
        for i, row in enumerate(later):
            full = backend.loaded.model(input_ids=torch.tensor([row])).logits[0, -1]
            assert torch.allclose(out.logits[i, -1], full, atol=1e-4)


def test_a_large_batch_sharing_a_start_samples_what_its_rows_sample_one_at_a_time(monkeypatch):
    conversations = [chat(t, system=SYSTEM) for t in TOPICS]
    config = SamplingConfig(temperature=1.0, max_new_tokens=10, seed=4)
    batched = fresh().generate(conversations, config)
    single = [fresh().generate([c], config, seeds=[4 + i])[0] for i, c in enumerate(conversations)]
    assert batched == single
    monkeypatch.setattr(generation, "SHARED_START", 10**6)  # every row holds its own copy
    assert fresh().generate(conversations, config) == batched
