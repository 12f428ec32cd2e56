import functools

import pytest
import torch

from pipeline.model.loading import LoadedModel, load_model
from pipeline.model.scoring import ScoreItem, chunks, option_logprobs, sequence_logprobs
from tests.tiny import fresh_tiny_model


def encode(loaded, text):
    return tuple(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])


@functools.lru_cache(maxsize=1)
def tiny_double() -> LoadedModel:
    """A fresh tiny model in float64, so batching changes nothing beyond 1e-9."""
    tiny = fresh_tiny_model()
    return LoadedModel("tiny64", "config", tiny.model.double(), tiny.tokenizer)


def items_for(loaded):
    """Two long prefixes, each with three principle suffixes of different lengths, plus an
    item with no prefix at all."""
    prefixes = [
        encode(
            loaded,
            "<|im_start|>user\nConsider this conversation about cooking rice "
            "and two answers. (A) Rinse it, use 1.5 cups of water per cup, "
            "simmer 15 minutes. (B) Boil it for an hour.\n\n",
        ),
        encode(loaded, "<|im_start|>user\nA shorter question. (A) yes (B) no\n\n"),
    ]
    suffixes = [
        encode(
            loaded,
            "Which answer is more helpful?<|im_end|>\n<|im_start|>assistant\nThe answer is: (",
        ),
        encode(loaded, "Which is less harmful?<|im_end|>\n<|im_start|>assistant\nThe answer is: ("),
        encode(
            loaded,
            "Which response is more honest and accurate about what it knows?"
            "<|im_end|>\n<|im_start|>assistant\nThe answer is: (",
        ),
    ]
    items = [ScoreItem(p, s) for p in prefixes for s in suffixes]
    return items + [ScoreItem((), suffixes[0])]


def options(loaded):
    return [
        (encode(loaded, "A")[0], encode(loaded, " A")[0]),
        (encode(loaded, "B")[0], encode(loaded, " B")[0]),
    ]


def max_diff(x, y):
    return max(abs(a - b) for row_x, row_y in zip(x, y) for a, b in zip(row_x, row_y))


def test_prefix_reuse_equals_full_passes_on_the_embedded_model():
    loaded = load_model()
    items, opts = items_for(loaded), options(loaded)
    full = option_logprobs(loaded, [i.flattened() for i in items], opts, batch_size=1)
    reused = option_logprobs(loaded, items, opts, batch_size=1)  # prefix pass + suffix pass
    assert max_diff(reused, full) < 1e-5
    batched = option_logprobs(loaded, items, opts, batch_size=16)  # padding adds fp32 noise
    assert max_diff(batched, full) < 1e-4
    assert all(v < 0 for row in full for v in row)


def test_grouping_batching_and_splitting_change_nothing_in_float64():
    loaded = tiny_double()
    items, opts = items_for(loaded), options(loaded)
    full = option_logprobs(loaded, [i.flattened() for i in items], opts, batch_size=1)
    for batch_size in (1, 2, 3, 16):  # 2 and 3 split a prefix group across chunks
        assert max_diff(option_logprobs(loaded, items, opts, batch_size), full) < 1e-9


TEMPLATE = (
    "<|im_start|>system\nYou judge two answers to one conversation carefully and "
    "fairly, by the principle you are given.<|im_end|>\n<|im_start|>user\n"
)


def test_a_start_every_prefix_shares_runs_once_and_changes_nothing():
    loaded = tiny_double()
    items, opts = items_for(loaded), options(loaded)
    template = encode(loaded, TEMPLATE)
    judged = [ScoreItem(template + i.prefix, i.suffix) for i in items[:-1]] + items[-1:]
    full = option_logprobs(loaded, [i.flattened() for i in judged], opts, batch_size=1)
    for batch_size in (1, 3, 16):
        assert max_diff(option_logprobs(loaded, judged, opts, batch_size), full) < 1e-9
    widths = []
    hook = loaded.model.model.layers[0].register_forward_hook(
        lambda module, inputs, output: widths.append(tuple(inputs[0].shape[:2]))
    )
    try:
        option_logprobs(loaded, judged, opts, batch_size=16)
    finally:
        hook.remove()
    # the template once (beside the empty start of the item without a prefix), the three
    # prefixes' own tokens, then the seven suffixes
    assert len(widths) == 3 and widths[0][0] == 2 and widths[0][1] >= len(template) - 1
    assert widths[1][0] == 3 and widths[2][0] == 7


def test_option_logprob_adds_the_spellings_of_an_option():
    loaded = tiny_double()
    item = items_for(loaded)[0]
    a, a_space = options(loaded)[0]
    both = option_logprobs(loaded, [item], [(a, a_space)])[0][0]
    parts = option_logprobs(loaded, [item], [(a,), (a_space,)])[0]
    assert both == pytest.approx(
        torch.tensor(parts, dtype=torch.float64).logsumexp(0).item(), abs=1e-12
    )


def test_chunks_pack_groups_and_split_big_ones():
    groups = {(1,): [0, 1, 2, 3, 4], (2,): [5], (3,): [6, 7]}
    packed = chunks(groups, 3)
    assert [[(p, idx) for p, idx in c] for c in packed] == [
        [((1,), [0, 1, 2])],
        [((1,), [3, 4]), ((2,), [5])],
        [((3,), [6, 7])],
    ]


def test_sequence_logprobs_match_a_plain_forward_pass():
    """Rows are batched by length (here the shortest, last, shares a batch with the first);
    each score still belongs to its own row."""
    loaded = tiny_double()
    contexts = [
        list(encode(loaded, "Hello there, how are you?")),
        list(encode(loaded, "Hi")),
        list(encode(loaded, "Yo")),
    ]
    answers = [
        list(encode(loaded, " Fine, thanks.")),
        list(encode(loaded, " Good morning to you all")),
        list(encode(loaded, " Hey")),
    ]
    scores = sequence_logprobs(loaded, contexts, answers, batch_size=2)
    for ctx, ans, score in zip(contexts, answers, scores):
        ids = torch.tensor([ctx + ans])
        with torch.no_grad():
            logprobs = torch.log_softmax(loaded.model(input_ids=ids).logits[0].double(), -1)
        expected = sum(logprobs[len(ctx) - 1 + j, t].item() for j, t in enumerate(ans))
        assert score.tokens == len(ans)
        assert score.logprob == pytest.approx(expected, abs=1e-9)
        assert score.mean == pytest.approx(expected / len(ans))


def test_an_item_needs_a_suffix():
    with pytest.raises(ValueError):
        ScoreItem((1, 2), ())
