"""fp32 inference through oneDNN gives torch's products (summed in another order), keeps each
row's result whatever the batch, and leaves training and autocast on torch's own path."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from pipeline.core.errors import ConfigError
from pipeline.model import cpu_linear
from pipeline.model.cpu_linear import CHOICE_ENV, OneDNNLinear

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN"
)


def layer(out: int = 49, inp: int = 64) -> tuple[torch.nn.Linear, OneDNNLinear]:
    torch.manual_seed(0)
    plain = torch.nn.Linear(inp, out)
    fast = OneDNNLinear(inp, out)
    fast.load_state_dict(plain.state_dict())
    return plain, fast


def ops_run(module: torch.nn.Module, x: torch.Tensor) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        module(x)
    return {event.name for event in prof.events()}


def test_inference_goes_through_onednn_and_equals_torchs_product():
    plain, fast = layer()
    x = torch.randn(3, 7, 64)
    with torch.no_grad():
        assert "mkldnn::_linear_pointwise" in ops_run(fast, x)
        assert "mkldnn::_linear_pointwise" not in ops_run(plain, x)
        got, expected = fast(x), plain(x)
    assert got.shape == expected.shape == (3, 7, 49)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_rows_result_does_not_depend_on_the_batch_around_it():
    _, fast = layer(out=576, inp=576)
    x = torch.randn(17, 576)
    with torch.inference_mode():
        whole = fast(x)
        for rows in (2, 5, 8, 16):
            assert torch.equal(fast(x[:rows]), whole[:rows])


def test_training_and_autocast_keep_torchs_path():
    plain, fast = layer()
    x = torch.randn(4, 64)
    assert "mkldnn::_linear_pointwise" not in ops_run(fast, x)  # gradients recorded
    fast(x).sum().backward()
    plain(x).sum().backward()
    assert torch.equal(fast.weight.grad, plain.weight.grad)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast(x).dtype == torch.bfloat16  # autocast still casts the product


def test_install_follows_the_cpu_and_the_setting(monkeypatch):
    def installed(choice: str, amd: bool) -> bool:
        monkeypatch.setenv(CHOICE_ENV, choice)
        monkeypatch.setattr(cpu_linear, "amd_cpu", lambda: amd)
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        cpu_linear.install(model)
        kinds = {type(m) for m in model if isinstance(m, torch.nn.Linear)}
        assert len(kinds) == 1  # every Linear layer or none
        return kinds == {OneDNNLinear}

    assert installed("auto", amd=True) and not installed("auto", amd=False)
    assert installed("onednn", amd=False) and not installed("mkl", amd=True)
    monkeypatch.setenv(CHOICE_ENV, "blas")
    with pytest.raises(ConfigError, match=CHOICE_ENV):
        cpu_linear.wanted()


def test_the_vendor_is_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n")
    assert cpu_linear.amd_cpu.__wrapped__(info)
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n")
    assert not cpu_linear.amd_cpu.__wrapped__(info)
    assert not cpu_linear.amd_cpu.__wrapped__(tmp_path / "missing")


def test_a_loaded_cpu_models_layers_answer_as_before(monkeypatch):
    """The embedded model loaded with oneDNN products gives MKL's logits to fp32 rounding."""
    from pipeline.model import loading

    monkeypatch.setenv(CHOICE_ENV, "onednn")
    loaded = loading._load("embedded", loading.resolve_source("embedded"), "cpu")
    layers = [m for m in loaded.model.modules() if isinstance(m, torch.nn.Linear)]
    assert layers and all(type(m) is OneDNNLinear for m in layers)
    ids = loaded.tokenizer(["The sky is blue because", "Name a fruit"], padding=True)
    ids = torch.tensor(ids["input_ids"])
    with torch.inference_mode():
        fast = loaded.model(input_ids=ids).logits
        for module in layers:
            module.__class__ = torch.nn.Linear
        plain = loaded.model(input_ids=ids).logits
    assert (fast - plain).abs().max() < 1e-3 * plain.abs().max()
    assert torch.equal(fast.argmax(-1), plain.argmax(-1))
