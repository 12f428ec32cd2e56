"""Which engine generates: `fp32` (the transformers engine: steering, hidden states, seeds
that reproduce in any batch), `int8` (int8 weights, several times faster on a CPU;
generation only: prompts up to LONG_PROMPT tokens on CTranslate2, longer ones on an int8
copy of the weights in the transformers engine, `int8_weights`; a sampling seed reproduces
on CTranslate2 only in a live run of the studio, on an engine of its own) or `auto` (int8
where it gives the same kind of answer — CTranslate2 installed, a CPU model, no steering,
greedy or a live run — and is faster; else fp32; greedy, long prompts stay on fp32, whose
exact answer prompt lookup drafts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from pipeline.config.settings import SamplingConfig, engine_problem
from pipeline.core.errors import ModelError
from pipeline.model import ct2_engine, int8_weights
from pipeline.model.generation import (
    ChatTokens,
    LocalBackend,
    Message,
    TransformersBackend,
    shared,
)
from pipeline.model.loading import LoadedModel, load_model

if TYPE_CHECKING:
    from pipeline.model.steering import Steering

# A prompt longer than this runs faster on the transformers engine than on CTranslate2
# (measured, batch 8, 64 new tokens: CTranslate2 int8 2.7x fp32 at 106 prompt tokens, 1.46x
# at 214, 0.95x at 394, 0.65x for a chains job at ~1,200; the live chain, batch 1 at ~1,200:
# fp32 16.1 s, int8 18.4 s): CTranslate2 grows its keys and values by copying at every token
# and forwards a batch's uneven prompt ends one token a step, where the transformers engine
# keeps the prompts' keys and values (and drafts by prompt lookup at batch 1).
LONG_PROMPT = 384


def int8_problem(
    loaded: LoadedModel | None = None,
    steered: bool = False,
    greedy: bool = True,
    live: bool = False,
) -> str:
    """Why the int8 engine cannot generate here, or (`greedy` and `live` False: a batch
    job samples) why `auto` does not choose it ('' when it can)."""
    if not ct2_engine.available():
        return f"the int8 engine is not installed ({ct2_engine.INSTALL})"
    if steered:
        return "steering runs on the fp32 engine (it needs the model's own layers)"
    if loaded is not None and loaded.device.type != "cpu":
        return f"the int8 engine runs on the CPU and the model is on {loaded.device.type}"
    if not (greedy or live):
        return "a batch's sampling seeds reproduce on the fp32 engine only"
    return ""


def chosen(
    engine: str,
    loaded: LoadedModel | None = None,
    steered: bool = False,
    greedy: bool = True,
    live: bool = False,
) -> str:
    """The engine that runs for a setting: `auto` resolved; `int8` where it cannot run is
    refused by name (asked for by name outside a live run, it samples without a reproducible
    seed)."""
    if problem := engine_problem(engine):
        raise ModelError(problem)
    if engine == "fp32":
        return "fp32"
    if engine == "int8":
        problem = int8_problem(loaded, steered)
        if problem:
            raise ModelError(f"engine int8 cannot run: {problem}.")
        return "int8"
    return "fp32" if int8_problem(loaded, steered, greedy, live) else "int8"


def backend_for(
    model_name: str,
    max_batch_size: int = 32,
    engine: str = "fp32",
    steered: bool = False,
    greedy: bool = True,
    live: bool = False,
) -> LocalBackend:
    """The generation backend for a model name (embedded alias, folder or hub id) on the
    engine asked for (`steered`: the caller will steer it; `greedy`: it will not sample;
    `live`: one person waits for one run's answers, so CTranslate2 samples them on a fresh
    engine of the run's own, where its seed reproduces — see ct2_engine.Fresh; the int8
    copy in the transformers engine reproduces a seed anyway)."""
    loaded = load_model(model_name)
    fp32 = TransformersBackend(loaded, max_batch_size=max_batch_size, kept=shared(loaded))
    if chosen(engine, loaded, steered, greedy, live) == "fp32":
        return fp32
    short = ct2_engine.CTranslate2Backend(loaded, max_batch_size, seeded=live)
    if engine == "auto" and greedy:  # long greedy prompts: fp32's exact answer, drafted
        return AutoBackend(fp32, short)
    if not int8_weights.fast_here():
        return short
    weights = int8_weights.int8_loaded(loaded)
    return AutoBackend(TransformersBackend(weights, max_batch_size, shared(weights)), short)


def forget_kept(loaded: LoadedModel) -> None:
    """Drop what both engines keep of a model's earlier prompts, so the next call starts as
    the first in a fresh process would (`bench/live_chain.py` times a first chain so)."""
    shared(loaded).clear()
    if weights := int8_weights.made(loaded):
        shared(weights).clear()
    if ct2_engine.available():
        ct2_engine.forget(ct2_engine.cache_folder(loaded))
        ct2_engine.forget(ct2_engine.cache_folder(loaded, "int8"))


class AutoBackend(ChatTokens):
    """Each call on the engine that is faster for it: prompts up to LONG_PROMPT tokens on
    CTranslate2 int8 (`short`), longer ones on the transformers engine (`long`: fp32 for
    greedy `auto`, whose answer it keeps exact; otherwise the int8 copy of the weights,
    `int8_weights`), whose cache is allocated once where CTranslate2 copies it every token."""

    def __init__(self, long: TransformersBackend, short: ct2_engine.CTranslate2Backend):
        super().__init__(short.loaded, long.max_batch_size)  # the model asked for
        self.long, self.short = long, short

    def engine_for(self, rows: list[list[int]]) -> ChatTokens:
        return self.long if max(map(len, rows)) > LONG_PROMPT else self.short

    def new_ids(self, conversations: list[list[Message]], config: SamplingConfig, *rest):
        """Each conversation's new token ids, from the engine faster for this batch (`rest`:
        the seeds and steering, as every engine takes them)."""
        engine = self.engine_for(self._encode(conversations, config))
        return engine.new_ids(conversations, config, *rest)

    def keep_start(self, start: list[Message]) -> None:
        self.short.keep_start(start)  # the transformers engine keeps starts unasked

    def token_stream(
        self, conversation: list[Message], config: SamplingConfig, steering: Steering | None
    ) -> Iterator[int]:
        engine = self.engine_for(self._encode([conversation], config))
        return engine.token_stream(conversation, config, steering)


def engine_note(
    engine: str,
    loaded: LoadedModel | None = None,
    steered: bool = False,
    greedy: bool = True,
    live: bool = False,
) -> str:
    """Which engine a setting runs on, and why `auto` kept fp32 ('' for fp32 asked by name)."""
    if chosen(engine, loaded, steered, greedy, live) == "int8":
        if not greedy:
            return (
                "on the int8 engine (sampled: its seed reproduces on int8, on an engine of "
                "this run's own; a batch job samples other text on fp32)"
                if live
                else "on the int8 engine (sampled: the seed does not reproduce"
                + (f" on prompts up to {LONG_PROMPT} tokens)" if int8_weights.fast_here() else ")")
            )
        return "on the int8 engine" + (" (fp32 for long prompts)" if engine == "auto" else "")
    if engine == "fp32":
        return ""
    return f"on the fp32 engine ({int8_problem(loaded, steered, greedy, live)})"  # auto kept fp32
