"""How training computes on a CPU: fp32, or bf16 autocast (weights and gradients stay fp32;
matrix products take bf16 inputs) where the CPU multiplies bf16 in hardware.

Whether bf16 pays depends on the CPU, so `auto` asks the CPU. Without a bf16 instruction a
bf16 product is emulated and runs 5–12× slower than fp32; with one it runs faster — measured
(`bench/precision.py`, docs/benchmarks.md): on an AMD EPYC (Zen 4, `avx512_bf16`) a 2048²
product did 422 GFLOPS in bf16 against 163 in fp32 and a LoRA step of the embedded model
(4 × 256 tokens) took 3.65 s against 5.98 s; on a Sapphire Rapids core (`amx_bf16`) 1.56 s
against 2.46 s. A GPU holds its weights in bf16 already (`loading.dtype_name`), so there the
setting changes nothing, and autocast on a CPU computes as that GPU path does (the PM's and
the value's scalar heads stay fp32 in both: `reward_model.apply_head`; attention too, on a
CPU: `shared_attention`, where fp32 is the faster kernel). Generation and the
AI judge stay fp32: seeded samples and the judge's labels are what they were before.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.core.cpu import CPUINFO, cpuinfo_text

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16 = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of a bf16 dot product
HELP = (
    "How training computes on a CPU: auto (bf16 autocast where the CPU has bf16 in hardware "
    "— avx512_bf16 or AMX —, fp32 elsewhere), fp32, or bf16 (autocast; weights and gradients "
    "stay fp32). A GPU trains in bf16 either way."
)


@cache
def native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether this CPU has a bf16 dot-product instruction (Linux; False where unknown)."""
    lines = cpuinfo_text(cpuinfo).splitlines()
    flags = next((line for line in lines if line.startswith("flags")), "")
    return any(flag in flags.split() for flag in NATIVE_BF16)


def bf16_on(precision: str, on_cpu: bool) -> bool:
    """Whether a run with this `precision` computes in bf16 (on a GPU: always)."""
    if not on_cpu:
        return True
    return precision == "bf16" or (precision == "auto" and native_bf16())


def described(precision: str, on_cpu: bool) -> str:
    """What a run's products computed in, and why (its model card says it)."""
    if not on_cpu:
        return "bf16 (a GPU)"
    used = "bf16 autocast" if bf16_on(precision, on_cpu) else "fp32"
    if precision != "auto":
        return f"{used} (precision {precision})"
    why = "multiplies bf16 in hardware" if native_bf16() else "has no bf16 instruction"
    return f"{used} (precision auto: this CPU {why})"


def slow_warning(precision: str) -> str:
    """Why `bf16` asked of a CPU without a bf16 instruction is a bad idea ('' otherwise, and
    where a GPU trains)."""
    import torch

    if precision != "bf16" or native_bf16() or torch.cuda.is_available():
        return ""
    return (
        "precision bf16 on this CPU, which has no bf16 instruction: its products are "
        "emulated and run 5–12× slower than fp32 (auto takes fp32 here)."
    )


def computing(precision: str, device: Any) -> AbstractContextManager:
    """The context a CPU forward pass of training runs in: bf16 autocast where `bf16_on`,
    else nothing (a GPU model is bf16 already)."""
    import torch

    if torch.device(device).type == "cpu" and bf16_on(precision, on_cpu=True):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def precision_problem(precision: str) -> str | None:
    if precision not in PRECISIONS:
        return f"precision must be one of {', '.join(PRECISIONS)} (got {precision!r})"
    return None
