"""The workspace: a folder holding the SQLite database (WAL) and, later, run artifacts.

Constitution versions are append-only: saving never changes an earlier version. The
editor's unsaved draft is kept too, so a page reload or a server restart loses no edit.
Schema changes are numbered migrations recorded in `PRAGMA user_version`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from pipeline.config.settings import DEFAULT_CONSTITUTION
from pipeline.core.errors import StoreError
from pipeline.data.constitution import (
    Constitution,
    check_constitution,
    content_hash,
    load_constitution,
    parse_constitution,
    to_yaml,
)
from pipeline.data.preferences import HUMAN_CHOICES

WORKSPACE_ENV = "CONSTITUTION_STUDIO_WORKSPACE"
SHIPPED_CONSTITUTIONS = Path(__file__).resolve().parents[2] / "constitutions"
DB_NAME = "studio.db"
RUNS_DIR = "runs"  # every job's run folder
EXPORTS_DIR = "exports"  # files the studio hands out for download: the only ones it serves


def parse_ref(ref: str) -> tuple[str, int | None]:
    """`NAME@N` (or `NAME@vN`) → (NAME, N); a bare `NAME` → (NAME, None)."""
    name, at, version = ref.rpartition("@")
    if not at:
        return ref, None
    if not version.lstrip("v").isdigit() or not name:
        raise StoreError(
            f"'{ref}': the version after '@' must be a number, e.g. {name or 'name'}@2."
        )
    return name, int(version.lstrip("v"))


MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE constitution_versions (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        hash TEXT NOT NULL,
        yaml TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        UNIQUE (name, version)
    );
    CREATE INDEX constitution_versions_hash ON constitution_versions (hash);
    """,
    """
    CREATE TABLE constitution_drafts (
        name TEXT PRIMARY KEY,
        base_version INTEGER,
        yaml TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        args TEXT NOT NULL,
        out_dir TEXT NOT NULL,
        pid INTEGER,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX jobs_status ON jobs (status);
    """,
    """
    CREATE TABLE human_labels (
        pair_id TEXT PRIMARY KEY,
        choice TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie')),
        prompt TEXT NOT NULL,
        response_a TEXT NOT NULL,
        response_b TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT '',
        labelled_at TEXT NOT NULL
    );
    """,
    """
    ALTER TABLE jobs ADD COLUMN command TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE jobs ADD COLUMN config TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN started_at TEXT;
    ALTER TABLE jobs ADD COLUMN artifacts TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE jobs ADD COLUMN parent INTEGER;
    """,
    """
    CREATE TABLE human_label_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pair_id TEXT NOT NULL,
        previous TEXT,
        previous_source TEXT,
        previous_at TEXT
    );
    """,
)


@dataclass(frozen=True)
class UndoneLabel:
    """What an undo took back: the pair, the label it removed and the one it brought back."""

    pair_id: str
    taken: str | None
    restored: str | None

    def sentence(self) -> str:
        return (
            f"took back label {self.taken or 'none'} of pair {self.pair_id}; "
            f"its label is now {self.restored or 'none'}"
        )


def workspace_dir(explicit: str | Path | None = None) -> Path:
    """`--workspace` if given, else $CONSTITUTION_STUDIO_WORKSPACE, else ./workspace."""
    return Path(explicit or os.environ.get(WORKSPACE_ENV) or "workspace").resolve()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class VersionRecord:
    name: str
    version: int
    hash: str
    yaml: str
    note: str
    created_at: str

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def constitution(self) -> Constitution:
        return parse_constitution(self.yaml, self.label)


@dataclass(frozen=True)
class Draft:
    name: str
    base_version: int | None
    yaml: str
    updated_at: str


SQLITE_HEADER = b"SQLite format 3\x00"
MIN_FREE = 1_000_000  # bytes a write may need beyond the database's own size (WAL, index)


def read_only_uri(path: Path, frozen: bool) -> str:
    """A read-only SQLite URI; `frozen` (a workspace nobody can write) also skips the WAL
    index, which could not be created there."""
    return f"file:{path}?mode=ro" + ("&immutable=1" if frozen else "")


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file itself is bad (corrupt, or not a database). A full disk
    or an I/O error is not damage: the file may be perfectly healthy."""
    return getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def is_disk_trouble(exc: BaseException) -> bool:
    """A full disk (SQLITE_FULL, ENOSPC, EDQUOT) or an I/O error from the disk."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO)
    return getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_FULL", "SQLITE_IOERR"))


def disk_message(path: Path, detail: str) -> str:
    """What a user needs when the disk under the workspace fails: whether it is full, how
    much room to make, and that nothing was changed."""
    folder = path.parent
    need = max(MIN_FREE, sum(p.stat().st_size for p in folder.glob(DB_NAME + "*") if p.is_file()))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < need:
        what = f"The disk holding the workspace {folder} is full ({file_size(free)} free)"
    else:
        what = f"The disk holding the workspace {folder} reported an error ({detail})"
    return (
        f"{what}. Nothing was changed. Free at least "
        f"{file_size(need)} on that disk (about the database's size, room for its journal) "
        "and try again."
    )


def file_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def database_problem(path: Path, frozen: bool = False) -> str:
    """Why the file at `path` is not a usable SQLite database ('' when it is, or is absent).
    An empty file counts as broken: SQLite would quietly treat it as a new database. A full
    disk or an I/O error proves nothing about the file, so it raises instead of answering."""
    try:
        with open(path, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return ""
    except OSError as exc:
        if is_disk_trouble(exc):
            raise StoreError(disk_message(path, exc.strerror or str(exc))) from None
        return f"cannot be read ({exc.strerror})"
    if not header:
        return "is empty (0 bytes)"
    if header != SQLITE_HEADER:
        return "is not an SQLite database (its first bytes are wrong)"
    try:
        conn = sqlite3.connect(read_only_uri(path, frozen), uri=True)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return f"is damaged ({exc})"
        if is_disk_trouble(exc):
            raise StoreError(disk_message(path, str(exc))) from None
        raise StoreError(
            f"Cannot open the workspace database {path}: {exc}. Nothing was changed."
        ) from None
    return "" if result == "ok" else f"is damaged ({result})"


class Store:
    """All database access. Each call opens its own connection, so any thread may use it.

    A workspace the process cannot write is opened read-only: listing and reading work,
    writes fail with a message that says so. A database file that is empty, not SQLite or
    damaged is refused with how to recover; with `recover` (the studio), it is moved aside
    as studio.db.broken-TIME, a new one is started, and `notice` says so.
    """

    def __init__(self, workspace: str | Path | None = None, recover: bool = False):
        self.workspace = workspace_dir(workspace)
        self.notice = ""
        try:
            self.workspace.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the workspace {self.workspace}: {exc.strerror}."
            ) from None
        if not self.workspace.is_dir():
            raise StoreError(f"The workspace {self.workspace} is not a folder.")
        self.path = self.workspace / DB_NAME
        self.runs = self.workspace / RUNS_DIR
        self.exports = self.workspace / EXPORTS_DIR
        self.read_only = not os.access(self.workspace, os.W_OK)
        problem = database_problem(self.path, self.read_only)
        if problem:
            self._broken(problem, recover)
        fresh = not self.path.exists()
        try:
            self.migrate()
        except StoreError:
            if fresh:  # a database that could not be set up is not left behind as an empty one
                for suffix in ("", "-wal", "-shm"):
                    self.path.with_name(DB_NAME + suffix).unlink(missing_ok=True)
            raise

    def default_name(self) -> str | None:
        """The constitution to open first: the shipped default, else the first saved one."""
        names = self.names()
        if DEFAULT_CONSTITUTION in names:
            return DEFAULT_CONSTITUTION
        return names[0] if names else None

    def editing_name(self) -> str | None:
        """The constitution being edited: the one whose draft changed last, else the default."""
        drafts = [d for d in (self.draft(n) for n in self.names()) if d]
        return max(drafts, key=lambda d: d.updated_at).name if drafts else self.default_name()

    def new_run_folder(self, kind: str) -> Path:
        """A run folder no job has used, for a job of `kind`: runs/KIND-YYYYmmdd-HHMMSS
        (with -2, -3… when that second is taken)."""
        stem = self.runs / f"{kind}-{datetime.now():%Y%m%d-%H%M%S}"
        folder, n = stem, 1
        while folder.exists():
            n += 1
            folder = stem.with_name(f"{stem.name}-{n}")
        return folder

    def trained(
        self, kinds: tuple[str, ...], folder: str = "adapter", marker: str = "adapter_config.json"
    ) -> list[str]:
        """The `folder` of every succeeded job of these kinds that holds `marker` (an
        adapter, by default), newest first (the adapters a model picker offers, the PMs a
        PPO form offers, the probes a judge picker offers)."""
        found = [
            str(Path(j.out_dir) / folder)
            for j in self.jobs()
            if j.kind in kinds and j.status == "succeeded"
        ]
        return [a for a in dict.fromkeys(found) if (Path(a) / marker).exists()]

    def _broken(self, problem: str, recover: bool) -> None:
        if not recover or self.read_only:
            raise StoreError(
                f"The workspace database {self.path} {problem}. Nothing was changed. To recover: "
                f"restore it from a backup, or move it away (e.g. to {DB_NAME}.broken) so a new "
                "empty one is made — starting the studio does that for you and keeps the broken "
                "file beside it."
            )
        aside = self.path.with_name(f"{DB_NAME}.broken-{datetime.now():%Y%m%d-%H%M%S}")
        moved: list[tuple[Path, Path]] = []
        try:
            for suffix in ("", "-wal", "-shm"):
                source = self.path.with_name(DB_NAME + suffix)
                if source.exists():
                    target = aside.with_name(aside.name + suffix)
                    os.rename(source, target)
                    moved.append((target, source))
        except OSError as exc:
            for target, source in reversed(moved):  # all or nothing: never half set aside
                os.rename(target, source)
            raise StoreError(
                f"The workspace database {self.path} {problem}, and it could not "
                f"be moved aside ({exc.strerror}). Nothing was changed."
            ) from None
        self.notice = (
            f"The workspace database {problem}. It was kept as {aside.name} and a new, "
            "empty one was started: saved constitutions, labels and the job list of "
            "the broken one are not shown. Restore a backup over studio.db to get "
            "them back (run folders under runs/ are untouched)."
        )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            if self.read_only:
                conn = sqlite3.connect(
                    read_only_uri(self.path, True), uri=True, timeout=30, isolation_level=None
                )
            else:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            if is_disk_trouble(exc):
                raise StoreError(disk_message(self.path, str(exc))) from None
            raise StoreError(f"Cannot open the workspace database {self.path}: {exc}.") from None
        conn.row_factory = sqlite3.Row
        try:
            if not self.read_only:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            yield conn
        except sqlite3.DatabaseError as exc:
            if self.read_only and "readonly" in str(exc):
                raise StoreError(
                    f"The workspace {self.workspace} is read-only: this cannot be "
                    "saved. Use a workspace you can write."
                ) from None
            if is_disk_trouble(exc):
                raise StoreError(disk_message(self.path, str(exc))) from None
            raise StoreError(f"The workspace database {self.path} failed: {exc}.") from None
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front, so read-then-write is race-free."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def migrate(self) -> int:
        """Apply the migrations this database has not seen; returns the schema version."""
        if self.read_only:
            return self._check_read_only_schema()
        with self._transaction() as conn:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} was written by a newer Constitution Studio "
                    f"(schema {current}, this one knows {len(MIGRATIONS)})."
                )
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            return len(MIGRATIONS)

    def _check_read_only_schema(self) -> int:
        if not self.path.exists():
            raise StoreError(
                f"The workspace {self.workspace} is read-only and holds no "
                f"{DB_NAME} yet: nothing to read."
            )
        with self._connect() as conn:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current != len(MIGRATIONS):
            raise StoreError(
                f"The workspace {self.workspace} is read-only and its database "
                f"has schema {current}, this Constitution Studio needs "
                f"{len(MIGRATIONS)}: open it once with write access to upgrade it."
            )
        return current

    # --- constitution versions -------------------------------------------------------------

    def save_version(
        self, constitution: Constitution, note: str = ""
    ) -> tuple[VersionRecord, bool]:
        """Save as the next version of its name; unchanged content is not saved again.

        Returns the record and whether a new version was created. The draft of that name is
        cleared, as it is now saved.
        """
        check_constitution(constitution)  # an invalid version must never be stored
        digest = content_hash(constitution)
        with self._transaction() as conn:
            latest = conn.execute(
                "SELECT * FROM constitution_versions WHERE name = ? ORDER BY version DESC LIMIT 1",
                (constitution.name,),
            ).fetchone()
            if latest is not None and latest["hash"] == digest:
                conn.execute("DELETE FROM constitution_drafts WHERE name = ?", (constitution.name,))
                return _record(latest), False
            version = latest["version"] + 1 if latest else 1
            text = to_yaml(replace(constitution, version=version))
            conn.execute(
                "INSERT INTO constitution_versions (name, version, hash, yaml, note, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (constitution.name, version, digest, text, note, _now()),
            )
            conn.execute("DELETE FROM constitution_drafts WHERE name = ?", (constitution.name,))
        return self.version(constitution.name, version), True

    def names(self) -> list[str]:
        with self._connect() as conn:
            rows = conn.execute("SELECT DISTINCT name FROM constitution_versions ORDER BY name")
            return [r["name"] for r in rows]

    def versions(self, name: str) -> list[VersionRecord]:
        """Every version of `name`, newest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM constitution_versions WHERE name = ? ORDER BY version DESC", (name,)
            ).fetchall()
        return [_record(r) for r in rows]

    def version(self, name: str, version: int | None = None) -> VersionRecord:
        """One version of `name`; the latest when `version` is None."""
        with self._connect() as conn:
            if version is None:
                row = conn.execute(
                    "SELECT * FROM constitution_versions WHERE name = ? "
                    "ORDER BY version DESC LIMIT 1",
                    (name,),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT * FROM constitution_versions WHERE name = ? AND version = ?",
                    (name, version),
                ).fetchone()
        if row is None:
            which = f"version {version} of " if version is not None else ""
            raise StoreError(f"No saved {which}constitution '{name}' in {self.workspace}.")
        return _record(row)

    def all_versions(self) -> list[VersionRecord]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM constitution_versions ORDER BY name, version DESC"
            ).fetchall()
        return [_record(r) for r in rows]

    def seed(self, folder: Path = SHIPPED_CONSTITUTIONS) -> list[str]:
        """Save each shipped constitution in `folder` whose name the store does not know
        (nothing, in a read-only workspace)."""
        if self.read_only:
            return []
        known = set(self.names())
        added = []
        for path in sorted(folder.glob("*.yaml")):
            constitution = load_constitution(path)
            if constitution.name not in known:
                self.save_version(constitution, note=f"shipped {path.name}")
                added.append(constitution.name)
        return added

    # --- drafts ----------------------------------------------------------------------------

    def save_draft(self, constitution: Constitution, base_version: int | None) -> None:
        check_constitution(constitution)
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO constitution_drafts (name, base_version, yaml, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "base_version = excluded.base_version, yaml = excluded.yaml, "
                "updated_at = excluded.updated_at",
                (constitution.name, base_version, to_yaml(constitution), _now()),
            )

    def draft(self, name: str) -> Draft | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT * FROM constitution_drafts WHERE name = ?", (name,)
            ).fetchone()
        return Draft(**dict(row)) if row else None

    def working(self, name: str) -> Constitution:
        """The constitution as it is being edited: its draft if any, else its latest version."""
        draft = self.draft(name)
        if draft is not None:
            return parse_constitution(draft.yaml, f"draft of {name}")
        return self.version(name).constitution

    def discard_draft(self, name: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM constitution_drafts WHERE name = ?", (name,))

    # --- jobs ------------------------------------------------------------------------------

    def add_job(
        self,
        kind: str,
        args: list[str],
        out_dir: str,
        command: list[str],
        config: str = "",
        parent: int | None = None,
    ) -> tuple[JobRecord, bool]:
        """Queue a job; (record, True) if it was added, (the existing one, False) if the same
        job (same arguments, same folder) is already queued or running — so two tabs pressing
        the same button run it once."""
        with self._transaction() as conn:
            same = conn.execute(
                "SELECT id FROM jobs WHERE args = ? AND out_dir = ? AND status IN "
                f"({_placeholders(PENDING)})",
                (json.dumps(args), out_dir, *PENDING),
            ).fetchone()
            if same is not None:
                job_id, added = same["id"], False
            else:
                job_id = conn.execute(
                    "INSERT INTO jobs (kind, status, args, out_dir, command, config, parent, "
                    "created_at) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?)",
                    (kind, json.dumps(args), out_dir, json.dumps(command), config, parent, _now()),
                ).lastrowid
                added = True
        return self.job(job_id), added

    def claim_next_job(self, free_kinds: tuple[str, ...] = ()) -> JobRecord | None:
        """The oldest startable queued job, marked 'starting' atomically, so two launchers
        never start the same job. One job at a time holds the slot; jobs of `free_kinds`
        (pipelines that only wait on their own stage jobs) neither need nor hold it."""
        free = _placeholders(free_kinds) if free_kinds else "NULL"
        with self._transaction() as conn:
            busy = conn.execute(
                f"SELECT 1 FROM jobs WHERE status IN ({_placeholders(ACTIVE)}) "
                f"AND kind NOT IN ({free})",
                (*ACTIVE, *free_kinds),
            ).fetchone()
            row = conn.execute(
                f"SELECT id FROM jobs WHERE status = 'queued' AND (kind IN ({free}) "
                "OR ?) ORDER BY id LIMIT 1",
                (*free_kinds, busy is None),
            ).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE jobs SET status = 'starting' WHERE id = ?", (row["id"],))
        return self.job(row["id"])

    def start_job(self, job_id: int, pid: int) -> None:
        with self._transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'running', pid = ?, started_at = ? WHERE id = ?",
                (pid, _now(), job_id),
            )

    def job(self, job_id: int) -> JobRecord:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise StoreError(f"No job {job_id} in {self.workspace}.")
        return _job(row)

    def jobs(self, kind: str | None = None) -> list[JobRecord]:
        """Jobs, newest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE ? IS NULL OR kind = ? ORDER BY id DESC", (kind, kind)
            ).fetchall()
        return [_job(r) for r in rows]

    def set_job_status(
        self, job_id: int, status: str, error: str = "", artifacts: list[str] | None = None
    ) -> None:
        finished = None if status in PENDING else _now()
        with self._transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = ?, error = ?, finished_at = ?, "
                "artifacts = COALESCE(?, artifacts) WHERE id = ?",
                (
                    status,
                    error,
                    finished,
                    None if artifacts is None else json.dumps(artifacts),
                    job_id,
                ),
            )

    # --- human labels ----------------------------------------------------------------------
    # Only people write here: AI labelling writes run files and never touches this table.

    def set_human_label(
        self,
        pair_id: str,
        choice: str,
        prompt: str,
        response_a: str,
        response_b: str,
        source: str = "studio",
    ) -> None:
        """Record (or change) a person's choice for the pair with these answers in this order."""
        if choice not in HUMAN_CHOICES:
            raise StoreError(
                f"A human label is {', '.join(HUMAN_CHOICES[:-1])} or "
                f"{HUMAN_CHOICES[-1]} (got {choice!r})."
            )
        with self._transaction() as conn:
            before = conn.execute(
                "SELECT choice, source, labelled_at FROM human_labels WHERE pair_id = ?", (pair_id,)
            ).fetchone()
            conn.execute(
                "INSERT INTO human_label_history (pair_id, previous, previous_source, "
                "previous_at) VALUES (?, ?, ?, ?)",
                (pair_id, *(tuple(before) if before else (None, None, None))),
            )
            conn.execute(
                "INSERT OR REPLACE INTO human_labels VALUES (?, ?, ?, ?, ?, ?, ?)",
                (pair_id, choice, prompt, response_a, response_b, source, _now()),
            )

    def undo_human_label(self) -> UndoneLabel | None:
        """Take back the last human label recorded: the pair's label before it comes back
        (or none). None when there is nothing to undo."""
        with self._transaction() as conn:
            last = conn.execute(
                "SELECT * FROM human_label_history ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if last is None:
                return None
            taken = conn.execute(
                "SELECT choice FROM human_labels WHERE pair_id = ?", (last["pair_id"],)
            ).fetchone()
            conn.execute("DELETE FROM human_label_history WHERE id = ?", (last["id"],))
            if last["previous"] is None:
                conn.execute("DELETE FROM human_labels WHERE pair_id = ?", (last["pair_id"],))
            else:
                conn.execute(
                    "UPDATE human_labels SET choice = ?, source = ?, labelled_at = ? "
                    "WHERE pair_id = ?",
                    (
                        last["previous"],
                        last["previous_source"],
                        last["previous_at"],
                        last["pair_id"],
                    ),
                )
        return UndoneLabel(last["pair_id"], taken["choice"] if taken else None, last["previous"])

    def remove_human_label(self, pair_id: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM human_labels WHERE pair_id = ?", (pair_id,))

    def human_pairs(self) -> list[tuple[str, str, str, str]]:
        """Every pair a person labelled here: (prompt, answer A, answer B, choice)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT prompt, response_a, response_b, choice FROM human_labels "
                "ORDER BY labelled_at, pair_id"
            ).fetchall()
        return [tuple(r) for r in rows]

    def human_labels(self) -> dict[str, str]:
        """pair id → choice."""
        with self._connect() as conn:
            rows = conn.execute("SELECT pair_id, choice FROM human_labels").fetchall()
        return {r["pair_id"]: r["choice"] for r in rows}


ACTIVE = ("starting", "running", "cancelling")  # a process exists (or is being started)
PENDING = ("queued", *ACTIVE)  # not ended yet


def _placeholders(values: tuple) -> str:
    return ", ".join("?" * len(values))


@dataclass(frozen=True)
class JobRecord:
    """A background job: `args` after `python -m pipeline`, `command` the full command line
    it ran with, `config` its YAML (training stages), `artifacts` what it left in `out_dir`."""

    id: int
    kind: str
    status: str  # queued, starting, running, cancelling, succeeded, failed, cancelled
    args: tuple[str, ...]
    out_dir: str
    pid: int | None
    created_at: str
    finished_at: str | None
    error: str
    command: tuple[str, ...]
    config: str
    started_at: str | None
    artifacts: tuple[str, ...]
    parent: int | None

    @property
    def active(self) -> bool:
        """Queued or running: not ended yet."""
        return self.status in PENDING


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        **{**dict(row), **{k: tuple(json.loads(row[k])) for k in ("args", "command", "artifacts")}}
    )


def _record(row: sqlite3.Row) -> VersionRecord:
    return VersionRecord(
        name=row["name"],
        version=row["version"],
        hash=row["hash"],
        yaml=row["yaml"],
        note=row["note"],
        created_at=row["created_at"],
    )
