"""What the studio serves and to whom: no workspace file but exports, and logins."""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
import urllib.error
import urllib.parse
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
    server = Studio(
        tmp_path / "workspace",
        tmp_path / "studio.log",
        ("--auth-file", str(auth_file), "--login-free-tries", "2", "--login-lockout", "3"),
    )
    server.start()
    try:
        status, _ = fetch(f"{server.url}/config")
        assert status in (401, 403)  # nothing is handed out before signing in
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(server.url)
        for _ in range(2):
            page.get_by_label("username").fill("alice")
            page.get_by_label("password").fill("wrong")
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_text("Incorrect Credentials")).to_be_visible()
        page.get_by_label("username").fill("alice")
        page.get_by_label("password").fill("correct horse")
        page.get_by_role("button", name="Login").click()  # too soon: refused, and said so
        expect(page.locator("#login-refusal")).to_contain_text("Too many wrong passwords")
        time.sleep(2.5)
        page.get_by_label("username").fill("alice")
        page.get_by_label("password").fill("correct horse")
        page.get_by_role("button", name="Login").click()
        expect(page.locator("#principle-table")).to_contain_text("physical-harm", timeout=30_000)
        context.close()
    finally:
        server.stop()


def post_login(url: str, user: str, password: str, source: str = "127.0.0.1"):
    """POST /login from a chosen loopback address: (status, detail, headers)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=10, source_address=(source, 0)
    )
    try:
        conn.request(
            "POST",
            "/login",
            urllib.parse.urlencode({"username": user, "password": password}),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body or b"{}").get("detail", ""), response
    finally:
        conn.close()


def test_wrong_passwords_are_throttled_per_address_and_per_user_over_http(tmp_path):
    log = tmp_path / "studio.log"
    server = Studio(
        tmp_path / "workspace",
        log,
        (
            "--auth",
            "alice:correct horse",
            "--auth",
            "bob:battery",
            "--login-free-tries",
            "3",
            "--login-lockout",
            "4",
        ),
    )
    server.start()
    try:
        assert [post_login(server.url, "alice", f"guess{i}")[0] for i in range(3)] == [400] * 3
        status, detail, response = post_login(server.url, "alice", "guess3")
        assert status == 429 and "Too many wrong passwords" in detail
        assert int(response.getheader("Retry-After")) >= 1
        # locked means locked: the right password is not even checked until the wait is over
        assert post_login(server.url, "alice", "correct horse")[0] == 429
        other = "127.0.0.2"
        status, detail, _ = post_login(server.url, "alice", "correct horse", other)
        assert status == 429 and "for the user 'alice'" in detail  # per user, from anywhere
        assert post_login(server.url, "bob", "nope", other)[0] == 400  # bob from elsewhere: free
        status, detail, _ = post_login(server.url, "bob", "battery")
        assert status == 429 and "from 127.0.0.1" in detail  # per address, for any user
        time.sleep(2.5)  # 3 failures wait 2 s
        status, _, response = post_login(server.url, "alice", "correct horse")
        assert status == 200
        cookie = "; ".join(c.split(";", 1)[0] for c in response.headers.get_all("Set-Cookie"))
        # an API name the studio does not have: a 404 with one line, not a 500
        request = urllib.request.Request(
            f"{server.url}/gradio_api/call/no_such_api",
            method="POST",
            data=b'{"data": []}',
            headers={"Content-Type": "application/json", "Cookie": cookie},
        )
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(request, timeout=10)
        assert missing.value.code == 404
        assert (
            json.loads(missing.value.read())["detail"]
            == "No API named 'no_such_api' in this studio."
        )
    finally:
        server.stop()
    text = log.read_text()
    assert text.count("failed sign-in for 'alice' from 127.0.0.1") == 3
    assert "failed sign-in for 'bob' from 127.0.0.2" in text
    assert "share ONE workspace" in text and "Traceback" not in text


def test_a_studio_open_beyond_localhost_without_login_warns(tmp_path):
    server = Studio(tmp_path / "workspace", tmp_path / "studio.log", ("--host", "0.0.0.0"))
    server.start()
    server.stop()
    assert "NO LOGIN" in (tmp_path / "studio.log").read_text()


BOMB = (
    "name: bomb\na: &a [x,x,x,x,x,x,x,x,x]\n"
    + "".join(f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
    + "principles: [*i]\n"
)


def test_an_alias_bomb_is_refused_at_once_in_the_yaml_editor_and_on_import(
    page: Page, studio, tmp_path
):
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
    expect(page.locator("#constitution-message")).to_contain_text(
        "anchors and aliases", timeout=5_000
    )
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
