"""Atomic file writes (a reader sees the old file or the new one, never half of either),
crash-safe folder replacement (checkpoints, adapters, datasets), and line-numbered reading
of the text and JSONL files users hand us."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

import yaml

from pipeline.core.errors import DatasetError

T = TypeVar("T")
MAX_NESTING = 32  # deeper YAML or JSON has no use in our files, and recursion has limits
SURROGATE = re.compile("[\ud800-\udfff]")  # escapes like "\ud800" that UTF-8 cannot store
COMPLETE_MARKER = ".complete"  # written last into a saved folder: its files are all on disk


class OutputError(DatasetError):
    """A file cannot be written where it was asked to go."""


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def writable_target(path: Path) -> None:
    """Refuse a target that is not a plain file: renaming over a symlink, device node or
    folder would replace it (as root, even /dev/full)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"Cannot write {path}: {exc.strerror}.") from None
    if not stat.S_ISREG(mode):
        kind = (
            "a folder"
            if stat.S_ISDIR(mode)
            else "a symbolic link"
            if stat.S_ISLNK(mode)
            else "a device or special file"
        )
        raise OutputError(
            f"Cannot write {path}: it is {kind}, not a file. Give a file path "
            "that is new or a plain file."
        )


def write_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, flush it to disk, then rename it over.
    The file gets the permissions a new file would (0644 under the usual umask), or keeps
    those of the file it replaces."""
    path = Path(path)
    writable_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"Cannot write {path}: {exc.strerror} ({exc.filename}).") from None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) if path.exists() else 0o666 & ~umask()
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
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


def text_problem(value: Any) -> str | None:
    """Why a parsed value cannot be stored as UTF-8 text (a lone surrogate), or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and SURROGATE.search(item):
            return (
                f"the text {item[:40]!r} holds a lone surrogate (an escape like \\ud800), "
                "which is not a character"
            )
        if isinstance(item, dict):
            stack += list(item.keys()) + list(item.values())
        elif isinstance(item, list):
            stack += item
    return None


def json_value(text: str) -> Any:
    """One JSON document, or DatasetError saying plainly what is wrong with it: not JSON,
    nested too deep, a number too long to read, or text that is not valid Unicode."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not valid JSON ({exc.msg}).") from None
    except RecursionError:
        raise DatasetError("JSON nested too deeply.") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise DatasetError(f"a value cannot be read ({exc}).") from None
    problem = text_problem(value) if "\\u" in text else None
    if problem:
        raise DatasetError(problem + ".")
    return value


# libyaml's C parser and emitter where PyYAML was built with it (10-20x faster than the
# pure-Python ones on a large constitution), the same safe loading either way.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class YamlRefused(ValueError):
    """YAML we will not read: a syntax error, or something our files never need."""

    def __init__(self, problem: str, line: int | None):
        super().__init__(f"line {line}: {problem}" if line else problem)
        self.problem, self.line = problem, line


def read_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """(value, node tree) of one YAML document, parsed once. Refused with YamlRefused before
    anything is built: anchors and aliases (an alias bomb expands 370 bytes into gigabytes),
    nesting deeper than MAX_NESTING, text that is not valid Unicode, numbers too long to read,
    and syntax errors. The node tree keeps each value's line for messages."""
    loader = SAFE_LOADER(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise YamlRefused(*yaml_error(exc)) from None
        except yaml.YAMLError as exc:
            raise YamlRefused(f"not valid YAML: {exc}", None) from None
        if node is None:
            return None, None
        refused = node_problem(node)
        if refused:
            raise YamlRefused(*refused)
        try:
            return loader.construct_document(node), node
        except (RecursionError, ValueError, OverflowError) as exc:
            raise YamlRefused(f"cannot be read ({type(exc).__name__}: {exc})", None) from None
        except yaml.YAMLError as exc:
            raise YamlRefused(f"not valid YAML: {exc}", None) from None
    finally:
        loader.dispose()


def node_problem(root: yaml.Node) -> tuple[str, int | None] | None:
    """(problem, line) for the first thing `read_yaml` refuses in a composed tree. An alias is
    the same node reached twice, so it is found without expanding anything."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        line = node.start_mark.line + 1
        if id(node) in seen:
            return "YAML anchors and aliases (&name, *name) are not allowed here", line
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if SURROGATE.search(node.value):
                return text_problem(node.value) or "text that is not valid UTF-8", line
            if len(node.value) > 4000 and node.tag.endswith(":int"):
                return "a number too long to read", line
            continue
        if depth > MAX_NESTING:
            return f"nested more than {MAX_NESTING} levels deep", line
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else node.value
        )
        stack += [(child, depth + 1) for child in reversed(children)]
    return None


def yaml_error(exc: yaml.MarkedYAMLError) -> tuple[str, int | None]:
    """A YAML syntax error as (what is wrong, its line). An unclosed quote is reported where
    the quoted text opened, not where the parser ran out of text."""
    if (exc.context or "").startswith("while scanning a quoted scalar") and exc.context_mark:
        return (
            "a quoted text opens here and is never closed (a missing closing quote?)",
            exc.context_mark.line + 1,
        )
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    if "maximum nesting depth" in (exc.problem or ""):  # libyaml stops at its own limit
        return f"nested more than {MAX_NESTING} levels deep", line
    if "invalid Unicode character escape" in (exc.problem or ""):  # libyaml's word for \ud800
        return "an escape such as \\ud800 that is not a character (a lone surrogate)", line
    return f"not valid YAML ({exc.problem or exc.context})", mark.line + 1 if mark else None


def read_jsonl_file(
    path: Path,
    what: str,
    parse: Callable[[Any, int], T],
    on_bad_line: Callable[[str], None] | None = None,
) -> list[T]:
    """`parse(row, line_number)` of every non-blank line. A line that is not JSON, or that
    `parse` refuses with a DatasetError, stops the read with the file and line number, or,
    when `on_bad_line` is given, is reported to it and skipped."""
    records = []
    for n, line in enumerate(read_lines(path, what), 1):
        if not line.strip():
            continue
        try:
            records.append(parse(json_value(line), n))
        except DatasetError as exc:
            if on_bad_line is None:
                raise DatasetError(f"{path}, line {n}: {exc}") from None
            on_bad_line(f"{path}, line {n}: {exc}")
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


def save_tensors(
    folder: str | Path,
    tensors: dict[str, Any],
    tensor_file: str,
    lineage: dict[str, Any],
    lineage_file: str,
) -> Path:
    """An artifact of tensors (safetensors) and where they came from (JSON), replaced whole
    (crash-safe): probes, steering directions."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / tensor_file))
        write_atomic(tmp / lineage_file, json.dumps(lineage, indent=2))

    return replace_folder(folder, write)


def read_tensors(
    folder: str | Path, tensor_file: str, lineage_file: str, what: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, lineage) of an artifact `save_tensors` wrote; anything else is refused as
    not being `what`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / lineage_file).exists() or not is_complete(folder):
        raise DatasetError(f"{folder} is not {what}.")
    return load_file(str(folder / tensor_file)), json.loads((folder / lineage_file).read_text())


# --- append-only JSONL logs --------------------------------------------------------------------
# A run's chains.jsonl and labels.jsonl: one record per line, appended a batch at a time and
# flushed to disk, so an interrupted run loses at most the batch in flight and a rerun skips
# every record whose stable id is already there.


def read_jsonl_log(path: Path) -> list[dict]:
    """Rows of a JSONL log; a torn last line (a crash mid-write) is cut off the file."""
    if not path.exists():
        return []
    if not path.is_file():  # a device such as /dev/full or /dev/zero reads without end
        raise DatasetError(f"{path} is not a regular file, so it cannot be read as a log.")
    data = path.read_bytes()
    rows, good = [], 0
    for line in data.splitlines(keepends=True):
        try:
            rows.append(json_value(line.decode("utf-8")))
        except (DatasetError, UnicodeDecodeError):
            if good + len(line) < len(data):
                raise DatasetError(
                    f"{path} is corrupt at byte {good}: a line in the middle is not JSON."
                ) from None
            with open(path, "r+b") as f:
                f.truncate(good)
            break
        good += len(line)
    return rows


def append_jsonl(path: Path, rows: list[dict]) -> None:
    """Append rows in one write and flush them to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(jsonl_text(rows))
        f.flush()
        os.fsync(f.fileno())


class RecordLog(Generic[T]):
    """The append-only log of one kind of record in a run folder. A subclass names its file
    and how a record becomes a row and back; `key`, when it gives one, keeps only the latest
    record of each key on reading (a pair labelled again takes its latest label)."""

    FILE = ""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / self.FILE

    @classmethod
    def of_file(cls, path: str | Path) -> "RecordLog[T]":
        """The log kept in a file of any name (one a user hands over)."""
        log = cls(Path(path).parent)
        log.path = Path(path)
        return log

    def to_row(self, record: T) -> dict:
        raise NotImplementedError

    def from_row(self, row: Any, n: int) -> T:
        raise NotImplementedError

    def key(self, record: T) -> str | None:
        return None

    def read(self) -> list[T]:
        return self.latest(
            [self.from_row(row, n) for n, row in enumerate(read_jsonl_log(self.path), 1)]
        )

    def latest(self, records: list[T]) -> list[T]:
        """The latest record of each key, in first-seen order (all of them when unkeyed)."""
        if not records or self.key(records[0]) is None:
            return records
        return list({self.key(r): r for r in records}.values())

    def done_ids(self) -> set[str]:
        return {
            row["id"] for row in read_jsonl_log(self.path) if isinstance(row, dict) and "id" in row
        }

    def append(self, records: list[T]) -> None:
        append_jsonl(self.path, [self.to_row(r) for r in records])


def save_dataset(rows: list[dict], folder: Path) -> Path:
    """Write rows as a Hugging Face dataset folder, replacing any earlier one crash-safely."""
    from datasets import Dataset

    return replace_folder(folder, lambda tmp: Dataset.from_list(rows).save_to_disk(str(tmp)))
