"""The int8 engine (CTranslate2) against the fp32 one, on the embedded model, and which
engine a setting picks."""

import importlib.util

import pytest
import torch

from pipeline.cai.critique import few_shot_messages, run_chains
from pipeline.config.settings import DEFAULT_SAMPLING, ChainConfig, SamplingConfig
from pipeline.core.errors import ModelError
from pipeline.model import ct2_engine, engines
from pipeline.model.engines import backend_for
from pipeline.model.generation import TransformersBackend, chat, prompt_ids
from pipeline.model.scoring import teacher_forced
from tests.records import requests

needs_ct2 = pytest.mark.skipif(not ct2_engine.available(), reason=ct2_engine.INSTALL)
PROMPTS = [
    chat(text)
    for text in (
        "What is the capital of France?",
        "Name three colours.",
        "How do I bake bread?",
        "Write a haiku about rain.",
    )
]
GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=24)
SHORT = SamplingConfig(temperature=0.0, max_new_tokens=6)  # what is tested is the prompt


def test_a_setting_picks_its_engine_and_refuses_one_that_cannot_run():
    with pytest.raises(ModelError, match="engine must be one of auto, fp32, int8"):
        engines.chosen("fast")
    assert engines.chosen("fp32") == "fp32"
    assert engines.chosen("auto", steered=True) == "fp32"  # steering needs the model's layers
    with pytest.raises(ModelError, match="steering runs on the fp32 engine"):
        engines.chosen("int8", steered=True)
    assert engines.chosen("auto") == ("int8" if ct2_engine.available() else "fp32")


@needs_ct2
def test_the_int8_engine_answers_like_the_fp32_one_and_streams_the_same_text():
    fp32 = backend_for("embedded", engine="fp32")
    int8 = backend_for("embedded", engine="int8")
    assert isinstance(fp32, TransformersBackend)
    # int8 by name: these short prompts on CTranslate2 (long ones on int8 weights in ours)
    assert isinstance(int8, engines.AutoBackend)
    assert isinstance(int8.short, ct2_engine.CTranslate2Backend)
    full = ct2_engine.CTranslate2Backend(int8.loaded, compute="float32")
    # the same weights in fp32 on the other engine: the same greedy answers
    assert [g.text for g in full.generate(PROMPTS, GREEDY)] == [
        g.text for g in fp32.generate(PROMPTS, GREEDY)
    ]
    answers = int8.generate(PROMPTS, GREEDY)
    assert all(g.text and 0 < g.new_tokens <= 24 for g in answers)
    # int8 rounding differs with the CPU's kernels (AVX2, AVX-512) and so do its greedy
    # words; what must hold everywhere is that the full-precision model finds them about as
    # likely as its own (here within 0.2-0.6 nats a token; a broken quantization is ~5 off)
    assert mean_logprob(fp32, answers) > mean_logprob(fp32, fp32.generate(PROMPTS, GREEDY)) - 1.0
    reasons: list[str] = []
    streamed = "".join(int8.stream(PROMPTS[0], GREEDY, finished=reasons.append))
    alone = int8.generate(PROMPTS[:1], GREEDY)[0]  # int8 rounding also shifts with the batch
    assert streamed.strip() == alone.text and reasons == [alone.finish_reason]
    with pytest.raises(ModelError, match="Steering needs the model"):
        int8.generate(PROMPTS, GREEDY, steering=object())  # type: ignore[arg-type]


def mean_logprob(fp32: TransformersBackend, answers: list) -> float:
    """The fp32 model's mean log-likelihood per token of the `answers` to PROMPTS."""
    tokenizer = fp32.loaded.tokenizer
    contexts = [prompt_ids(tokenizer, p) for p in PROMPTS]
    tokens = [tokenizer(a.text, add_special_tokens=False)["input_ids"] for a in answers]
    scores = teacher_forced(fp32.loaded, contexts, tokens, batch_size=4)
    return sum(s.logprob for s in scores) / sum(s.tokens for s in scores)


@needs_ct2
def test_a_batch_job_samples_on_fp32_and_a_live_run_on_int8_where_its_seed_reproduces():
    int8 = backend_for("embedded", engine="int8")
    sampled = SamplingConfig(temperature=1.0, max_new_tokens=16, seed=7)
    assert all(g.text for g in int8.generate(PROMPTS, sampled))  # unseeded in a batch
    assert engines.chosen("auto", greedy=False) == "fp32"
    assert isinstance(backend_for("embedded", engine="auto", greedy=False), TransformersBackend)
    assert "batch's sampling seeds reproduce on the fp32 engine only" in engines.engine_note(
        "auto", greedy=False
    )

    def live():
        return backend_for("embedded", engine="auto", greedy=False, live=True)

    run = live()
    assert isinstance(run, engines.AutoBackend) and run.short.seeded
    assert "its seed reproduces on int8" in engines.engine_note("auto", greedy=False, live=True)
    with pytest.raises(ModelError, match="steering runs on the fp32 engine"):
        engines.chosen("int8", steered=True, greedy=False, live=True)
    first = [[g.text for g in run.generate(PROMPTS[:2], sampled)]]
    first.append([g.text for g in run.generate(PROMPTS[2:], sampled)])  # the run goes on
    int8.generate(PROMPTS, sampled)  # other engines' threads draw in between
    again = live()  # a new run, the same calls: the same answers
    assert [[g.text for g in again.generate(p, sampled)] for p in (PROMPTS[:2], PROMPTS[2:])] == (
        first
    )
    other = SamplingConfig(temperature=1.0, max_new_tokens=16, seed=1234)
    assert [g.text for g in live().generate(PROMPTS[:2], other)] != first[0]
    ended: list[str] = []
    streamed = ["".join(live().stream(PROMPTS[0], sampled, finished=ended.append)) for _ in "ab"]
    assert streamed[0] == streamed[1] and streamed[0].strip() and len(ended) == 2


@needs_ct2
def test_a_seeded_run_holds_the_seed_lock_until_it_has_sampled_not_to_its_end(monkeypatch):
    """Two live runs at once each give the text they give alone; the second sets its seed
    once the first has drawn its first token, not after the first's whole call."""
    import threading

    ctranslate2 = ct2_engine.library()
    long = SamplingConfig(temperature=2.0, max_new_tokens=200, seed=3)  # seldom ends early
    short = SamplingConfig(temperature=1.0, max_new_tokens=8, seed=5)

    def answer(prompt: list, config: SamplingConfig) -> str:
        run = backend_for("embedded", engine="auto", greedy=False, live=True)
        return run.generate([prompt], config)[0].text

    alone = {"long": answer(PROMPTS[0], long), "short": answer(PROMPTS[1], short)}
    seeding = threading.Event()
    set_seed = ctranslate2.set_random_seed
    monkeypatch.setattr(ctranslate2, "set_random_seed", lambda s: (set_seed(s), seeding.set()))
    got: dict[str, str] = {}
    ended: list[str] = []

    def run_long() -> None:
        got["long"] = answer(PROMPTS[0], long)
        ended.append("long")

    thread = threading.Thread(target=run_long)
    thread.start()
    assert seeding.wait(60)  # the long run holds the lock now
    got["short"] = answer(PROMPTS[1], short)
    ended.append("short")
    thread.join()
    assert got == alone and ended == ["short", "long"]


def test_top_p_is_taken_among_the_likeliest_only_where_that_moves_the_draw_little():
    assert ct2_engine.candidates(DEFAULT_SAMPLING) == ct2_engine.TOP_P_AMONG
    assert ct2_engine.candidates(SamplingConfig(temperature=1.0)) == 0  # a wide nucleus
    assert ct2_engine.candidates(SamplingConfig(top_p=1.0)) == 0  # no top-p: every token


@needs_ct2
def test_a_token_drawn_among_the_likeliest_is_one_top_p_itself_keeps():
    """The nucleus of the likeliest tokens is a part of the whole one: every token sampled
    (the fp32 weights on CTranslate2) is in the nucleus the full distribution gives."""
    fp32 = backend_for("embedded", engine="fp32")
    full = ct2_engine.CTranslate2Backend(fp32.loaded, compute="float32")
    sampled = SamplingConfig(max_new_tokens=24)
    contexts = full._encode(PROMPTS, sampled)
    for context, new in zip(contexts, full.new_ids(PROMPTS, sampled)):
        ids = torch.tensor([context + new])
        with torch.no_grad():
            logits = fp32.loaded.model(input_ids=ids).logits[0, len(context) - 1 : -1]
        probs = torch.softmax(logits / sampled.temperature, -1)
        ranked, order = probs.sort(-1, descending=True)
        kept = (ranked.cumsum(-1) - ranked) < sampled.top_p  # top-p over the whole vocabulary
        for step, token in enumerate(new):
            assert token in set(order[step][kept[step]].tolist())


@needs_ct2
def test_a_model_is_converted_once_and_named_by_its_weights(tmp_path):
    loaded = backend_for("embedded", engine="int8").loaded
    first = ct2_engine.converted(loaded)
    assert ct2_engine.converted(loaded) == first and (first / "model.bin").exists()
    (tmp_path / "model.safetensors").write_bytes(b"1")
    before = ct2_engine.fingerprint(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"22")
    assert ct2_engine.fingerprint(str(tmp_path)) != before  # retrained: converted again


@needs_ct2
def test_a_start_prompts_repeat_is_computed_once_and_answers_stay_the_same(monkeypatch):
    fp32 = backend_for("embedded", engine="fp32")
    full = ct2_engine.CTranslate2Backend(fp32.loaded, compute="float32")
    rules = "You answer in one short sentence. " * 16  # a long system prompt both share
    first, second = (chat(q, system=rules) for q in ("Name a fruit.", "Name a river."))
    lone = full._engine(lone=True)
    full.generate([first], SHORT)
    assert not any(len(s) > 60 for s in lone.statics)  # seen once: nothing to reuse yet
    answer = full.generate([second], SHORT)[0]
    shared = [s for s in lone.statics if len(s) > 60]
    assert len(shared) == 1  # the start both share is now CTranslate2's static prompt
    assert answer.text == fp32.generate([second], SHORT)[0].text  # and answers as before
    assert full.generate([second], SHORT)[0].text == answer.text
    # what it keeps is bounded: past STATIC_BYTES the engine starts afresh
    before = lone.generator
    monkeypatch.setattr(ct2_engine, "STATIC_BYTES", 1)
    full.generate([chat("Name a colour.", system="Be brief. " * 40)], SHORT)
    full.generate([chat("Name a tree.", system="Be brief. " * 40)], SHORT)
    assert lone.generator is not before and len(lone.statics) == 1


@needs_ct2
def test_a_chain_computes_its_few_shot_start_once():
    fp32 = backend_for("embedded", engine="fp32")
    full = ct2_engine.CTranslate2Backend(fp32.loaded, compute="float32")
    lone = full._engine(lone=True)
    lone.forget()
    request = requests(1)[0]
    constitution = request.constitution
    config = ChainConfig(rounds=2, batch_size=1)
    chain = list(run_chains(full, [request], config, SHORT))[-1][0]
    assert chain.final_answer is not None and config.few_shot
    start = [*few_shot_messages(constitution), {"role": "user", "content": chain.prompt}]
    long = [s for s in lone.statics if len(s) > 100]
    # the four steps after the first answer share one start (guessed, it was kept thrice)
    assert long == [tuple(prompt_ids(fp32.loaded.tokenizer, start, cue=False))]


@needs_ct2
def test_forgetting_drops_what_both_engines_keep_and_answers_stay_the_same():
    auto = backend_for("embedded", engine="auto")
    rules = "You answer in one short sentence. " * 16
    asked = [chat(q, system=rules) for q in ("Name a fruit.", "Name a river.")]
    before = [auto.generate([c], SHORT)[0].text for c in asked]  # int8 keeps their start
    auto.long.generate([asked[1]], SHORT)  # the fp32 engine keeps this prompt
    row = auto.long._encode([asked[1]], SHORT)[0]
    lone = auto.short._engine(lone=True)
    assert lone.statics and lone.seen and auto.long.kept.longest(row, None, len(row))[0]
    engines.forget_kept(auto.loaded)
    assert not lone.statics and not lone.seen
    assert auto.long.kept.longest(row, None, len(row)) == (None, 0)
    assert [auto.generate([c], SHORT)[0].text for c in asked] == before


@needs_ct2
def test_a_batch_is_split_across_one_replica_per_core_in_its_order():
    fp32 = backend_for("embedded", engine="fp32")
    full = ct2_engine.CTranslate2Backend(fp32.loaded, compute="float32")
    prompts = PROMPTS + [chat("Say hello."), chat("Count to three, then stop counting now.")]
    split, lone = full._engine(lone=False), full._engine(lone=True)
    cores = lone.layout[3]  # one replica on every core; a batch: a replica per core, 1 thread
    assert split.layout[2:] == (cores, 1) and lone.layout[2] == 1
    # one prompt: on every core when long, on one thread (a replica of the batch engine)
    # when short (its steps are too short to share between threads)
    assert ct2_engine.on_lone_engine([[1] * (ct2_engine.ONE_THREAD_PROMPT + 1)])
    assert not ct2_engine.on_lone_engine([[1] * ct2_engine.ONE_THREAD_PROMPT])
    assert not ct2_engine.on_lone_engine([[1] * 500] * 2)
    assert full.generate(prompts[:1], SHORT)[0].text == fp32.generate(prompts[:1], SHORT)[0].text
    assert [g.text for g in full.generate(prompts, SHORT)] == [
        g.text for g in fp32.generate(prompts, SHORT)
    ]
    assert torch.get_num_threads() == cores  # loading an engine leaves torch's threads alone


@needs_ct2
def test_auto_runs_each_call_where_it_is_faster():
    auto = backend_for("embedded", engine="auto")
    assert isinstance(auto, engines.AutoBackend)
    long = engines.LONG_PROMPT + 1
    assert auto.engine_for([[1] * long]) is auto.long  # a long prompt, alone or not: fp32
    assert auto.engine_for([[1] * 100] * 8) is auto.short  # short prompts: int8
    assert auto.engine_for([[1] * 100] * 7 + [[1] * long]) is auto.long
    rules = "Answer in one short, careful sentence and refuse anything harmful. " * 40
    batch = [chat(q, system=rules) for q in ("Name a fruit.", "Name a river.", "Name a bird.")]
    assert min(map(auto.count_tokens, batch)) > engines.LONG_PROMPT
    fp32 = backend_for("embedded", engine="fp32")
    expected = [g.text for g in fp32.generate(batch, SHORT)]
    assert [g.text for g in auto.generate(batch, SHORT)] == expected
    assert "".join(auto.stream(batch[0], SHORT)).strip() == expected[0]  # alone, streamed


@needs_ct2
def test_ctranslate2_runs_on_the_openmp_library_its_wheel_ships_not_torchs():
    """Bound to torch's, its threads would count among torch's and slow torch's small
    parallel steps (pipeline.core.cpu); the dynamic loader says where its calls go."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    spec = importlib.util.find_spec("ctranslate2")
    assert spec is not None and spec.origin is not None
    ships = list((Path(spec.origin).parent.parent / "ctranslate2.libs").glob("libgomp*"))
    if not ships:
        pytest.skip("this ctranslate2 build ships no OpenMP library of its own")
    code = "import torch; from pipeline.model import ct2_engine; ct2_engine.library()"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}, "LD_DEBUG": "bindings"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0
    bound = [
        line for line in done.stderr.splitlines() if "libctranslate2" in line and "`GOMP_" in line
    ]
    assert bound and all(ships[0].name in line.split(" to ")[1] for line in bound)


@needs_ct2
def test_under_a_preloaded_allocator_ctranslate2_keeps_the_global_libraries():
    """Bound to its own libraries, it would take libc's malloc beside the preloaded one and
    free the one's memory with the other's (an abort at exit)."""
    import os
    import subprocess
    import sys

    from pipeline.core import heap

    if not heap.jemalloc():
        pytest.skip("jemalloc is not installed")
    code = (
        "from pipeline.model.engines import backend_for; from pipeline.model.generation import"
        " chat; from pipeline.config.settings import SamplingConfig;"
        "print(backend_for('embedded', engine='int8').generate([chat('Name a fruit.')],"
        " SamplingConfig(temperature=0.7, max_new_tokens=8))[0].text)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, heap.PRELOAD: heap.jemalloc()},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-2000:]
