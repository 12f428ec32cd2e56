import pytest
import torch

from pipeline.model.hidden import (
    added_at_layers,
    decoder_layers,
    encode_conversations,
    hidden_states,
    prompt_states,
    split_conversation,
    states_at,
)
from tests.tiny import tiny_model

PROMPTS = ["How do I bake bread?", "Tell me a joke about cats, please."]
ANSWERS = ["Mix flour, water and yeast, then bake it.", "No."]


def test_shapes_and_batching_do_not_change_the_states():
    tiny = tiny_model()
    together = hidden_states(tiny.model, tiny.tokenizer, PROMPTS, ANSWERS, batch_size=2)
    alone = torch.cat(
        [
            hidden_states(tiny.model, tiny.tokenizer, [p], [a], batch_size=1)
            for p, a in zip(PROMPTS, ANSWERS)
        ]
    )
    assert together.shape == (2, 3, 64)  # embeddings + 2 layers
    assert torch.allclose(together, alone, atol=1e-5)


def plain_pass(tiny, prompt: str, answer: str, max_length: int = 512) -> torch.Tensor:
    """[layers, hidden]: answer-mean states of one full pass over one conversation."""
    ids, mask, answer_mask = encode_conversations(tiny.tokenizer, [prompt], [answer], max_length)
    states = states_at(tiny.model, ids, mask, [0, 1, 2])[:, 0]
    return states[:, answer_mask[0].bool()].mean(1)


def test_answers_to_one_prompt_share_its_pass_and_read_as_one_full_pass_each():
    tiny = tiny_model()
    prompts = [PROMPTS[0]] * 3 + [PROMPTS[1]] * 2 + ["word " * 60]
    answers = [
        "Flour.",
        ANSWERS[0],
        "Knead it for ten minutes, then let it rise.",
        "No.",
        "Meow.",
        "the end",
    ]
    shared = hidden_states(
        tiny.model, tiny.tokenizer, prompts, answers, batch_size=4, max_length=48
    )
    plain = torch.stack([plain_pass(tiny, q, a, 48) for q, a in zip(prompts, answers)])
    assert torch.allclose(shared, plain, atol=1e-5)
    forwards = []
    hook = tiny.model.model.layers[0].register_forward_hook(
        lambda module, inputs, output: forwards.append(inputs[0].shape[:2])
    )
    try:
        hidden_states(tiny.model, tiny.tokenizer, prompts[:3], answers[:3], batch_size=4)
    finally:
        hook.remove()
    # one pass over the prompt (one row), then the three answers' own tokens only
    head = len(split_conversation(tiny.tokenizer, prompts[0], answers[0], 512)[0])
    assert forwards[0] == (1, head) and forwards[1][0] == 3 and forwards[1][1] < head


def test_conversations_under_one_instruction_share_its_pass_and_read_as_full_passes():
    """A constitution's direction reads every principle's instruction over many prompts:
    the instruction is computed once, and each state is the one a full pass gives."""
    tiny = tiny_model()
    instruction = "Answer kindly and briefly, and never help anyone hurt a person. " * 2
    conversations = [
        [{"role": "system", "content": instruction}, {"role": "user", "content": q}]
        for q in [*PROMPTS, "Why is the sky blue?"]
    ] + [[{"role": "user", "content": "Alone, no instruction."}]]
    shared = prompt_states(tiny.model, tiny.tokenizer, conversations, [0, 1, 2], 8)
    plain = []
    for c in conversations:
        text = tiny.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
        ids = torch.tensor([tiny.tokenizer(text, add_special_tokens=False)["input_ids"]])
        plain.append(states_at(tiny.model, ids, torch.ones_like(ids), [0, 1, 2])[:, 0, -1])
    assert torch.allclose(shared, torch.stack(plain), atol=1e-5)
    forwards = []
    hook = tiny.model.model.layers[0].register_forward_hook(
        lambda module, inputs, output: forwards.append(inputs[0].shape[:2])
    )
    try:
        prompt_states(tiny.model, tiny.tokenizer, conversations[:3], [0, 1, 2], 8)
    finally:
        hook.remove()
    # one pass over the instruction (one row), then the three prompts' own tokens only
    (rows, head), (three, tail) = forwards
    assert rows == 1 and three == 3 and tail < head


def test_last_pooling_is_the_last_token_of_a_plain_forward_pass():
    tiny = tiny_model()
    ids, mask, answer = encode_conversations(tiny.tokenizer, PROMPTS[:1], ANSWERS[:1], 512)
    with torch.no_grad():
        plain = tiny.model.model(input_ids=ids, output_hidden_states=True).hidden_states
    last = hidden_states(
        tiny.model, tiny.tokenizer, PROMPTS[:1], ANSWERS[:1], layers=[0, 1, 2], pooling="last"
    )
    assert torch.allclose(last[0, 0], plain[0][0, -1], atol=1e-5)  # the embeddings
    assert torch.allclose(last[0, 1], plain[1][0, -1], atol=1e-5)
    normed = tiny.model.model.norm(last[0, 2])  # transformers' last state is after the norm
    assert torch.allclose(normed, plain[2][0, -1], atol=1e-5)
    answer_tokens = tiny.tokenizer.decode(ids[0][answer[0].bool()])
    assert "Mix flour" in answer_tokens and "bake bread" not in answer_tokens


def test_a_long_conversation_is_cut_from_the_left_and_keeps_its_answer():
    tiny = tiny_model()
    ids, mask, answer = encode_conversations(tiny.tokenizer, ["word " * 300], ["the end"], 40)
    assert ids.shape[1] == 40 and answer[0, -1] == 1 and answer.sum() < 40


def test_a_vector_added_at_a_layer_moves_its_hidden_state_by_exactly_that_and_then_leaves():
    tiny = tiny_model()
    before = hidden_states(tiny.model, tiny.tokenizer, PROMPTS, ANSWERS, layers=[1])
    vector = torch.randn(64)
    with added_at_layers(tiny.model, {0: vector}, scale=2.0):
        steered = hidden_states(tiny.model, tiny.tokenizer, PROMPTS, ANSWERS, layers=[1])
    assert torch.allclose(steered - before, (2.0 * vector).expand_as(before), atol=1e-4)
    with added_at_layers(tiny.model, {1: vector}):  # the last layer too
        moved = hidden_states(tiny.model, tiny.tokenizer, PROMPTS, ANSWERS, layers=[2])
    assert torch.allclose(
        moved - hidden_states(tiny.model, tiny.tokenizer, PROMPTS, ANSWERS, layers=[2]),
        vector.expand(2, 1, 64),
        atol=1e-4,
    )
    after = hidden_states(tiny.model, tiny.tokenizer, PROMPTS, ANSWERS, layers=[1])
    assert torch.equal(after, before)  # the hook is gone
    with pytest.raises(ValueError, match="layer 5 does not exist"):
        with added_at_layers(tiny.model, {5: vector}):
            pass


def test_unknown_pooling_is_refused():
    tiny = tiny_model()
    with pytest.raises(ValueError, match="pooling must be one of"):
        hidden_states(tiny.model, tiny.tokenizer, PROMPTS, ANSWERS, pooling="max")


def test_reading_a_shallow_layer_stops_the_pass_there_and_reads_the_same_states():
    loaded = tiny_model()
    prompts, answers = (
        ["Hi?", "A longer question here?"],
        ["Hello.", "A longer answer, here it is."],
    )
    every = hidden_states(loaded.model, loaded.tokenizer, prompts, answers)
    calls = []
    last_block = decoder_layers(loaded.model)[-1]
    handle = last_block.register_forward_hook(lambda *a: calls.append(1))
    try:
        shallow = hidden_states(loaded.model, loaded.tokenizer, prompts, answers, layers=[0, 1])
    finally:
        handle.remove()
    assert calls == []  # the last block never ran
    assert torch.allclose(shallow, every[:, :2], atol=1e-5)
