"""CTranslate2 as a generation engine: int8 weights, the same prompts and sampling settings
as the transformers engine, and several times its speed on a CPU at batch 1, where a 135M
model in fp32 is bound by reading its weights for every token (`bench/peers.py` measures
it against Hugging Face `generate` and CTranslate2 in fp32).

It only generates: steering hooks and hidden states need the model's own layers, so steered
generation stays on the transformers engine (`backend_for` says so when asked for both).
The model (an adapter merged into its base, as `load_model` gives it) is converted once per
model into the cache; `ctranslate2` is optional (`pip install ctranslate2`), and without it
`engine: int8` is refused by name and `auto` keeps the fp32 engine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch

from pipeline.config.settings import SamplingConfig
from pipeline.core.errors import ModelError
from pipeline.model.generation import ChatTokens, Message
from pipeline.model.loading import LoadedModel, build_once, cache_root
from pipeline.model.states_cache import source_identity

if TYPE_CHECKING:
    from pipeline.model.steering import Steering

INSTALL = "pip install ctranslate2"


def available() -> bool:
    return importlib.util.find_spec("ctranslate2") is not None


def fingerprint(source: str) -> str:
    """Names a model's weights by their identity as the states cache reads it (the folder's
    files, with its base's for an adapter; the hub id otherwise)."""
    identity = source_identity(source)
    return hashlib.sha256(json.dumps(identity or source).encode()).hexdigest()[:16]


def converted(loaded: LoadedModel) -> Path:
    """The model in CTranslate2's format (fp32 weights; int8 is chosen when it loads),
    converted once into the cache: processes converting at once neither race nor leave a
    half-written folder (see `build_once`)."""
    import ctranslate2

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory() as plain:
            loaded.model.save_pretrained(plain, safe_serialization=True)
            loaded.tokenizer.save_pretrained(plain)
            ctranslate2.converters.TransformersConverter(plain).convert(str(out), force=True)

    name = Path(loaded.source).name or "model"
    return build_once(cache_root() / "ctranslate2" / f"{name}-{fingerprint(loaded.source)}", build)


class CTranslate2Backend(ChatTokens):
    """Batched and streamed generation on CTranslate2, `compute` "int8" or "float32".

    Greedy answers are exact and reproducible. Sampled ones follow the same temperature and
    top-p but not the seed: CTranslate2 seeds each of its threads once, when the thread
    first samples, so a seed set per call is not honoured (measured: the same seed gave
    different text on the next call). Where a seed must reproduce, `auto` keeps fp32."""

    def __init__(self, loaded: LoadedModel, max_batch_size: int = 32, compute: str = "int8"):
        import ctranslate2

        super().__init__(loaded, max_batch_size)
        self.generator = ctranslate2.Generator(
            str(converted(loaded)),
            device="cpu",
            compute_type=compute,
            intra_threads=torch.get_num_threads(),
        )
        self.end_tokens = self.loaded.tokenizer.convert_ids_to_tokens(self.stop_ids.tolist())

    def _options(self, config: SamplingConfig) -> dict:
        greedy = config.temperature == 0
        return {
            "max_length": config.max_new_tokens,
            "sampling_topk": 1 if greedy else 0,
            "sampling_topp": 1.0 if greedy else config.top_p,
            "sampling_temperature": 1.0 if greedy else config.temperature,
            "end_token": self.end_tokens,
        }

    def _tokens(self, rows: list[list[int]]) -> list[list[str]]:
        return [self.loaded.tokenizer.convert_ids_to_tokens(r) for r in rows]

    def _run(self, rows: list[list[int]], config: SamplingConfig) -> list[list[int]]:
        """New token ids per row, the end-of-turn token included when the row stopped."""
        results = self.generator.generate_batch(
            self._tokens(rows),
            max_batch_size=self.max_batch_size,
            include_prompt_in_result=False,
            return_end_token=True,
            **self._options(config),
        )
        return [r.sequences_ids[0] for r in results]

    def new_ids(
        self,
        conversations: list[list[Message]],
        config: SamplingConfig,
        seeds: list[int] | None = None,
        steering: Steering | None = None,
    ) -> list[list[int]]:
        refuse_steering(steering)
        return self._run(self._encode(conversations, config), config)

    def token_stream(
        self, conversation: list[Message], config: SamplingConfig, steering: Steering | None
    ) -> Iterator[int]:
        refuse_steering(steering)
        (row,) = self._tokens(self._encode([conversation], config))
        steps = self.generator.generate_tokens(row, **self._options(config))
        return (step.token_id for step in steps)


def refuse_steering(steering: Steering | None) -> None:
    if steering is not None:
        raise ModelError(
            "Steering needs the model's own layers: it runs on the fp32 engine, not int8."
        )
