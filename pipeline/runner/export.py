"""`export`: a trained policy adapter to take elsewhere — the adapter alone (peft format), or
merged into its base as a standalone transformers folder (safetensors, the tokenizer with its
chat template, the generation config), optionally also as one GGUF file — with a model card
that says where it came from: the stages that made it, each with its base, data (and its
hash) and constitution, and the tournament it took part in, with intervals.

The folder is written whole or not at all (a temporary folder renamed into place); an output
that exists and is not empty, an adapter whose base is not here and a preference model or
value function (a scalar head: it scores, it does not chat) are refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pipeline.cai.reward_model import HEAD_FILE, PM_FILE
from pipeline.config.commands import ExportJob
from pipeline.core.errors import ConfigError, ModelError
from pipeline.core.files import replace_folder
from pipeline.evaluation.tournament import EVAL_FILE, read_results
from pipeline.model.gguf_writer import GGUF_FILE, gguf_problem, write_gguf
from pipeline.model.loading import ADAPTER_CONFIG, load_model, resolve_source
from pipeline.runner.invocation import Invocation
from pipeline.runner.lineage import job_settings, lineage

ADAPTER_FILES = (ADAPTER_CONFIG, "adapter_model.safetensors")
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
CARD = "README.md"


def refusal(adapter: Path, out: Path) -> str:
    """Why this adapter cannot be exported into `out` ('' when it can)."""
    if not (adapter / ADAPTER_CONFIG).is_file():
        return (
            f"{adapter} is not a LoRA adapter folder (no {ADAPTER_CONFIG}): export a run's "
            "adapter/ folder (SFT, PPO, GRPO, RLOO, DPO or RAHF)."
        )
    if (adapter / HEAD_FILE).exists() or (adapter / PM_FILE).exists():
        return (
            f"{adapter} is a preference model or a PPO value function: a LoRA with a scalar "
            "head that scores answers, not a chat model. Export a policy adapter (an SFT, "
            "PPO, GRPO, RLOO, DPO or RAHF run's adapter/)."
        )
    base = base_of(adapter)
    try:
        resolve_source(base)
    except ModelError as exc:
        return f"The adapter's base model {base} is not available here: {exc}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        return f"{out} exists and is not empty: export into a new or an empty folder."
    return ""


def gguf_refusal(adapter: Path) -> str:
    """Why the adapter's base cannot be written as GGUF ('' when it can)."""
    base = Path(resolve_source(base_of(adapter)))
    if not (base / "config.json").is_file():
        return ""
    tokenizer = base / "tokenizer.json"
    return gguf_problem(
        json.loads((base / "config.json").read_text()),
        json.loads(tokenizer.read_text()) if tokenizer.is_file() else None,
    )


def base_of(adapter: Path) -> str:
    return json.loads((adapter / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path", "")


def title_of(adapter: Path) -> str:
    """The adapter's own card title ("RL-CAI policy adapter (PPO)"), naming its stage."""
    card = adapter / CARD
    first = card.read_text().splitlines()[0] if card.is_file() else ""
    return first.lstrip("# ").strip() or "LoRA adapter"


def provenance(adapter: Path) -> list[dict[str, Any]]:
    """The stages behind an adapter, newest first: each its title, run folder and lineage,
    following the policy it started from (PPO from SFT) and the preference model it was
    trained against (a probe it was rewarded by is in its stage's lineage), back to the base."""
    stages: list[dict[str, Any]] = []
    seen: set[Path] = set()
    waiting = [adapter]
    while waiting and len(stages) < 8:
        current = waiting.pop(0)
        if current.resolve() in seen:
            continue
        seen.add(current.resolve())
        settings = job_settings(current.parent)
        facts = lineage(SimpleNamespace(**settings)) if settings else {}
        stages.append({"stage": title_of(current), "run": str(current.parent), **facts})
        for name in ("policy_adapter", "reward_adapter"):
            earlier = Path(str(settings.get(name) or "_"))
            if (earlier / ADAPTER_CONFIG).is_file():
                waiting.append(earlier)
    return stages


def tournament_lines(adapter: Path) -> list[str]:
    """The policy's ratings in the tournament of its pipeline (run-all's eval/ beside its run
    folder), each with its interval; or where to get one."""
    run = adapter.parent
    results = run.parent / "eval"
    if not (results / EVAL_FILE).is_file():
        return [
            "No tournament of this policy was found beside it: `cstudio evaluate --policy "
            f"NAME={adapter}` rates it against the base with intervals."
        ]
    result = read_results(results)
    lines = []
    for judge in result.judges:
        for axis in judge.axes:
            rating = next((r for r in axis.ratings if r["name"] == run.name), None)
            if rating:
                lines.append(
                    f"{judge.judge}, {axis.axis}: Elo {rating['elo']:+.0f} (95% interval "
                    f"{rating['low']:+.0f} … {rating['high']:+.0f}) against the base "
                    f"(0), {rating['comparisons']} comparisons"
                )
    return lines or [f"The tournament in {results} did not rate {run.name}."]


def model_card(job: ExportJob, adapter: Path) -> str:
    stages = provenance(adapter)
    what = (
        f"merged into its base ({DTYPES[job.dtype]}): a standalone transformers model"
        + (f", and {GGUF_FILE} for llama.cpp and Ollama" if job.gguf else "")
        if job.merge
        else "a LoRA adapter (peft format) to load on its base"
    )
    lines = [
        f"# {stages[0]['stage']}",
        "",
        f"Exported by Constitution Studio from `{adapter}`: {what}.",
        "",
        f"- **base model**: {base_of(adapter)}",
        "",
        "## How it was made (newest stage first)",
        "",
    ]
    for stage in stages:
        lines.append(f"- **{stage['stage']}** — run `{stage['run']}`")
        lines += [f"  - {k}: {v}" for k, v in stage.items() if k not in ("stage", "run")]
    lines += ["", "## Tournament", ""]
    lines += [f"- {line}" for line in tournament_lines(adapter)]
    return "\n".join(lines) + "\n"


def export_model(job: ExportJob, out: Path) -> Path:
    """Write the export into `out` (new or empty); returns it."""
    adapter = Path(job.adapter)
    problem = refusal(adapter, out) or (gguf_refusal(adapter) if job.gguf else "")
    if problem:
        raise ConfigError(problem)

    def write(tmp: Path) -> None:
        if job.merge:
            import torch

            loaded = load_model(str(adapter))  # its base with the adapter merged in
            model = loaded.model.to(getattr(torch, DTYPES[job.dtype]))
            model.save_pretrained(str(tmp), safe_serialization=True)
            loaded.tokenizer.save_pretrained(str(tmp))
            if job.gguf:
                write_gguf(tmp, tmp / GGUF_FILE, half=job.dtype == "fp16")
        else:
            for name in ADAPTER_FILES:
                shutil.copy2(adapter / name, tmp / name)
        (tmp / CARD).write_text(model_card(job, adapter))

    return replace_folder(out, write)


def run(job: ExportJob, inv: Invocation) -> int:
    folder = export_model(job, inv.folder)
    what = "merged" + (" (and as GGUF)" if job.gguf else "") if job.merge else "as an adapter"
    print(f"exported {job.adapter} {what} into {folder}")
    return 0
