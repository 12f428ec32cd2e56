"""What the studio serves and to whom: no workspace file but exports, and logins."""
from __future__ import annotations

import sqlite3
import time
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Studio

pytestmark = pytest.mark.e2e


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_the_database_and_run_folders_are_not_served_but_exports_are(page: Page, studio, tmp_path):
    ws = studio.workspace
    log = ws / "runs" / "chains-1" / "job.log"
    log.parent.mkdir(parents=True)
    log.write_text("secret job output")
    for path in (ws / "studio.db", log, ws / "studio.db-wal"):
        status, body = fetch(f"{studio.url}/gradio_api/file={path}")
        assert status in (403, 404), path
        assert b"SQLite" not in body and b"secret" not in body
    with page.expect_download() as download:  # an export still downloads
        page.click("#export-yaml")
    target = tmp_path / "exported.yaml"
    download.value.save_as(target)
    assert "harmless-helpful" in target.read_text()
    # the database itself was never touched by any of it
    with sqlite3.connect(ws / "studio.db") as conn:
        assert conn.execute("SELECT count(*) FROM constitution_versions").fetchone()[0] >= 1


def test_a_login_is_asked_refused_when_wrong_and_accepted_when_right(browser, tmp_path):
    auth_file = tmp_path / "logins.txt"
    auth_file.write_text("# who may sign in\nalice:correct horse\n")
    server = Studio(tmp_path / "workspace", tmp_path / "studio.log", ("--auth-file", str(auth_file)))
    server.start()
    try:
        status, _ = fetch(f"{server.url}/config")
        assert status in (401, 403)  # nothing is handed out before signing in
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(server.url)
        page.get_by_label("username").fill("alice")
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_text("Incorrect Credentials")).to_be_visible()
        page.get_by_label("username").fill("alice")
        page.get_by_label("password").fill("correct horse")
        page.get_by_role("button", name="Login").click()
        expect(page.locator("#principle-table")).to_contain_text("physical-harm")
        context.close()
    finally:
        server.stop()


def test_a_studio_open_beyond_localhost_without_login_warns(tmp_path):
    server = Studio(tmp_path / "workspace", tmp_path / "studio.log", ("--host", "0.0.0.0"))
    server.start()
    server.stop()
    assert "NO LOGIN" in (tmp_path / "studio.log").read_text()


BOMB = "name: bomb\na: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")) + \
    "principles: [*i]\n"


def test_an_alias_bomb_is_refused_at_once_in_the_yaml_editor_and_on_import(page: Page, studio, tmp_path):
    page.get_by_text("YAML (edit and apply)").click()
    editor = page.locator("#yaml-view .cm-content")
    expect(editor).to_contain_text("name: harmless-helpful")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(BOMB)
    started = time.time()
    page.click("#apply-yaml")
    expect(page.locator("#yaml-errors")).to_contain_text("anchors and aliases", timeout=5_000)
    assert time.time() - started < 5  # the round trip included; the check itself is ms
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    with page.expect_file_chooser() as chooser:
        page.click("#import-yaml")
    chooser.value.set_files(str(bomb))
    expect(page.locator("#constitution-message")).to_contain_text("anchors and aliases", timeout=5_000)
    expect(page.locator("#principle-table")).to_contain_text("physical-harm")


def test_the_page_is_small(studio):
    status, body = fetch(studio.url)
    assert status == 200 and len(body) < 1024 * 1024


def test_a_broken_database_is_kept_aside_and_said_so(browser, tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "studio.db").write_bytes(b"this is not a database" * 100)
    server = Studio(workspace, tmp_path / "studio.log")
    server.start()
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(server.url)
        notice = page.locator("#workspace-notice")
        expect(notice).to_contain_text("is not an SQLite database", timeout=30_000)
        expect(notice).to_contain_text("studio.db.broken-")
        expect(page.locator("#principle-table")).to_contain_text("physical-harm")
        kept = list(workspace.glob("studio.db.broken-*"))
        assert kept and kept[0].read_bytes() == b"this is not a database" * 100
        context.close()
    finally:
        server.stop()
