import dataclasses
import sqlite3
import threading
from pathlib import Path

import pytest

from pipeline.core.errors import ConstitutionError, StoreError
from pipeline.data import constitution as cons
from pipeline.data.store import MIGRATIONS, WORKSPACE_ENV, Store, workspace_dir

SHIPPED = Path(__file__).resolve().parents[3] / "constitutions"


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "ws")


def harmless():
    return cons.load_constitution(SHIPPED / "harmless-helpful.yaml")


def test_workspace_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "env"))
    assert workspace_dir() == tmp_path / "env"
    assert workspace_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv(WORKSPACE_ENV)
    monkeypatch.chdir(tmp_path)
    assert workspace_dir() == tmp_path / "workspace"


def test_migrations_set_the_schema_version_and_wal(store):
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.migrate() == len(MIGRATIONS)  # idempotent


def test_migration_from_an_older_schema_keeps_data(tmp_path):
    path = tmp_path / "ws"
    path.mkdir()
    with sqlite3.connect(path / "studio.db") as conn:
        conn.executescript(MIGRATIONS[0])
        conn.execute(
            "INSERT INTO constitution_versions (name, version, hash, yaml, created_at) "
            "VALUES ('old', 1, 'h', ?, 'then')",
            (cons.to_yaml(harmless()),),
        )
        conn.execute("PRAGMA user_version = 1")
    store = Store(path)
    assert store.version("old").yaml == cons.to_yaml(harmless())
    assert store.draft("old") is None  # the table added by migration 2 exists


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "ws"
    path.mkdir()
    with sqlite3.connect(path / "studio.db") as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    with pytest.raises(StoreError, match="newer Constitution Studio"):
        Store(path)


def test_versions_are_numbered_and_unchanged_content_is_not_saved_twice(store):
    c = harmless()
    first, created = store.save_version(c, note="start")
    assert created and first.version == 1 and first.constitution.version == 1
    again, created = store.save_version(dataclasses.replace(c, version=99))
    assert not created and again.version == 1
    edited = cons.put_principle(c, dataclasses.replace(c.principles[0], weight=3.0), 0)
    second, created = store.save_version(edited)
    assert created and second.version == 2
    assert [r.version for r in store.versions(c.name)] == [2, 1]
    assert store.version(c.name).version == 2
    assert store.version(c.name, 1).constitution.principles[0].weight == 1.5
    with pytest.raises(StoreError, match="No saved version 7"):
        store.version(c.name, 7)


def test_drafts_survive_and_saving_clears_them(store):
    c = harmless()
    store.save_version(c)
    edited = cons.remove_principle(c, 0)
    store.save_draft(edited, base_version=1)
    reopened = Store(store.workspace)  # a server restart
    draft = reopened.draft(c.name)
    assert draft.base_version == 1 and cons.parse_constitution(draft.yaml) == edited
    reopened.save_version(edited)
    assert reopened.draft(c.name) is None


def test_seed_adds_shipped_constitutions_once(store):
    assert sorted(store.seed(SHIPPED)) == ["adversarial", "harmless-helpful", "honest"]
    assert store.seed(SHIPPED) == []
    assert store.names() == ["adversarial", "harmless-helpful", "honest"]


def test_concurrent_saves_get_distinct_versions(store):
    base = harmless()
    variants = [
        cons.put_principle(base, dataclasses.replace(base.principles[0], weight=w), 0)
        for w in (2.0, 3.0, 4.0, 5.0, 6.0, 7.0)
    ]
    threads = [threading.Thread(target=store.save_version, args=(v,)) for v in variants]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.version for r in store.versions(base.name)) == [1, 2, 3, 4, 5, 6]


def test_an_invalid_constitution_is_never_stored(store):
    c = harmless()
    broken = dataclasses.replace(c, principles=c.principles + (c.principles[0],))
    with pytest.raises(ConstitutionError, match="duplicate id"):
        store.save_version(broken)
    with pytest.raises(ConstitutionError, match="duplicate id"):
        store.save_draft(broken, None)
    assert store.names() == [] and store.draft(c.name) is None


def test_run_folders_and_trained_adapters_come_from_one_place(tmp_path):
    import json as _json

    store = Store(tmp_path / "ws")
    folder = store.new_run_folder("chains")
    assert folder.parent == store.runs and folder.name.startswith("chains-")
    done, failed, empty = (tmp_path / n for n in ("done", "failed", "empty"))
    for out in (done / "adapter", failed / "adapter", empty):
        out.mkdir(parents=True)
    for out in (done / "adapter", failed / "adapter"):
        (out / "adapter_config.json").write_text(_json.dumps({}))
    for kind, out, status in (
        ("sft", done, "succeeded"),
        ("sft", failed, "failed"),
        ("dpo", empty, "succeeded"),
        ("reward", done, "succeeded"),
    ):
        job, _ = store.add_job(kind, [kind, str(out)], str(out), ["python"])
        store.set_job_status(job.id, status)
    assert store.trained(("sft", "dpo")) == [str(done / "adapter")]


def test_name_at_version_is_read_in_one_place(tmp_path):
    from pipeline.config.settings import DEFAULT_CONSTITUTION
    from pipeline.core.errors import StoreError
    from pipeline.data.store import parse_ref

    assert parse_ref("harmless-helpful@3") == ("harmless-helpful", 3)
    assert parse_ref("honest@v2") == ("honest", 2) and parse_ref("honest") == ("honest", None)
    for bad in ("honest@latest", "@2"):
        with pytest.raises(StoreError, match="must be a number"):
            parse_ref(bad)
    store = Store(tmp_path / "ws")
    assert store.default_name() is None
    store.seed()
    assert store.default_name() == DEFAULT_CONSTITUTION
