"""Int8 weights in our own engine: the layer's product, the copy of a model, and the int8
engine's long prompts running on it."""

import pytest
import torch

from pipeline.config.settings import SamplingConfig
from pipeline.model import ct2_engine, engines, int8_weights
from pipeline.model.engines import backend_for
from pipeline.model.generation import chat
from pipeline.model.int8_weights import GEMM_ROWS, Int8Linear, int8_loaded, quantized_copy
from pipeline.model.loading import load_model

needs_ct2 = pytest.mark.skipif(not ct2_engine.available(), reason=ct2_engine.INSTALL)
LONG = chat("Tell me about the river. " + "The river runs past the old mill and the town. " * 40)
SAMPLED = SamplingConfig(temperature=0.7, top_p=0.95, max_new_tokens=12, seed=7)


def dequantized(layer: Int8Linear) -> torch.Tensor:
    return layer.weight_int8.float() * layer.scales.float()[:, None]


@pytest.mark.parametrize("rows", [1, 3, GEMM_ROWS + 36])
def test_the_int8_layer_multiplies_by_its_rounded_weights_on_either_path(rows):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 40, bias=True)
    layer = Int8Linear(linear)
    assert layer.weight_int8.dtype == torch.int8 and layer.weight_int8.abs().max() >= 126
    # each weight within half a step of its row's scale
    step = layer.scales.float()[:, None]
    assert ((dequantized(layer) - linear.weight).abs() <= step / 2 + 1e-6).all()
    x = torch.randn(2, rows, 64)
    expected = x.bfloat16().float() @ dequantized(layer).T + linear.bias
    got = layer(x)
    assert got.shape == (2, rows, 40) and got.dtype == torch.float32
    assert (got - expected).abs().max() <= 0.02 * expected.abs().max()
    assert (got - linear(x)).abs().max() <= 0.05 * expected.abs().max()  # near fp32's too


def test_the_copy_quantizes_what_the_kernel_takes_and_shares_the_rest():
    model = torch.nn.Sequential(
        torch.nn.Embedding(10, 32), torch.nn.Linear(32, 48), torch.nn.Linear(48, 20)
    )
    # 32 and 48 wide inputs are multiples of 16; a 20-wide one the kernel would read past
    odd = torch.nn.Sequential(model, torch.nn.Linear(20, 8))
    copy = quantized_copy(odd)
    assert isinstance(copy[0][1], Int8Linear) and isinstance(copy[0][2], Int8Linear)
    assert type(copy[1]) is torch.nn.Linear and copy[1].weight is odd[1].weight
    assert copy[0][0].weight is model[0].weight  # the embedding is the fp32 model's own
    assert type(odd[0][1]) is torch.nn.Linear  # the fp32 model is left as it was
    ids = torch.tensor([[1, 2, 3]])
    assert (copy(ids) - odd(ids)).abs().max() < 0.05 * odd(ids).abs().max()


def test_the_embedded_models_copy_predicts_as_fp32_does():
    loaded = load_model("embedded")
    copy = int8_loaded(loaded)
    assert int8_loaded(loaded) is copy and int8_weights.made(loaded) is copy  # made once
    assert copy.tokenizer is loaded.tokenizer
    quantized = [m for m in copy.model.modules() if isinstance(m, Int8Linear)]
    assert len(quantized) == 1 + 7 * loaded.model.config.num_hidden_layers  # and the LM head
    text = "The river runs past the old mill, and the town grew around its market. " * 6
    ids = loaded.tokenizer(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        fp32 = torch.softmax(loaded.model(ids).logits[0] / 0.7, -1)
        int8 = torch.softmax(copy.model(ids).logits[0] / 0.7, -1)
    variation = 0.5 * (fp32 - int8).abs().sum(-1)
    assert variation.mean() < 0.03  # measured 0.011 (CTranslate2 int8: 0.083)
    assert (fp32.argmax(-1) == int8.argmax(-1)).float().mean() > 0.9


@needs_ct2
@pytest.mark.skipif(not int8_weights.fast_here(), reason="the int8 kernel is slow on this CPU")
def test_the_int8_engine_runs_long_prompts_on_the_int8_copy_and_its_seed_reproduces():
    run = backend_for("embedded", engine="auto", greedy=False, live=True)
    assert isinstance(run, engines.AutoBackend)
    rows = run._encode([LONG], SAMPLED)
    assert len(rows[0]) > engines.LONG_PROMPT and run.engine_for(rows) is run.long
    assert run.long.loaded is int8_loaded(run.loaded) and run.loaded is load_model("embedded")
    first = run.generate([LONG], SAMPLED)[0].text
    again = backend_for("embedded", engine="auto", greedy=False, live=True)
    assert again.generate([LONG], SAMPLED)[0].text == first  # a live run's seed reproduces
    assert "".join(again.stream(LONG, SAMPLED)) == first
    named = backend_for("embedded", engine="int8")  # int8 asked for by name, greedy too
    assert named.engine_for(rows).loaded is int8_loaded(run.loaded)
    greedy = backend_for("embedded", engine="auto")  # greedy auto keeps fp32's exact answer
    assert greedy.engine_for(rows).loaded is load_model("embedded")
    note = engines.engine_note("int8", greedy=False)  # outside a live run: short prompts only
    assert note.endswith(f"does not reproduce on prompts up to {engines.LONG_PROMPT} tokens)")


@needs_ct2
def test_where_the_int8_kernel_is_slow_ctranslate2_takes_every_prompt(monkeypatch):
    monkeypatch.setattr(int8_weights, "fast_here", lambda: False)
    for live in (False, True):
        run = backend_for("embedded", engine="int8", greedy=False, live=live)
        assert isinstance(run, ct2_engine.CTranslate2Backend) and run.seeded == live
        assert run.generate([LONG], SAMPLED)[0].text
    assert engines.engine_note("int8", greedy=False).endswith("the seed does not reproduce)")


@needs_ct2
@pytest.mark.skipif(not int8_weights.fast_here(), reason="the int8 kernel is slow on this CPU")
def test_forgetting_drops_what_the_int8_copy_keeps():
    run = backend_for("embedded", engine="int8")
    run.generate([LONG], SamplingConfig(temperature=0.0, max_new_tokens=2))
    row = run.long._encode([LONG], SAMPLED)[0]
    assert run.long.kept.longest(row, None, len(row))[0] is not None
    engines.forget_kept(run.loaded)
    assert run.long.kept.longest(row, None, len(row)) == (None, 0)
