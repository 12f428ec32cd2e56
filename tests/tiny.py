"""A tiny randomly initialised Llama with the embedded model's tokenizer, for fast tests."""

from __future__ import annotations

import functools

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from pipeline.model.loading import LoadedModel, embedded_model_dir


def tiny_llama(tokenizer, hidden_size: int, max_positions: int, tied: bool) -> LlamaForCausalLM:
    """A 2-layer Llama for `tokenizer`, initialised from seed 0."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def fresh_tiny_model() -> LoadedModel:
    """A new instance, for tests that train or otherwise change the model."""
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    tokenizer.padding_side = "left"
    return LoadedModel(
        name="tiny",
        source="config",
        model=tiny_llama(tokenizer, 64, 512, True),
        tokenizer=tokenizer,
    )


@functools.lru_cache(maxsize=1)
def tiny_model() -> LoadedModel:
    """One shared instance for tests that only read the model."""
    return fresh_tiny_model()


WORDS = (
    "good kind safe help yes sure thanks glad fine great "
    "bad harm no never hate ugly wrong rude mean awful "
    "the a and to of it is I you we"
).split()
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> "
    "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def small_vocab_model() -> LoadedModel:
    """A tiny Llama over a 40-word vocabulary with a chat template: its answers are short
    word sequences, so RL on a word-level reward learns in a few steps on a CPU."""
    from tokenizers import Tokenizer
    from tokenizers.decoders import WordPiece
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "<|im_end|>", "<|im_start|>", "[PAD]", "user", "assistant", "system"]
    vocab = {w: i for i, w in enumerate(specials + list(WORDS))}
    raw = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = Whitespace()
    raw.decoder = WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        eos_token="<|im_end|>",
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.padding_side = "left"
    model = tiny_llama(tokenizer, 32, 256, tied=False)
    # logits are (normalised hidden state) · (output embeddings): with the usual 0.02 init
    # they stay within ±1 whatever the hidden state, so no adapter could ever make the
    # model prefer a word; a wider output layer gives the policy room to learn
    torch.nn.init.normal_(model.lm_head.weight, std=0.3)
    return LoadedModel("small-vocab", "config", model, tokenizer)


def small_vocab_stages(root, sft_flags: tuple[str, ...] = ()) -> tuple:
    """The small-vocabulary model saved as a base folder, a 2-step SFT adapter on it (through
    the command line, with `sft_flags`) and a 2-step preference model: what an online RL
    stage starts from. Returns (base, SFT adapter folder, PM folder)."""
    import json

    from pipeline.cli import main
    from pipeline.config.commands import RewardJob
    from pipeline.data.preferences import Comparison
    from pipeline.train.reward import train_preference_model

    small = small_vocab_model()
    base = root / "base"
    small.model.save_pretrained(base)
    small.tokenizer.save_pretrained(base)
    data = root / "sft.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": a}]}
        for a in ("good kind", "glad to help", "yes sure", "thanks fine")
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sft = ["sft", "--model", str(base), "--data", str(data), "--max-steps", "2"]
    sft += ["--batch-size", "2", "--max-length", "32", *sft_flags, "--out", str(root / "sft")]
    assert main(["--workspace", str(root / "ws"), *sft]) == 0
    pm = train_preference_model(
        RewardJob(model=str(base), data="synthetic", max_steps=2, batch_size=2, max_length=32),
        [Comparison("q", "good kind", "bad harm", 1.0), Comparison("q", "rude", "glad", 0.0)],
        {},
        root / "pm",
    )
    return base, root / "sft" / "adapter", pm
