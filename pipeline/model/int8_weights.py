"""Int8 weights in our own engine, for long prompts on the int8 engine.

At batch 1 a 135M model in fp32 is bound by reading its weights (~540 MB a token). Here
each Linear layer keeps them as int8, one scale per output row, and multiplies through
torch's weight-only int8 kernel (`_weight_int8pack_mm`, bf16 activations): measured on a
2-core AMD EPYC, one sampled token after a 1,171-token prompt took 27 ms against 77 ms in
fp32 and ~48 ms on CTranslate2 int8, whose attention copies the growing keys and values at
every token while this engine writes them into a cache allocated once. Its next-token
distributions stay close to fp32's: mean total variation 0.011 at temperature 0.7 on real
text (98% the same greedy token), where torch's dynamic int8 (activations quantized too)
moved them 0.18 and CTranslate2 int8 0.083.

The copy shares every other tensor (embeddings, norms) with the fp32 model; only the int8
weights are new (~a quarter of the fp32 ones). Layers the kernel cannot take (an input
width not a multiple of 16: it reads out of bounds there) stay in fp32. The kernel is
vectorised for x86's AVX2 and AVX-512 only (elsewhere a product took 1.5 ms against 0.1 in
fp32): on other CPUs the int8 engine keeps CTranslate2 for every prompt (`fast_here`).
"""

from __future__ import annotations

import copy
import threading
import weakref
from typing import Any

import torch

from pipeline.model.loading import LoadedModel

KERNEL_WIDTH = 16  # the kernel's input width must be a multiple of this
# From this many rows on (a prompt's prefill, a batch of 24 or more), a bf16 matrix product
# on the int8 values is as fast as the weight-only kernel, and faster beyond: measured, every
# layer of the embedded model once, 2-core AMD EPYC: 8 rows 50.6 against 31.2 ms, 16 rows 60.2
# against 47.1, 24 rows 62.4 against 61.4, 32 rows 67.9 against 87.3, 64 rows 95.5 against 147.3
GEMM_ROWS = 24
VECTORISED = ("AVX2", "AVX512")  # torch's CPU capabilities the kernel has code for


class Int8Linear(torch.nn.Module):
    """A Linear layer with int8 weights, one bf16 scale per output row (the int8 values are
    rounded against the bf16 scale itself, so the scale's own rounding costs nothing)."""

    weight_int8: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).to(torch.bfloat16)
        rounded = torch.round(weight / scales.float()[:, None]).clamp(-128, 127)
        self.register_buffer("weight_int8", rounded.to(torch.int8))
        self.register_buffer("scales", scales)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        if len(flat) < GEMM_ROWS:
            out = torch._weight_int8pack_mm(flat, self.weight_int8, self.scales)
        else:  # the same product: int8 values are exact in bf16, the scale applied after
            out = torch.nn.functional.linear(flat, self.weight_int8.to(torch.bfloat16))
            out = out * self.scales
        out = out.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def fast_here() -> bool:
    """Whether torch runs the int8 kernel's vectorised code on this CPU."""
    return torch.backends.cpu.get_cpu_capability() in VECTORISED


def takes(module: torch.nn.Module) -> bool:
    return (
        isinstance(module, torch.nn.Linear)
        and module.in_features % KERNEL_WIDTH == 0
        and module.weight.device.type == "cpu"
    )


def quantized_copy(model: Any) -> Any:
    """The model with every Linear layer the kernel takes as `Int8Linear`; every other
    tensor is the fp32 model's own (shared, not copied)."""
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    clone = copy.deepcopy(model, memo=shared)
    for parent in list(clone.modules()):
        for name, child in list(parent.named_children()):
            if takes(child):
                setattr(parent, name, Int8Linear(child))
    return clone.eval()


_copies: weakref.WeakKeyDictionary[Any, LoadedModel] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def int8_loaded(loaded: LoadedModel) -> LoadedModel:
    """The int8 copy of a model loaded once per process (made at the first asking, gone with
    the model). A model trained in place must not be asked: the copy keeps its old weights."""
    with _lock:
        if loaded.model not in _copies:
            with torch.no_grad():
                model = quantized_copy(loaded.model)
            _copies[loaded.model] = LoadedModel(loaded.name, loaded.source, model, loaded.tokenizer)
        return _copies[loaded.model]


def made(loaded: LoadedModel) -> LoadedModel | None:
    """The int8 copy if one was made (`forget_kept` clears what it keeps without making one)."""
    with _lock:
        return _copies.get(loaded.model)
