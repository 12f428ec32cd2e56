"""Atomic file writes (a reader sees the old file or the new one, never half of either),
crash-safe folder replacement (checkpoints, adapters, datasets), and line-numbered reading
of the text and JSONL files users hand us."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

from pipeline.errors import DatasetError

T = TypeVar("T")
COMPLETE_MARKER = ".complete"  # written last into a saved folder: its files are all on disk


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


# --- crash-safe folders ----------------------------------------------------------------------
# A save writes a hidden sibling `.NAME.new`, flushes every file, writes the marker, then
# swaps it in: NAME → `.NAME.old`, `.NAME.new` → NAME, and deletes `.NAME.old`. At every
# instant one complete copy exists (NAME, `.NAME.new` or `.NAME.old`, each with its marker),
# and `recover_folder` finishes or rolls back a swap that a kill interrupted.

def _siblings(folder: Path) -> tuple[Path, Path]:
    return folder.with_name(f".{folder.name}.new"), folder.with_name(f".{folder.name}.old")


def is_complete(folder: Path) -> bool:
    return (Path(folder) / COMPLETE_MARKER).is_file()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_complete(folder: Path) -> None:
    """Flush every file under `folder` to disk, then write the marker that says so."""
    for root, dirs, files in os.walk(folder):
        for name in files:
            _fsync(Path(root) / name)
        _fsync(Path(root))
    with open(Path(folder) / COMPLETE_MARKER, "w") as f:
        f.flush()
        os.fsync(f.fileno())
    _fsync(Path(folder))


def recover_folder(folder: str | Path) -> Path | None:
    """Finish (or roll back) a replacement a crash interrupted; `folder` if it now holds a
    complete save, else None (a folder without the marker is left as it is, unused)."""
    folder = Path(folder)
    new, old = _siblings(folder)
    if is_complete(new):  # the newest complete save: finish swapping it in
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.rename(folder, old)
        os.rename(new, folder)
    shutil.rmtree(new, ignore_errors=True)
    if not is_complete(folder) and is_complete(old):
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(old, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder if is_complete(folder) else None


def replace_folder(folder: str | Path, write: Callable[[Path], Any]) -> Path:
    """Replace `folder` with what `write(tmp)` puts into a fresh folder, so that at every
    instant either the old or the new one is complete (see above)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(folder)
    new, old = _siblings(folder)
    new.mkdir()
    try:
        write(new)
        mark_complete(new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if folder.exists():
        os.rename(folder, old)
    os.rename(new, folder)
    _fsync(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
    return folder
