import pytest
import torch

from pipeline.config.settings import GREEDY, SamplingConfig
from pipeline.core.errors import ConfigError, ModelError
from pipeline.model import generation
from pipeline.model.engines import backend_for
from pipeline.model.generation import (
    KeptPrompts,
    TransformersBackend,
    chat,
    drafted,
    drawn,
    next_tokens,
    nucleus,
    shared,
)
from pipeline.model.scoring import shared_prefix_length
from tests.tiny import tiny_model

PROMPTS = [
    chat("Hello there, how are you?"),
    chat("Name three colours."),
    chat(
        "A much longer prompt that makes the batch need left padding for sure, with "
        "quite a few extra words in it."
    ),
    chat("Short", system="You are terse."),
]


@pytest.fixture(scope="module")
def tiny():
    return TransformersBackend(tiny_model(), max_batch_size=8)


def test_batched_greedy_equals_one_at_a_time(tiny):
    config = SamplingConfig(temperature=0, max_new_tokens=12)
    batched = tiny.generate(PROMPTS, config)
    single = [tiny.generate([p], config)[0] for p in PROMPTS]
    assert batched == single
    assert all(g.new_tokens == 12 and g.finish_reason == "length" for g in batched)


def test_small_batches_give_the_same_results(tiny):
    config = SamplingConfig(temperature=0.9, max_new_tokens=10, seed=5)
    small = TransformersBackend(tiny.loaded, max_batch_size=2)
    assert small.generate(PROMPTS, config) == tiny.generate(PROMPTS, config)


def test_seeded_sampling_is_reproducible_and_per_row(tiny):
    config = SamplingConfig(temperature=1.0, top_p=0.9, max_new_tokens=10, seed=3)
    first = tiny.generate(PROMPTS, config)
    assert tiny.generate(PROMPTS, config) == first
    # row i samples with seed + i, whatever else is in the batch
    assert tiny.generate([PROMPTS[2]], config, seeds=[5]) == [first[2]]
    other = tiny.generate(
        PROMPTS, SamplingConfig(temperature=1.0, top_p=0.9, max_new_tokens=10, seed=4)
    )
    assert other != first


def test_each_row_stops_at_its_own_end_token(tiny):
    config = SamplingConfig(temperature=1.0, max_new_tokens=12, seed=0)
    free = [tiny._decode(tiny._encode([p], config), config, [i]) for i, p in enumerate(PROMPTS)]
    sequences = [[t.item() for _, t in steps] for steps in free]
    assert len(set(sequences[1][:4])) == 4, "row 1 needs four distinct tokens for this test"
    stop = sequences[1][3]  # pretend the 4th token of row 1 ends the turn
    backend = TransformersBackend(tiny.loaded)
    backend.stop_ids = torch.tensor([stop])
    results = backend.generate(PROMPTS, config)
    for seq, result in zip(sequences, results):
        if stop in seq:
            assert result.finish_reason == "stop" and result.new_tokens == seq.index(stop) + 1
        else:
            assert result.finish_reason == "length" and result.new_tokens == 12
    assert results[1].new_tokens == 4


def test_stream_yields_the_same_text_as_generate(tiny):
    config = SamplingConfig(temperature=0.8, max_new_tokens=16, seed=11)
    pieces = list(tiny.stream(PROMPTS[0], config))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == tiny.generate([PROMPTS[0]], config)[0].text


def test_next_tokens_greedy_and_nucleus():
    logits = torch.tensor([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]])
    gens = [torch.Generator().manual_seed(0) for _ in range(2)]
    assert next_tokens(logits, GREEDY, gens).tolist() == [1, 0]
    narrow = SamplingConfig(temperature=1.0, top_p=0.05)
    for _ in range(20):  # the nucleus holds only the top token
        assert next_tokens(logits, narrow, gens).tolist() == [1, 0]


def test_a_draw_follows_the_probabilities_never_picks_a_zero_and_ignores_the_batch():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0], [0.1, 0.0, 0.0, 0.0, 0.0, 0.3]])
    generators = [torch.Generator().manual_seed(seed) for seed in (1, 2)]
    picks = torch.stack([drawn(probs, generators) for _ in range(4000)])
    first, second = (picks[:, row].bincount(minlength=6) / 4000 for row in (0, 1))
    assert torch.allclose(first, torch.tensor([0, 0.5, 0, 0.3, 0.2, 0]), atol=0.03)
    assert torch.allclose(second, torch.tensor([0.25, 0, 0, 0, 0, 0.75]), atol=0.03)
    assert first[[0, 2, 5]].sum() == 0 and second[1:5].sum() == 0
    alone = torch.Generator().manual_seed(2)
    again = [torch.Generator().manual_seed(seed) for seed in (1, 2)]
    for _ in range(50):  # row 1 alone draws what it drew beside row 0
        assert drawn(probs[1:], [alone]) == drawn(probs, again)[1]
    # every token keeps its own random number, so over a wide, flat distribution (a tiny
    # model's) a change of 1e-4 of each probability (another batch's rounding) moves no
    # draw; a draw by the cumulative distribution moved with the sum of such changes
    noise = torch.Generator().manual_seed(0)
    flat = torch.softmax(torch.randn(2, 5000, generator=noise) * 0.1, dim=-1)
    near = flat * (1 + 1e-4 * torch.randn(flat.shape, generator=noise))
    before = [torch.Generator().manual_seed(seed) for seed in (1, 2)]
    after = [torch.Generator().manual_seed(seed) for seed in (1, 2)]
    assert all(torch.equal(drawn(flat, before), drawn(near, after)) for _ in range(300))


@pytest.mark.parametrize("spread", [0.5, 6.0, 12.0])  # nuclei of thousands, tens, a few
def test_nucleus_is_the_whole_sorts_to_the_bit(spread):
    """The partial sort keeps exactly what sorting every probability kept (the values summed
    in the same order); rows whose nucleus runs past the first NUCLEUS_FIRST are sorted."""
    generator = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(24, 5000, generator=generator) * spread, dim=-1)
    for top_p in (0.5, 0.9, 0.95):
        ranked, order = probs.sort(dim=-1, descending=True)
        ranked = ranked.masked_fill(ranked.cumsum(dim=-1) - ranked > top_p, 0.0)
        whole = torch.zeros_like(probs).scatter(-1, order, ranked)
        assert torch.equal(nucleus(probs, top_p), whole)
    kept = (nucleus(probs, 0.95) > 0).sum(-1)
    assert kept.min() >= 1 and (kept > generation.NUCLEUS_FIRST).all() == (spread == 0.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_sampling_config_is_validated(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SamplingConfig(**kwargs)


def test_prompt_longer_than_the_context_is_refused(tiny):
    with pytest.raises(ModelError, match="exceeds the model's context of 512 tokens"):
        tiny.generate([chat("word " * 600)], SamplingConfig(max_new_tokens=8))


def test_embedded_model_generates_batched_seeded_reproducible():
    backend = backend_for("embedded")
    prompts = [
        chat("What is the capital of France?"),
        chat("Give me one tip for sleeping well."),
        chat("Say hello in Spanish."),
    ]
    greedy = SamplingConfig(temperature=0, max_new_tokens=24)
    batched = backend.generate(prompts, greedy)
    assert "Paris" in batched[0].text
    assert backend.generate([prompts[1]], greedy)[0] == batched[1]
    sampled = SamplingConfig(temperature=0.9, max_new_tokens=24, seed=7)
    assert backend.generate(prompts, sampled) == backend.generate(prompts, sampled)
    assert all(g.text for g in batched)


def test_shared_prefix_length():
    long = list(range(40))
    assert shared_prefix_length([long + [1, 2], long + [3], long + [4, 5, 6]]) == 40
    assert shared_prefix_length([long, long]) == 39  # each row keeps a token of its own
    assert shared_prefix_length([[1] * 10 + [2], [1] * 10 + [3]]) == 0  # too short to bother
    assert shared_prefix_length([[5] + long, long]) == 0


def test_shared_prefix_cache_gives_the_same_logits_as_full_passes(tiny):
    system = "You are a careful assistant. " * 12
    conversations = [
        chat(text, system=system)
        for text in ("Hi", "Tell me about the sea, please, in detail.", "Why?")
    ]
    rows = tiny._encode(conversations, SamplingConfig())
    assert shared_prefix_length(rows) > 50
    with torch.inference_mode():
        out, *_ = tiny._prefill(rows, 4)
        for i, row in enumerate(rows):
            full = tiny.loaded.model(input_ids=torch.tensor([row])).logits[0, -1]
            assert torch.allclose(out.logits[i, -1], full, atol=1e-4)


def test_shared_prefix_generation_matches_one_at_a_time(tiny):
    system = "You answer in one short sentence. " * 10
    conversations = [chat(t, system=system) for t in ("Hi", "Name a fruit", "Count to three")]
    config = SamplingConfig(temperature=1.0, max_new_tokens=10, seed=2)
    batched = tiny.generate(conversations, config)
    single = [tiny.generate([c], config, seeds=[2 + i])[0] for i, c in enumerate(conversations)]
    assert batched == single


def test_reused_prefix_gives_the_same_results_as_a_fresh_one(tiny):
    system = "Always answer politely and briefly. " * 10
    config = SamplingConfig(temperature=1.0, max_new_tokens=6, seed=9)
    first = [chat("Hello", system=system), chat("How are you?", system=system)]
    second = [chat("Name a tree", system=system), chat("Name a river", system=system)]
    backend = TransformersBackend(tiny.loaded)
    backend.generate(first, config)
    reused = backend.generate(second, config)  # same shared prefix: taken from the last call
    assert reused == TransformersBackend(tiny.loaded).generate(second, config)


def chain_steps(topic: str) -> list[list[dict[str, str]]]:
    """Three prompts of a chain on one topic, each the one before plus two turns."""
    first = chat(f"Tell me something true about {topic}, please, in a few careful words.")
    second = first + [
        {"role": "assistant", "content": f"{topic} is interesting."},
        {"role": "user", "content": "Critique that answer for accuracy and kindness."},
    ]
    third = second + [
        {"role": "assistant", "content": "It says little."},
        {"role": "user", "content": "Rewrite the answer with the critique in mind."},
    ]
    return [first, second, third]


def test_a_chain_reuses_each_rows_earlier_prompt_and_answers_as_a_fresh_backend_does():
    """Side by side, each row's next prompt starts with its own last one: that start is
    taken from the kept keys and values (not computed again), with the same logits and the
    same answers as a backend that computes every prompt whole."""
    loaded = tiny_model()
    config = SamplingConfig(temperature=1.0, max_new_tokens=8, seed=4)
    warm = TransformersBackend(loaded)
    sea, moon = chain_steps("the sea"), chain_steps("the moon")
    for step in range(3):
        rows = warm._encode([sea[step], moon[step]], config)
        reused = [warm.kept.longest(r, None, len(r) - 1)[1] for r in rows]
        if step:  # the row's previous prompt, less its last token
            previous = warm._encode([sea[step - 1], moon[step - 1]], config)
            assert reused == [len(p) - 1 for p in previous]
            with torch.inference_mode():
                out, *_ = warm._prefill(rows, 4)
                for i, row in enumerate(rows):
                    full = loaded.model(input_ids=torch.tensor([row])).logits[0, -1]
                    assert torch.allclose(out.logits[i, -1], full, atol=1e-4)
        conversations = [sea[step], moon[step]]
        fresh = TransformersBackend(loaded).generate(conversations, config)
        assert warm.generate(conversations, config) == fresh


def test_kept_prompts_stay_within_their_budget_and_keep_the_newest(monkeypatch):
    import pipeline.model.generation as generation

    loaded = tiny_model()
    backend = TransformersBackend(loaded)

    def kept() -> list[str]:
        return [loaded.tokenizer.decode(list(k.tokens)) for k in backend.kept._kept]

    backend.generate([chat("A first question that is long enough to keep, surely.")], GREEDY)
    monkeypatch.setattr(generation, "KEEP_BYTES", int(backend.kept._kept[0].nbytes * 1.5))
    backend.generate([chat("A second question that is long enough to keep, surely.")], GREEDY)
    assert len(kept()) == 1 and "second question" in kept()[0]
    big = [chat(f"Question {i} is long enough to be kept in memory.") for i in range(5)]
    backend.generate(big, GREEDY)  # more rows than KEEP_ROWS: only their shared start is kept
    assert kept()[-1].endswith("user\nQuestion ")
    assert not any("long enough to be kept" in text for text in kept())


def test_backends_on_one_loaded_model_share_what_they_keep_and_threads_keep_it_whole():
    """A backend made after another (the studio makes one per run) starts from the prompts
    the first kept; answers are those of a backend that keeps nothing, also when several
    threads generate at once; a model being trained (its own pool) shares nothing."""
    import threading

    loaded = tiny_model()
    pool = KeptPrompts()
    steps = chain_steps("the sea")
    first = TransformersBackend(loaded, kept=pool)
    first.generate([steps[0]], GREEDY)
    later = TransformersBackend(loaded, kept=pool)
    row = later._encode([steps[1]], GREEDY)[0]
    assert later.kept.longest(row, None, len(row) - 1)[1] > 0
    assert TransformersBackend(loaded).kept.longest(row, None, len(row) - 1) == (None, 0)
    topics = ["the sea", "the moon", "a forest", "a city"]
    expected = {t: TransformersBackend(loaded).generate(chain_steps(t), GREEDY) for t in topics}
    got: dict[str, list] = {}

    def run(topic: str) -> None:
        got[topic] = TransformersBackend(loaded, kept=pool).generate(chain_steps(topic), GREEDY)

    threads = [threading.Thread(target=run, args=(t,)) for t in topics]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == expected
    assert shared(loaded) is shared(loaded) and shared(loaded) is not pool


def test_a_draft_is_what_followed_the_last_words_where_they_came_before():
    assert drafted([5, 6, 7, 8, 9, 5, 6, 7], 3) == [8, 9, 5]  # the longest n-gram, latest
    assert drafted([1, 2, 3, 1, 9, 2, 3], 2) == [1, 9]  # "2 3" came before, followed by "1 9"
    assert drafted([4, 2, 7, 1, 2], 1) == [7]  # only one token matches
    assert drafted([1, 2, 3], 4) == [] and drafted([1], 4) == []
    # sampling drafts after a 3-token match only
    assert drafted([5, 6, 7, 8, 9, 5, 6, 7], 3, shortest=3) == [8, 9, 5]
    assert drafted([1, 2, 3, 1, 9, 2, 3], 2, shortest=3) == []


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_prompt_lookup_answers_as_one_token_passes(monkeypatch, temperature):
    """Drafted tokens are kept while each position's draw (greedy, or the seeded sample)
    equals them, the rest written over: the answer of a prompt that invites repetition is
    the one one-token passes give, in fewer passes."""
    backend = backend_for("embedded")
    text = "The quick brown fox jumps over the lazy dog near the quiet river bank."
    conversation = chat(f"Copy the following text exactly: {text} {text}")
    config = SamplingConfig(temperature=temperature, max_new_tokens=48, seed=2)
    passes: list[int] = []
    forward = TransformersBackend._forward
    monkeypatch.setattr(
        TransformersBackend,
        "_forward",
        lambda self, *a, **k: passes.append(1) or forward(self, *a, **k),
    )
    looked_up = TransformersBackend(backend.loaded).generate([conversation], config)[0]
    lookup_passes = len(passes)
    monkeypatch.setattr(generation, "LOOKUP_DRAFT", 0)  # one token a pass
    plain = TransformersBackend(backend.loaded).generate([conversation], config)[0]
    assert looked_up == plain and text.split()[0] in plain.text
    assert lookup_passes < len(passes) - 10  # drafts were taken
