"""Atomic file writes (a reader sees the old file or the new one, never half of either),
and line-numbered reading of the text and JSONL files users hand us."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

from pipeline.errors import DatasetError

T = TypeVar("T")


def write_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, flush it to disk, then rename it over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonl_text(rows: list[dict]) -> str:
    """Rows as JSON Lines (UTF-8 kept as is)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    """Write rows as a JSONL file, atomically."""
    return write_atomic(path, jsonl_text(rows))


def read_lines(path: Path, what: str) -> list[str]:
    """The lines of a UTF-8 text file, or one clear error naming what was being read."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"Cannot read {what} from {path}: {exc}") from None


def read_jsonl_file(path: Path, what: str, parse: Callable[[Any, int], T],
                    on_bad_line: Callable[[str], None] | None = None) -> list[T]:
    """`parse(row, line_number)` of every non-blank line. A line that is not JSON, or that
    `parse` refuses with a DatasetError, stops the read with the file and line number, or,
    when `on_bad_line` is given, is reported to it and skipped."""
    records = []
    for n, line in enumerate(read_lines(path, what), 1):
        if not line.strip():
            continue
        try:
            records.append(parse(json.loads(line), n))
        except (json.JSONDecodeError, DatasetError) as exc:
            problem = f"not valid JSON ({exc.msg})." if isinstance(exc, json.JSONDecodeError) else str(exc)
            if on_bad_line is None:
                raise DatasetError(f"{path}, line {n}: {problem}") from None
            on_bad_line(f"{path}, line {n}: {problem}")
    return records
