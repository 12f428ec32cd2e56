"""Which engine generates: `fp32` (the transformers engine: steering, hidden states, seeds
that reproduce), `int8` (CTranslate2, several times faster on a CPU; generation only; a
sampling seed does not reproduce there) or `auto` (int8 where it gives the same kind of
answer — CTranslate2 installed, a CPU model, no steering, greedy — else fp32)."""

from __future__ import annotations

from pipeline.config.settings import engine_problem
from pipeline.core.errors import ModelError
from pipeline.model import ct2_engine
from pipeline.model.generation import LocalBackend, TransformersBackend
from pipeline.model.loading import LoadedModel, load_model


def int8_problem(
    loaded: LoadedModel | None = None, steered: bool = False, greedy: bool = True
) -> str:
    """Why the int8 engine cannot generate here, or (`greedy` False) why `auto` does not
    choose it ('' when it can)."""
    if not ct2_engine.available():
        return f"the int8 engine is not installed ({ct2_engine.INSTALL})"
    if steered:
        return "steering runs on the fp32 engine (it needs the model's own layers)"
    if loaded is not None and loaded.device.type != "cpu":
        return f"the int8 engine runs on the CPU and the model is on {loaded.device.type}"
    if not greedy:
        return "a sampling seed reproduces on the fp32 engine only"
    return ""


def chosen(
    engine: str, loaded: LoadedModel | None = None, steered: bool = False, greedy: bool = True
) -> str:
    """The engine that runs for a setting: `auto` resolved; `int8` where it cannot run is
    refused by name (asked for by name, it samples without a reproducible seed)."""
    if problem := engine_problem(engine):
        raise ModelError(problem)
    if engine == "fp32":
        return "fp32"
    if engine == "int8":
        problem = int8_problem(loaded, steered)
        if problem:
            raise ModelError(f"engine int8 cannot run: {problem}.")
        return "int8"
    return "fp32" if int8_problem(loaded, steered, greedy) else "int8"


def backend_for(
    model_name: str,
    max_batch_size: int = 32,
    engine: str = "fp32",
    steered: bool = False,
    greedy: bool = True,
) -> LocalBackend:
    """The generation backend for a model name (embedded alias, folder or hub id) on the
    engine asked for (`steered`: the caller will steer it; `greedy`: it will not sample)."""
    loaded = load_model(model_name)
    if chosen(engine, loaded, steered, greedy) == "int8":
        return ct2_engine.CTranslate2Backend(loaded, max_batch_size)
    return TransformersBackend(loaded, max_batch_size=max_batch_size)


def engine_note(
    engine: str, loaded: LoadedModel | None = None, steered: bool = False, greedy: bool = True
) -> str:
    """Which engine a setting runs on, and why `auto` kept fp32 ('' for fp32 asked by name)."""
    if chosen(engine, loaded, steered, greedy) == "int8":
        return "on the int8 engine"
    if engine == "fp32":
        return ""
    return f"on the fp32 engine ({int8_problem(loaded, steered, greedy)})"  # auto kept fp32
