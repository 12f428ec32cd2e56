"""fp32 Linear layers of CPU inference through oneDNN on AMD processors.

torch's CPU builds multiply fp32 matrices with Intel's MKL, which on an AMD processor runs
paths far below the chip's speed; oneDNN, torch's other CPU library (the one bf16 products
already go through), picks its kernels by the instruction sets a CPU has. Measured on a
2-core AMD EPYC (Zen 4), fp32 (`bench/fp32_products.py`, docs/benchmarks.md): the embedded
model's output layer (576 × 49,152) took 26.8 ms at 16 rows in MKL against 11.7 ms in
oneDNN, and 14.1 against 6.8 ms at one row (the small layers lose a little at one row, the
MLP's gain up to a fifth at 16); a batch of 16 sampled answers of 64 tokens took 11.9 s
against 9.4–10.1 s, and a forward pass of 16 rows × 81 tokens 2.5–2.7 s against 1.9–2.1 s.

So on an AMD CPU, `install` has every Linear layer of a model compute its fp32 inference (no
gradients recorded, no autocast) by oneDNN's product: the same fp32 arithmetic summed in
another order (the embedded model's logits within 4e-6 of their largest of MKL's, next-token
probabilities within 1e-5), and, as with MKL, a row's result does not depend on the batch
around it but for a batch of one. Training (gradients) and autocast keep torch's own path.
`CSTUDIO_FP32_PRODUCTS=mkl` keeps MKL everywhere, `=onednn` takes oneDNN on any x86 CPU (not
measured on Intel's, where MKL is at home).
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path
from typing import Any

import torch

from pipeline.core.cpu import CPUINFO, cpuinfo_text
from pipeline.core.errors import ConfigError

CHOICE_ENV = "CSTUDIO_FP32_PRODUCTS"
CHOICES = ("auto", "mkl", "onednn")


class OneDNNLinear(torch.nn.Linear):
    """A Linear layer whose fp32 inference goes through oneDNN (the module's note)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.dtype is torch.float32
            and self.weight.dtype is torch.float32
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
        ):
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return super().forward(x)


@cache
def amd_cpu(cpuinfo: Path = CPUINFO) -> bool:
    """Whether this is an AMD processor (Linux; False where unknown)."""
    return "AuthenticAMD" in cpuinfo_text(cpuinfo)


def choice() -> str:
    raw = os.environ.get(CHOICE_ENV, "auto").strip().lower() or "auto"
    if raw not in CHOICES:
        raise ConfigError(f"{CHOICE_ENV} must be one of {', '.join(CHOICES)} (got {raw!r}).")
    return raw


def wanted() -> bool:
    """Whether this process's CPU models multiply fp32 through oneDNN."""
    picked = choice()
    usable = (
        platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()
    )
    return usable and (picked == "onednn" or (picked == "auto" and amd_cpu()))


def install(model: Any) -> None:
    """Turn a CPU model's Linear layers into `OneDNNLinear` where `wanted` (in place; a
    layer added later, such as a LoRA adapter's, keeps torch's path)."""
    if not wanted():
        return
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.device.type == "cpu":
            module.__class__ = OneDNNLinear
