"""A merged Llama-architecture model folder written as one GGUF file (llama.cpp, Ollama,
LM Studio), with the `gguf` package: the weights under GGUF's tensor names (the query and key
projections permuted into llama.cpp's rotary layout, as its converter does), the model's
shape, its byte-level BPE tokenizer with merges and special tokens, and its chat template.
transformers reads the file back to the same logits (the export's test checks it).

Other architectures are refused by name with llama.cpp's converter to use instead: its
per-architecture conversion code is not part of the `gguf` package."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.errors import ConfigError

CONVERTER = "https://github.com/ggml-org/llama.cpp (convert_hf_to_gguf.py)"
GGUF_FILE = "model.gguf"


def gguf_problem(config: dict) -> str:
    """Why a model of this config cannot be written as GGUF here ('' when it can)."""
    kind = config.get("model_type", "?")
    if kind == "llama":
        return ""
    return (
        f"GGUF is written here for Llama-architecture models; this one is {kind!r}. Convert "
        f"the merged folder with llama.cpp's converter: {CONVERTER}."
    )


def permuted(weight, heads: int):
    """A query or key projection in llama.cpp's rotary layout (pairs of halves interleaved)."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_gguf(folder: Path, out: Path, half: bool) -> Path:
    """`folder` (a transformers Llama folder: config, model.safetensors, tokenizer) as the
    GGUF file `out`, 2-D weights in fp16 when `half`, else everything in fp32."""
    import gguf
    import numpy as np
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    problem = gguf_problem(config)
    if problem:
        raise ConfigError(problem)
    arch = gguf.MODEL_ARCH.LLAMA
    blocks, heads = config["num_hidden_layers"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(folder.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(blocks)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(float(config.get("rope_theta") or 10000.0))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if half else gguf.LlamaFileType.ALL_F32)
    tokens, _, kinds = zip(*gguf.BpeVocab(folder).all_tokens())
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(list(tokens))
    writer.add_token_types(list(kinds))
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    template = folder / "chat_template.jinja"  # where transformers now keeps it
    if special.chat_template is None and template.is_file():
        special.chat_template = template.read_text()
    special.add_to_gguf(writer, quiet=True)
    names = gguf.TensorNameMap(arch, blocks)
    for name, tensor in load_file(folder / "model.safetensors").items():
        weight = tensor.float()
        if name.endswith("q_proj.weight"):
            weight = permuted(weight, heads)
        elif name.endswith("k_proj.weight"):
            weight = permuted(weight, kv_heads)
        named = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if named is None:
            raise ConfigError(f"GGUF has no name for the tensor {name}: {CONVERTER}.")
        data = weight.numpy()
        writer.add_tensor(named, data.astype(np.float16) if half and data.ndim == 2 else data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
