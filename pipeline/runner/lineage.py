"""Where a run came from: its base model, the folders it read (with a hash of the data), and
the constitution behind that data — what a tracker files as the run's config and an export's
model card states, so a result found elsewhere can be traced back."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.config.commands import read_job_file
from pipeline.values.representation_judge import LINEAGE_FILE, probe_quality, read_lineage

INPUTS = (
    "data",
    "policy_adapter",
    "reward_adapter",
    "reward_probe",
    "init_adapter",
    "prompts",
    "constitution",
)


def data_hash(path: Path) -> str:
    """sha256 of a data file, or of a folder's JSONL files (its records) in name order."""
    files = [path] if path.is_file() else sorted(path.glob("*.jsonl"))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def constitution_of(path: Path) -> dict[str, str]:
    """The constitution a data folder was written under: its run.json says (chains, labels),
    or its records carry the hash (SFT data)."""
    folder = path if path.is_dir() else path.parent
    run = folder / "run.json"
    if run.is_file():
        facts = json.loads(run.read_text())
        if facts.get("constitution_hash"):
            return {k: facts[k] for k in ("constitution", "constitution_hash") if k in facts}
    for file in sorted(folder.glob("*.jsonl")):
        with file.open() as rows:
            first = rows.readline()
        try:
            found = json.loads(first).get("constitution_hash") if first.strip() else None
        except (json.JSONDecodeError, AttributeError):
            found = None
        if found:
            return {"constitution_hash": found}
    return {}


def lineage(job: Any) -> dict[str, str]:
    """The job's base model and inputs, the data's hash and its constitution."""
    facts = {"base_model": str(getattr(job, "model", "") or getattr(job, "base", ""))}
    facts |= {name: str(getattr(job, name)) for name in INPUTS if getattr(job, name, "")}
    data = Path(str(getattr(job, "data", "") or "_"))
    if data.exists():
        facts["data_hash"] = data_hash(data)
        facts |= constitution_of(data)
    return facts | probe_facts(Path(str(getattr(job, "reward_probe", "") or "_")))


def probe_facts(folder: Path) -> dict[str, str]:
    """A reward probe's human labels (their hash) and how well it agreed with them."""
    if not (folder / LINEAGE_FILE).is_file():
        return {}
    fitted = read_lineage(folder)
    return {"probe_data_hash": fitted["data_hash"], "probe_agreement": probe_quality(fitted)}


def job_settings(run_folder: Path) -> dict[str, Any]:
    """A run's settings as its job.yaml holds them (read safely), {} when it has none."""
    path = run_folder / "job.yaml"
    return read_job_file(path) if path.is_file() else {}


def run_config(stage: str, job: Any, out: Path) -> dict[str, Any]:
    """A run's settings with its stage, folder and lineage: a tracker's run config."""
    return {"stage": stage, "run_folder": str(out), "lineage": lineage(job), **asdict(job)}
