"""The GGUF export in llama.cpp itself: does llama.cpp read the file we write, tokenize a chat
prompt to the same ids as transformers, and answer greedily with the same tokens?

The embedded model is written as GGUF (fp32, or fp16 with `--half`) exactly as `cstudio
export --merge --gguf` writes a merged model, then loaded by llama.cpp through
`llama-cpp-cffi` (`pip install llama-cpp-cffi`: its wheel carries llama.cpp's C library;
no build). Red-team prompts in the chat template, `--new-tokens` greedy tokens each.

Prints per prompt whether llama.cpp's prompt ids and greedy answer equal transformers' on
the merged folder, the largest logit difference at the prompt's end, and a last line
`identical=K/N` (greedy answers). llama.cpp's CPU library in that wheel was built with GCC 14:
on an older libstdc++ (Debian 12) it misses one symbol, `__cxa_call_terminate` (what a
`noexcept` function calls when an exception escapes it); the script then compiles a one-line
stand-in that calls `std::terminate` with g++ and runs itself again with it preloaded.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipeline.data.prompts import load_prompts
from pipeline.model.gguf_writer import write_gguf
from pipeline.model.loading import embedded_model_dir

SHIM = """#include <exception>
extern "C" void __cxa_call_terminate(void*) noexcept { std::terminate(); }
"""


def llama_cpp():
    """llama.cpp's C library (cffi), rerunning this script with the libstdc++ stand-in
    preloaded when the library needs it."""
    try:
        from llama._llama_cpp_cpu import ffi, lib
    except ModuleNotFoundError:
        sys.exit("llama-cpp-cffi is not installed: pip install llama-cpp-cffi")
    except ImportError as exc:
        if "__cxa_call_terminate" not in str(exc) or os.environ.get("LD_PRELOAD"):
            raise
        folder = Path(tempfile.mkdtemp(prefix="cxa-shim-"))
        (folder / "shim.cc").write_text(SHIM)
        shim = folder / "libshim.so"
        subprocess.run(["g++", "-shared", "-fPIC", "-o", shim, folder / "shim.cc"], check=True)
        print(f"libstdc++ older than GCC 14: rerunning with {shim} preloaded", flush=True)
        env = {**os.environ, "LD_PRELOAD": str(shim)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    return ffi, lib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=8, help="red-team prompts to answer")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--half", action="store_true", help="fp16 weights (default fp32)")
    args = parser.parse_args()
    ffi, lib = llama_cpp()
    folder = embedded_model_dir()
    path = write_gguf(folder, Path(tempfile.mkdtemp()) / "model.gguf", args.half)
    lib.llama_log_set(lib.llama_cpp_cffi_ggml_log_callback, ffi.NULL)  # quiet
    lib.llama_backend_init()
    model = lib.llama_model_load_from_file(str(path).encode(), lib.llama_model_default_params())
    if model == ffi.NULL:
        sys.exit(f"llama.cpp could not load {path}")
    vocab = lib.llama_model_get_vocab(model)
    n_vocab = lib.llama_vocab_n_tokens(vocab)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    same_ids = same_answers = 0
    prompts = [p.prompt for p in load_prompts("red-team", "test")][: args.prompts]
    print(f"{path.stat().st_size / 2**20:.0f} MB GGUF ({'fp16' if args.half else 'fp32'})")
    for prompt in prompts:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        raw = text.encode()
        buffer = ffi.new("llama_token[]", 4096)
        count = lib.llama_tokenize(vocab, raw, len(raw), buffer, 4096, False, True)
        theirs = [buffer[i] for i in range(count)]
        params = lib.llama_context_default_params()
        params.n_ctx, params.n_batch = 1024, 1024
        params.n_threads = params.n_threads_batch = torch.get_num_threads()
        context = lib.llama_init_from_model(model, params)
        batch_ids = ffi.new("llama_token[]", theirs)
        batch = lib.llama_batch_get_one(batch_ids, len(theirs))
        answer: list[int] = []
        first_logits = None
        for _ in range(args.new_tokens):
            if lib.llama_decode(context, batch) != 0:
                sys.exit("llama.cpp failed to decode")
            logits = lib.llama_get_logits_ith(context, -1)
            row = np.frombuffer(ffi.buffer(logits, n_vocab * 4), dtype=np.float32)
            first_logits = row.copy() if first_logits is None else first_logits
            token = int(row.argmax())
            if lib.llama_vocab_is_eog(vocab, token):
                break
            answer.append(token)
            batch_ids = ffi.new("llama_token[]", [token])
            batch = lib.llama_batch_get_one(batch_ids, 1)
        lib.llama_free(context)
        with torch.no_grad():
            start = torch.tensor([ids])
            ours = reference.generate(
                start, max_new_tokens=args.new_tokens, do_sample=False, eos_token_id=end
            )[0, len(ids) :].tolist()
            last = reference(start).logits[0, -1].numpy()
        ours = [t for t in ours if t != end]
        gap = float(np.abs(first_logits[: len(last)] - last).max())
        same_ids += theirs == ids
        same_answers += answer == ours
        print(
            f"prompt ids {'same' if theirs == ids else 'DIFFER'} · answer "
            f"{'same' if answer == ours else 'DIFFERS'} · max logit gap {gap:.4f} · "
            f"{tokenizer.decode(answer)[:60]!r}",
            flush=True,
        )
    lib.llama_model_free(model)
    print(f"prompt ids identical {same_ids}/{len(prompts)}")
    print(f"identical={same_answers}/{len(prompts)}")


if __name__ == "__main__":
    main()
