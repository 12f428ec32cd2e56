"""CTranslate2 as a generation engine: int8 weights, the same prompts and sampling settings
as the transformers engine, and 4.6× its speed on a CPU at batch 1, where a 135M
model in fp32 is bound by reading its weights for every token (`bench/peers.py` measures
it against Hugging Face `generate` and CTranslate2 in fp32).

It only generates: steering hooks and hidden states need the model's own layers, so steered
generation stays on the transformers engine (`backend_for` says so when asked for both).
The model (an adapter merged into its base, as `load_model` gives it) is converted once per
model into the cache; `ctranslate2` is optional (`pip install ctranslate2`), and without it
`engine: int8` is refused by name and `auto` keeps the fp32 engine.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import torch

from pipeline.config.settings import SamplingConfig
from pipeline.core.errors import ModelError
from pipeline.model.generation import KEEP_ROWS, ChatTokens, Message, prompt_ids
from pipeline.model.loading import LoadedModel, build_once, cache_root
from pipeline.model.scoring import MIN_SHARED_PREFIX, common_start, shared_prefix_length
from pipeline.model.states_cache import source_identity

if TYPE_CHECKING:
    from pipeline.model.steering import Steering

INSTALL = "pip install ctranslate2"


def available() -> bool:
    return importlib.util.find_spec("ctranslate2") is not None


_import_lock = threading.Lock()


def library() -> Any:
    """CTranslate2, imported once with its own OpenMP library. Imported as is, its calls bind
    to the copy torch loaded first (the global one), and its threads then count among torch's:
    with more threads than cores, every small parallel step of torch's waits for a sleeping
    thread (an int8 product 28 µs before CTranslate2 had generated, 75 µs after; see
    pipeline.core.cpu). Its library is therefore loaded first with RTLD_DEEPBIND, which makes
    it look up its own libraries first, the OpenMP copy its wheel ships among them (after:
    29 µs); the module's import then finds it loaded. Only that library is loaded so (not
    through Python's process-wide dlopen flags, which an import in another thread at that
    instant would take too). Not under a preloaded allocator (jemalloc for PPO): it would
    then take libc's malloc while memory it frees came from the preloaded one (measured: an
    abort at exit)."""
    with _import_lock:
        if "ctranslate2" not in sys.modules:
            if not os.environ.get("LD_PRELOAD"):
                for path in shipped_libraries():
                    ctypes.CDLL(str(path), mode=os.RTLD_NOW | os.RTLD_DEEPBIND)
            import ctranslate2  # noqa: F401
    return sys.modules["ctranslate2"]


def shipped_libraries() -> list[Path]:
    """CTranslate2's own library as its wheel ships it (none for other builds, which then
    load as they are)."""
    spec = importlib.util.find_spec("ctranslate2")
    if spec is None or spec.origin is None:
        return []
    return sorted((Path(spec.origin).parent.parent / "ctranslate2.libs").glob("libctranslate2*"))


def fingerprint(source: str) -> str:
    """Names a model's weights by their identity as the states cache reads it (the folder's
    files, with its base's for an adapter; the hub id otherwise)."""
    identity = source_identity(source)
    return hashlib.sha256(json.dumps(identity or source).encode()).hexdigest()[:16]


def cache_folder(loaded: LoadedModel, stored: str | None = None) -> Path:
    """Where `converted` keeps a model in the cache (named by its weights and how stored)."""
    name = Path(loaded.source).name or "model"
    suffix = f"-{stored}" if stored else ""
    return cache_root() / "ctranslate2" / f"{name}-{fingerprint(loaded.source)}{suffix}"


def converted(loaded: LoadedModel, stored: str | None = None) -> Path:
    """The model in CTranslate2's format, converted once into the cache: processes
    converting at once neither race nor leave a half-written folder (see `build_once`).
    Weights are kept in fp32 (int8 is chosen when an engine loads), or `stored` "int8":
    a quarter the size, an engine loads it in ~0.15 s instead of ~0.5 (`Fresh` loads one
    per seeded run)."""
    ctranslate2 = library()

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory() as plain:
            loaded.model.save_pretrained(plain, safe_serialization=True)
            loaded.tokenizer.save_pretrained(plain)
            converter = ctranslate2.converters.TransformersConverter(plain)
            converter.convert(str(out), quantization=stored, force=True)

    return build_once(cache_folder(loaded, stored), build)


def new_generator(path: Path | str, compute: str, replicas: int, threads: int) -> Any:
    """A CTranslate2 engine on the CPU: `replicas` side by side, `threads` each."""
    return library().Generator(
        str(path), device="cpu", compute_type=compute, inter_threads=replicas, intra_threads=threads
    )


# A lone prompt up to this many tokens runs on one thread (a replica of the batch engine):
# measured, 64 new tokens, int8, greedy, 2 cores: one thread 1.15x two at 50 prompt tokens
# (its steps are too short to share), two threads 1.07x one at 150, 1.43x at 800 and 1,200
ONE_THREAD_PROMPT = 100
# CTranslate2 takes top-p by sorting the whole vocabulary at every sampled token (SmolLM2's
# 49,152 ids: 20.5 against 14.5 ms a token at batch 1); among the TOP_P_AMONG likeliest it
# is a partial sort. That truncation moves the sampled distribution where the nucleus is
# wide: measured on 2,023 steps of live chains, the mean total variation it adds is 2.8e-4
# at temperature 0.7 (top-p 0.95), 0.3% of what int8's own rounding moves it (8.3e-2);
# 1.4% at 0.8 and 10% at 1.0 — so only up to these settings (docs/benchmarks.md).
TOP_P_AMONG = 1000
TOP_P_AMONG_UP_TO = (0.7, 0.95)  # (temperature, top-p)
STATIC_BYTES = 256 * 2**20  # kept starts' keys and values, at most, before an engine reloads
SEEN_PROMPTS = 8  # a lone prompt's static start is looked for among this many before it


def candidates(config: SamplingConfig) -> int:
    """How many of the likeliest tokens a sampled step takes its top-p among (0: all); see
    TOP_P_AMONG."""
    temperature, top_p = TOP_P_AMONG_UP_TO
    return TOP_P_AMONG if config.temperature <= temperature and config.top_p <= top_p else 0


class Replicas:
    """One CTranslate2 engine in one thread layout, and the static prompts it keeps.

    CTranslate2 keeps the keys and values of every *static prompt* it is given, so a start
    that prompts keep repeating (a chain's few-shot examples and question, a batch's system
    prompt) is computed once; it keeps them without a bound, so past STATIC_BYTES of them
    the engine is loaded afresh."""

    def __init__(
        self,
        path: Path,
        compute: str,
        replicas: int,
        threads: int,
        bytes_per_token: int,
        load: Callable[[], Any] | None = None,
    ):
        self.layout = (str(path), compute, replicas, threads)
        self.bytes_per_token = bytes_per_token
        self.seen: deque[tuple[int, ...]] = deque(maxlen=SEEN_PROMPTS)
        self.lock = threading.Lock()
        self.make, self.loads = load or (lambda: new_generator(*self.layout)), 0
        self._load()

    def _load(self) -> None:
        self.generator = None  # the old engine's memory goes before the new one's comes
        torch_threads = torch.get_num_threads()
        self.generator = self.make()
        torch.set_num_threads(torch_threads)  # it set this thread's OpenMP threads to its own
        self.statics: set[tuple[int, ...]] = set()
        self.loads += 1

    def forget(self) -> None:
        """Drop every kept start and seen prompt (the engine is loaded afresh)."""
        with self.lock:
            self.seen.clear()
            self._load()

    def static(
        self, rows: list[list[int]], starts: Iterable[tuple[int, ...]] = ()
    ) -> tuple[int, ...]:
        """The start to hand CTranslate2 as its static prompt (`()` for none): one it already
        keeps or one the caller said its prompts will repeat (`starts`: see `keep_start`),
        when that covers at least half of what could be shared; else the start every row of
        a batch shares, or the longest start a lone prompt shares with an earlier one."""
        limit = min(len(r) for r in rows) - 1  # each row keeps a token of its own
        if len(rows) > 1:
            n = shared_prefix_length(rows)
        else:
            n = max((common_start(s, rows[0], limit) for s in self.seen), default=0)
        kept = [
            s
            for s in self.statics.union(starts)
            if len(s) <= limit and all(common_start(s, r, len(s)) == len(s) for r in rows)
        ]
        best = max(kept, key=len, default=())
        if best and 2 * len(best) >= n:
            return best
        return tuple(rows[0][:n]) if n >= MIN_SHARED_PREFIX else ()

    def prompted(
        self,
        rows: list[list[int]],
        tokens: Callable,
        starts: Iterable[tuple[int, ...]] = (),
    ) -> tuple[Any, dict]:
        """The engine and the rows as it takes them: `start_tokens` after the static prompt,
        if any (kept from now on)."""
        with self.lock:
            static = self.static(rows, starts)
            if len(rows) <= KEEP_ROWS:
                self.seen.extend(tuple(r) for r in rows)
            if static and static not in self.statics:
                if (
                    sum(map(len, self.statics)) + len(static)
                ) * self.bytes_per_token > STATIC_BYTES:
                    self._load()
                self.statics.add(static)
            generator = self.generator
        if not static:
            return generator, {"start_tokens": tokens(rows)}
        rest = tokens([r[len(static) :] for r in rows])
        return generator, {"start_tokens": rest, "static_prompt": tokens([static])[0]}


_engines: dict[tuple[str, str, bool], Replicas] = {}
_engines_lock = threading.Lock()


def replicas_for(
    path: Path, compute: str, lone: bool, cores: int, bytes_per_token: int
) -> Replicas:
    """The process's engine for a model, shared by every backend (so what it keeps serves the
    next call too): `lone` (one long prompt at a time) gets every core in one replica;
    otherwise one replica per core on one thread each, a batch split by length across them
    (a short lone prompt runs on one of them). Measured (`bench/peers.py`): at batch 32 the
    split runs ~1.9x one replica on both cores (a 135M model's step is too short to share
    between threads); one long prompt runs 1.3–1.4x faster on both cores than on one."""
    key = (str(path), compute, lone)
    with _engines_lock:
        if key not in _engines:
            layout = (1, cores) if lone else (cores, 1)
            _engines[key] = Replicas(path, compute, *layout, bytes_per_token)
        return _engines[key]


class Fresh:
    """Engines whose thread has never sampled, for a seed that reproduces.

    CTranslate2 draws a thread's random numbers from one generator per thread, seeded from
    the process-wide seed when that thread first samples, and never again: on an engine
    that has sampled before, a seed set for a call is not honoured. So a seeded run (a live
    chain, a Playground answer) takes a freshly loaded engine of its own (int8 weights
    stored as int8, ~0.15 s), sets the seed just before its first sample, and the next
    engine is loaded in the background meanwhile."""

    def __init__(self, path: Path, cores: int):
        self.path, self.cores = path, cores
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ct2-fresh")
        self.lock = threading.Lock()
        self.ahead: Future | None = None

    def _load(self) -> Any:
        return new_generator(self.path, "int8", 1, self.cores)

    def forget(self) -> None:
        """Drop the engine loaded ahead (the next run loads one, as a first one does)."""
        with self.lock:
            self.ahead = None

    def take(self) -> Any:
        """An engine that has not sampled yet (the one loaded ahead, if any)."""
        with self.lock:
            taken = self.ahead or self.loader.submit(self._load)
            self.ahead = self.loader.submit(self._load)
        return taken.result()


SEEDING = threading.Lock()  # the seed a fresh thread reads is one for the whole process
_fresh: dict[str, Fresh] = {}


def fresh_for(path: Path, cores: int) -> Fresh:
    with _engines_lock:
        if str(path) not in _fresh:
            _fresh[str(path)] = Fresh(path, cores)
        return _fresh[str(path)]


def forget(path: Path) -> None:
    """What every engine of one converted model keeps, dropped (a timing that starts cold)."""
    with _engines_lock:
        engines = [e for (folder, _, _), e in _engines.items() if folder == str(path)]
        fresh = _fresh.get(str(path))
    for engine in engines:
        engine.forget()
    if fresh:
        fresh.forget()


class CTranslate2Backend(ChatTokens):
    """Batched and streamed generation on CTranslate2, `compute` "int8" or "float32".

    Greedy answers are exact and reproducible. Sampled ones follow the same temperature and
    top-p (up to 0.7 and 0.95, top-p among the 1,000 likeliest tokens: `candidates`); their
    seed reproduces only where `seeded` (int8): the backend then samples on an
    engine of its own (see `Fresh`), seeded by its first sampled call's seed, so the same
    calls in the same order (a live chain, a Playground answer: one backend per run) give
    the same text, and the engine keeps the run's repeated starts as static prompts.
    Unseeded, CTranslate2's threads keep drawing from where they were (measured: the same
    seed gave different text on the next call)."""

    def __init__(
        self,
        loaded: LoadedModel,
        max_batch_size: int = 32,
        compute: str = "int8",
        seeded: bool = False,
    ):
        super().__init__(loaded, max_batch_size)
        self.path, self.compute = converted(loaded), compute
        self.seeded = seeded and compute == "int8"
        self.own: Replicas | None = None  # a seeded run's engine, loaded at its first sample
        self.starts: deque[tuple[int, ...]] = deque(maxlen=SEEN_PROMPTS)  # see keep_start
        self.seeded_at = 0  # the own engine's load whose thread has read its seed
        self.cores = max(1, torch.get_num_threads())
        config = loaded.model.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = (
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        )
        self.bytes_per_token = 2 * config.num_hidden_layers * heads * head_dim * 4
        self.end_tokens = self.loaded.tokenizer.convert_ids_to_tokens(self.stop_ids.tolist())

    def _engine(self, lone: bool, config: SamplingConfig | None = None) -> Replicas:
        if self.seeded and config is not None and config.temperature > 0:
            if self.own is None:
                fresh = fresh_for(converted(self.loaded, "int8"), self.cores)
                self.own = Replicas(
                    fresh.path, "int8", 1, self.cores, self.bytes_per_token, load=fresh.take
                )
            return self.own
        return replicas_for(self.path, self.compute, lone, self.cores, self.bytes_per_token)

    @contextmanager
    def _seeding(self, engine: Replicas, seed: int) -> Iterator[threading.Event | None]:
        """Around a call until its first sample: on a seeded run's engine not yet seeded (or
        loaded afresh), set the seed its thread will read, holding the process-wide lock
        until the thread has read it. Yields the event the caller sets at its first sample
        (None where no seed is set): another run's seed waits for that, not for the call."""
        if engine is not self.own or self.seeded_at == engine.loads:
            yield None
            return
        with SEEDING:
            library().set_random_seed(seed % 2**32)
            yield threading.Event()
        self.seeded_at = engine.loads

    def keep_start(self, start: list[Message]) -> None:
        """A start the next prompts repeat, made the static prompt where it covers enough.

        CTranslate2 keeps a static prompt's keys and values for that exact start only; left
        to guess, a live chain's steps kept the few-shot examples three times over (the
        first critique had no earlier prompt to share them with, the first revision kept
        the whole critique prompt, the second critique the examples again)."""
        self.starts.append(tuple(prompt_ids(self.loaded.tokenizer, start, cue=False)))

    def _options(self, config: SamplingConfig) -> dict:
        greedy = config.temperature == 0
        return {
            "max_length": config.max_new_tokens,
            "sampling_topk": 1 if greedy else candidates(config),
            "sampling_topp": 1.0 if greedy else config.top_p,
            "sampling_temperature": 1.0 if greedy else config.temperature,
            "end_token": self.end_tokens,
        }

    def _tokens(self, rows: list[list[int]] | list[tuple[int, ...]]) -> list[list[str]]:
        return [self.loaded.tokenizer.convert_ids_to_tokens(list(r)) for r in rows]

    def _run(self, rows: list[list[int]], config: SamplingConfig, seed: int) -> list[list[int]]:
        """New token ids per row, the end-of-turn token included when the row stopped."""
        engine = self._engine(on_lone_engine(rows), config)
        generator, prompted = engine.prompted(rows, self._tokens, self.starts)
        per_replica = -(-len(rows) // engine.layout[2])  # one batch per replica, by length
        with self._seeding(engine, seed) as sampled:
            results = generator.generate_batch(
                **prompted,
                max_batch_size=min(self.max_batch_size, per_replica),
                asynchronous=True,
                include_prompt_in_result=False,
                return_end_token=True,
                callback=None if sampled is None else lambda step: sampled.set(),
                **self._options(config),
            )
            if sampled is not None:  # once the seed is read, other runs may set theirs
                while not sampled.wait(0.01) and not all(r.done() for r in results):
                    pass
        return [r.result().sequences_ids[0] for r in results]

    def new_ids(
        self,
        conversations: list[list[Message]],
        config: SamplingConfig,
        seeds: list[int] | None = None,
        steering: Steering | None = None,
    ) -> list[list[int]]:
        refuse_steering(steering)
        seed = seeds[0] if seeds else config.seed
        return self._run(self._encode(conversations, config), config, seed)

    def token_stream(
        self, conversation: list[Message], config: SamplingConfig, steering: Steering | None
    ) -> Iterator[int]:
        refuse_steering(steering)
        rows = self._encode([conversation], config)
        engine = self._engine(on_lone_engine(rows), config)
        generator, prompted = engine.prompted(rows, self._tokens, self.starts)
        (row,) = prompted.pop("start_tokens")

        def steps() -> Iterator[int]:
            with self._seeding(engine, config.seed):  # until the first sample (it is read)
                generated = generator.generate_tokens(row, **prompted, **self._options(config))
                first = next(generated, None)
            if first is not None:
                yield first.token_id
                yield from (step.token_id for step in generated)

        return steps()


def on_lone_engine(rows: list[list[int]]) -> bool:
    """Whether rows run on the lone engine (every core on one replica): one prompt, longer
    than ONE_THREAD_PROMPT; shorter ones run on a one-thread replica of the batch engine."""
    return len(rows) == 1 and len(rows[0]) > ONE_THREAD_PROMPT


def refuse_steering(steering: Steering | None) -> None:
    if steering is not None:
        raise ModelError(
            "Steering needs the model's own layers: it runs on the fp32 engine, not int8."
        )
