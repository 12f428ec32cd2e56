"""Pooled answer states kept on disk, so the same answers are read by a model only once (and
the few greedy answers its constitution directions are read from, written only once).

The judge board, the probe it fits, a values report, the labelling queue and the steering
extraction all read the same answers (the gold pairs, a tournament's answers), often in
different processes. An entry holds one (prompt, answer)'s pooled state at each layer read
so far, and is keyed by the model's files (path, size, modification time), its dtype, the
pooling, the truncation length and the exact texts: a changed model or text is a miss,
never a stale hit. A model carrying hooks or LoRA layers in memory is never cached (its
states are not its files'), nor is a hub id (its files are the hub's). Entries are written
to a temporary file and renamed over (an interrupted write leaves the old entry or none; an
unreadable one is a miss), and the cache keeps the most recently used entries within its
budget (CONSTITUTION_STUDIO_STATES_MB, 0 turns it off).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from pipeline.model.loading import (
    ADAPTER_CONFIG,
    LoadedModel,
    cache_root,
    default_device,
    dtype_name,
    resolve_source,
)

BUDGET_ENV = "CONSTITUTION_STUDIO_STATES_MB"
DEFAULT_BUDGET_MB = 2048
FOLDER = "states"

Reader = Callable[[list[int], list[int]], torch.Tensor]  # rows, layers → [rows, layers, hidden]


def budget_bytes() -> int:
    try:
        return max(0, int(float(os.environ.get(BUDGET_ENV, DEFAULT_BUDGET_MB)) * 2**20))
    except ValueError:
        return DEFAULT_BUDGET_MB * 2**20


def folder_files(folder: Path) -> list[tuple[str, int, int]]:
    """(name, size, modification time) of the folder's files: what a model's identity is."""
    return sorted(
        (e.name, e.stat().st_size, e.stat().st_mtime_ns)
        for e in os.scandir(folder)
        if e.is_file() and not e.name.startswith(".")
    )


def source_identity(source: str) -> list | None:
    """A local model folder's files (with its base's, for a LoRA adapter); None for a hub id."""
    folder = Path(source)
    if not folder.is_dir():
        return None
    identity: list = [str(folder.resolve()), folder_files(folder)]
    if (folder / ADAPTER_CONFIG).exists():
        base = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
        below = source_identity(resolve_source(base)) if base else None
        if below is None:
            return None
        identity.append(below)
    return identity


def altered_in_memory(model) -> bool:
    """Whether the model's states may differ from its files': LoRA layers, or forward hooks
    other than those transformers keeps to record outputs (steering adds its own)."""

    def changes(hook) -> bool:
        return not getattr(hook, "__module__", "").startswith("transformers.")

    return any(
        type(m).__module__.startswith("peft")
        or any(map(changes, m._forward_hooks.values()))
        or any(map(changes, m._forward_pre_hooks.values()))
        for m in model.modules()
    )


def identity_key(source: str, dtype: str, device: str) -> str | None:
    """The cache's key for a model's files loaded as `dtype` on `device`, or None when they
    must not be cached."""
    if budget_bytes() == 0:
        return None
    try:
        identity = source_identity(source)
    except (OSError, ValueError):
        return None
    if identity is None:
        return None
    return hashlib.sha256(json.dumps([*identity, dtype, device]).encode()).hexdigest()[:32]


def model_key(model: LoadedModel | str) -> str | None:
    """The cache's key for a loaded model as it is now, or for the one `load_model` would
    load by this name (found without loading it); None when it must not be cached."""
    if isinstance(model, str):
        device = default_device()
        return identity_key(resolve_source(model), f"torch.{dtype_name(device)}", device)
    if budget_bytes() == 0 or altered_in_memory(model.model):
        return None
    parameter = next(model.model.parameters())
    return identity_key(model.source, str(parameter.dtype), parameter.device.type)


def entry_paths(model: LoadedModel | str, keys: list[list], suffix: str) -> list[Path] | None:
    """Where this model's entry for each key lives (the key: what fixes the entry's content),
    or None when the model must not be cached."""
    name = model_key(model) if keys else None
    if name is None:
        return None
    digests = [hashlib.sha256(json.dumps([name, *key]).encode()).hexdigest() for key in keys]
    return [cache_root() / FOLDER / name / d[:2] / f"{d[2:40]}{suffix}" for d in digests]


def read_entry(path: Path) -> dict[int, torch.Tensor]:
    """layer → pooled state; empty when absent or unreadable (a miss, recomputed)."""
    try:
        found = load_file(str(path))
        os.utime(path)  # most recently used: kept longest
    except Exception:
        return {}
    return {int(name): t for name, t in found.items()}


def write_entry(path: Path, write: Callable[[str], None]) -> None:
    """Replace the entry whole (`write` fills a temporary file beside it); a cache that cannot
    be written is skipped, never an error. Not files.write_atomic: an entry lost to a power
    cut is only a miss, so it is not flushed to disk, and it may be binary."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".entry.", dir=path.parent)
    except OSError:
        return
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def save_states(states: dict[int, torch.Tensor]) -> Callable[[str], None]:
    return lambda tmp: save_file({str(k): v.contiguous() for k, v in states.items()}, tmp)


def save_json(value: dict) -> Callable[[str], None]:
    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(value))

    return write


def prune(root: Path, budget: int) -> None:
    """Remove the least recently used entries until the cache fits its budget."""
    entries = []
    for shard in root.glob("*/*/*"):
        try:
            info = shard.stat()
        except OSError:
            continue
        entries.append((info.st_mtime_ns, info.st_size, shard))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= budget:
            break
        path.unlink(missing_ok=True)
        total -= size


def cached_states(
    loaded: LoadedModel,
    prompts: list[str],
    answers: list[str],
    pooling: str,
    layers: list[int],
    max_length: int,
    read: Reader,
) -> torch.Tensor:
    """[rows, layers, hidden]: each row's states from the cache where it holds all of
    `layers`, else from `read(rows, layers)` (the missing rows only, at every layer wanted
    or kept before) and kept."""
    paths = entry_paths(
        loaded, [[pooling, max_length, q, a] for q, a in zip(prompts, answers)], ".safetensors"
    )
    if paths is None:
        return read(list(range(len(prompts))), layers)
    entries = [read_entry(p) for p in paths]
    missing = [i for i, e in enumerate(entries) if not all(layer in e for layer in layers)]
    if missing:
        # a row read again is read at the layers it had too, so entries only grow
        wanted = sorted(set(layers).union(*(entries[i] for i in missing)))
        fresh = read(missing, wanted).cpu()
        for n, i in enumerate(missing):
            entries[i] = {**entries[i], **{layer: fresh[n, w] for w, layer in enumerate(wanted)}}
            write_entry(paths[i], save_states(entries[i]))
        prune(cache_root() / FOLDER, budget_bytes())
    return torch.stack([torch.stack([e[layer] for layer in layers]) for e in entries])


def cached_values(
    model: LoadedModel | str, keys: list[list], field: str, write: Callable[[list[int]], list]
) -> list:
    """Each key's JSON value (the key: a JSON-able description that fixes the value, its
    first item naming the kind), from the cache or from `write(rows)` for the missing rows,
    then kept. `model` may be a model's name (a folder), which `write` loads: a process that
    finds every value kept then never loads it."""
    paths = entry_paths(model, keys, ".json")
    if paths is None:
        return write(list(range(len(keys))))
    found: list = []
    for path in paths:
        try:
            found.append(json.loads(path.read_text())[field])
            os.utime(path)
        except (OSError, ValueError, KeyError, TypeError):
            found.append(None)
    missing = [i for i, value in enumerate(found) if value is None]
    if missing:
        for i, value in zip(missing, write(missing)):
            found[i] = value
            write_entry(paths[i], save_json({field: value}))
        prune(cache_root() / FOLDER, budget_bytes())
    return found


def cached_answers(
    loaded: LoadedModel, requests: list[list], write: Callable[[list[int]], list[str]]
) -> list[str]:
    """The answer to each request (the conversation, the sampling settings and seed), from
    the cache or written for the missing rows, then kept."""
    found = cached_values(loaded, [["answer", r] for r in requests], "answer", write)
    return [a or "" for a in found]
