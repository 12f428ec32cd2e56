"""A tiny randomly initialised Llama with the embedded model's tokenizer, for fast tests."""
from __future__ import annotations

import functools

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from pipeline.models import LoadedModel, embedded_model_dir


def fresh_tiny_model() -> LoadedModel:
    """A new instance, for tests that train or otherwise change the model."""
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    tokenizer.padding_side = "left"
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    return LoadedModel(name="tiny", source="config", model=model, tokenizer=tokenizer)


@functools.lru_cache(maxsize=1)
def tiny_model() -> LoadedModel:
    """One shared instance for tests that only read the model."""
    return fresh_tiny_model()
