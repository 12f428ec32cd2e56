"""A merged Llama-architecture model folder written as one GGUF file (llama.cpp, Ollama,
LM Studio), with the `gguf` package: the weights under GGUF's tensor names (the query and key
projections permuted into llama.cpp's rotary layout, as its converter does), the model's
shape, its byte-level BPE tokenizer with merges, special tokens typed as llama.cpp's converter
types them and its pre-tokenizer named, and its chat template. transformers reads the file
back to the same logits (the export's test checks it); llama.cpp itself tokenizes a chat
prompt to the same ids and answers greedily with the same tokens (`bench/gguf_llama_cpp.py`).

Other architectures are refused by name with llama.cpp's converter to use instead: its
per-architecture conversion code is not part of the `gguf` package."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.errors import ConfigError

CONVERTER = "https://github.com/ggml-org/llama.cpp (convert_hf_to_gguf.py)"
GGUF_FILE = "model.gguf"


def pre_tokenizer_name(tokenizer: dict) -> str | None:
    """llama.cpp's name for how this tokenizer splits text before BPE (tokenizer.json's
    pre_tokenizer), or None when it is not one known to split the same way there."""
    pre = tokenizer.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    shape = [(s.get("type"), s.get("individual_digits"), s.get("use_regex")) for s in steps]
    byte_level = ("ByteLevel", None, True)
    if shape == [byte_level]:
        return "gpt-2"  # GPT-2's split
    if shape == [("Digits", True, None), byte_level]:
        return "smollm"  # each digit alone, then GPT-2's split
    return None


def rope(config: dict) -> tuple[float, str]:
    """The rotary base θ and scaling type, where transformers keeps them (recent versions
    under `rope_parameters`, older ones at the top level)."""
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    theta = params.get("rope_theta") or config.get("rope_theta") or 10000.0
    return float(theta), str(params.get("rope_type") or params.get("type") or "default")


def gguf_problem(config: dict, tokenizer: dict | None = None) -> str:
    """Why a model of this config and tokenizer.json cannot be written as GGUF here ('' when
    it can)."""
    kind = config.get("model_type", "?")
    if kind != "llama":
        return (
            f"GGUF is written here for Llama-architecture models; this one is {kind!r}. "
            f"Convert the merged folder with llama.cpp's converter: {CONVERTER}."
        )
    scaling = rope(config)[1]
    if scaling != "default":
        return (
            f"GGUF is written here for plain rotary positions; this model scales them "
            f"({scaling!r}). Convert the merged folder with llama.cpp's converter: "
            f"{CONVERTER}."
        )
    if tokenizer is not None and pre_tokenizer_name(tokenizer) is None:
        return (
            "GGUF is written here for byte-level BPE tokenizers that split text as GPT-2 or "
            "SmolLM do; this model's pre-tokenizer is another. Convert the merged folder "
            f"with llama.cpp's converter: {CONVERTER}."
        )
    return ""


def token_types(tokenizer: dict, count: int) -> list[int]:
    """Each token's GGUF type, as llama.cpp's converter sets them: an added special token is
    CONTROL (so llama.cpp reads `<|im_start|>` in a prompt as one token), another added
    token USER_DEFINED, the rest NORMAL."""
    import gguf

    kinds = [gguf.TokenType.NORMAL] * count
    for added in tokenizer.get("added_tokens", []):
        if added["id"] < count:
            kinds[added["id"]] = (
                gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
            )
    return [int(k) for k in kinds]


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
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    problem = gguf_problem(config, tokenizer)
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
    writer.add_rope_freq_base(rope(config)[0])
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if half else gguf.LlamaFileType.ALL_F32)
    tokens = [token for token, _, _ in gguf.BpeVocab(folder).all_tokens()]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer) or "default")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types(tokenizer, len(tokens)))
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
