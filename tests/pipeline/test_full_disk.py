"""A full disk is not a damaged database: the workspace is refused with a message that says
the disk is full and how much room to make, and nothing is renamed, emptied or created."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.errors import StoreError
from pipeline.data.store import Store, disk_message, is_damage, is_disk_trouble
from tests.pipeline.test_bad_input import ROOT, SHIPPED, cli


@pytest.fixture
def small_disk(tmp_path):
    """A 40 MB tmpfs of our own (root with CAP_SYS_ADMIN only); skipped where it cannot be
    mounted, and then the max_page_count test below still covers SQLite's own full error."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    return filler


def snapshot(ws: Path) -> dict[str, bytes]:
    """The files that hold the workspace (SQLite's empty -wal/-shm companions aside)."""
    return {
        p.name: p.read_bytes()
        for p in ws.iterdir()
        if p.stat().st_size and not p.name.endswith("-shm")
    }


@pytest.mark.integration
def test_a_full_disk_never_costs_the_workspace(small_disk):
    ws = small_disk / "ws"
    Store(ws).seed()
    filler = fill(small_disk)
    before = snapshot(ws)
    for args in (("constitution", "list"), ("constitution", "save", str(SHIPPED))):
        code, _, err = cli(ws, *args)
        assert code == 1 and "is full" in err and "Nothing was changed" in err, err
        assert "damaged" not in err and "Free at least" in err
    with pytest.raises(StoreError, match="is full"):
        Store(ws, recover=True)  # what the studio opens: it must not set the database aside
    studio = subprocess.run(
        [sys.executable, "app.py", "--workspace", str(ws), "--port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        studio.returncode == 1 and "is full" in studio.stderr and "Traceback" not in studio.stderr
    )
    assert snapshot(ws) == before and not list(ws.glob("*broken*"))
    new = small_disk / "new-ws"
    assert cli(new, "constitution", "list")[0] == 1
    assert not (new / "studio.db").exists()  # no empty database left for a later start to trust
    filler.unlink()
    code, out, _ = cli(ws, "constitution", "list")
    assert code == 0 and "harmless-helpful@1" in out


def test_a_write_that_fills_the_disk_says_so_and_keeps_what_was_saved(small_disk):
    ws = small_disk / "ws"
    store = Store(ws)
    store.seed()
    names = store.names()
    huge = dataclasses.replace(store.working("harmless-helpful"), description="x" * 200_000)
    filler = fill(small_disk)
    with pytest.raises(StoreError, match="is full .* Free at least"):
        store.save_version(huge)
    filler.unlink()
    assert Store(ws).names() == names and len(Store(ws).versions("harmless-helpful")) == 1


def test_sqlites_own_full_error_is_disk_trouble_not_damage(tmp_path):
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(sqlite3.Error) as caught:
        conn.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    assert is_disk_trouble(caught.value) and not is_damage(caught.value)
    assert "Nothing was changed" in disk_message(tmp_path / "studio.db", str(caught.value))
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(sqlite3.DatabaseError) as caught:
        sqlite3.connect(garbage).execute("PRAGMA quick_check").fetchone()
    assert is_damage(caught.value) and not is_disk_trouble(caught.value)
