"""Hostile or unlucky input gets one clear error line (exit 1, or 2 for a bad flag), never a
traceback, and leaves what was saved as it was."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.data.store import Store

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "constitutions" / "harmless-helpful.yaml"
BOMB = """name: bomb
a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
principles: [*i]
"""


def cli(ws: Path, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process; (exit code, stdout, stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["--workspace", str(ws), *args])
        except SystemExit as exc:  # argparse: a bad flag
            code = exc.code
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def constitution_text(**changes: str) -> str:
    text = SHIPPED.read_text()
    for old, new in changes.items():
        text = text.replace(old, new, 1)
    return text


@pytest.fixture
def ws(tmp_path):
    return tmp_path / "ws"


@pytest.mark.integration
def test_an_alias_bomb_is_refused_at_once_as_constitution_and_as_job_file(ws, tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    cli(ws, "constitution", "list")  # imports done: what is timed is the refusal
    for args in (
        ("constitution", "validate", str(bomb)),
        ("constitution", "save", str(bomb)),
        ("sft", "--config", str(bomb), "--out", str(tmp_path / "run")),
    ):
        started = time.time()
        code, _, err = cli(ws, *args)
        assert code == 1 and "anchors and aliases" in err and "line 2" in err
        assert time.time() - started < 1.0


@pytest.mark.integration
def test_deep_nesting_long_numbers_and_lone_surrogates_are_named(ws, tmp_path):
    cases = {
        "deep.yaml": ("name: x\nprinciples: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
        "digits.yaml": (
            constitution_text(**{"weight: 1.0": "weight: " + "9" * 5000}),
            "a number too long to read",
        ),
        "surrogate.yaml": (
            constitution_text(**{"title: ": 'title: "\\ud800" #'}),
            "lone surrogate",
        ),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        code, _, err = cli(ws, "constitution", "validate", str(path))
        assert code == 1 and message in err, (name, err)
    assert cli(ws, "constitution", "list")[0] == 0  # nothing was stored


@pytest.mark.integration
@pytest.mark.parametrize(
    "line,message",
    [
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
        ('{"prompt": ' + "9" * 5000 + "}", "cannot be read"),
        ('{"prompt": "\\ud800 hello"}', "lone surrogate"),
    ],
)
def test_bad_prompts_and_pairs_lines_are_named_by_line(ws, tmp_path, line, message):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "fine"}\n' + line + "\n")
    code, _, err = cli(ws, "prompts", "list", str(prompts))
    assert code == 1 and "line 2" in err and message in err
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(line + "\n")
    code, _, err = cli(
        ws,
        "label",
        "--pairs",
        str(pairs),
        "--constitution",
        "harmless-helpful",
        "--out",
        str(tmp_path / "labels"),
    )
    assert code == 1 and "line 1" in err and message in err


@pytest.mark.integration
def test_a_binary_job_file_and_non_finite_numbers_are_refused(ws, tmp_path):
    binary = tmp_path / "job.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00")
    code, _, err = cli(ws, "sft", "--config", str(binary), "--out", str(tmp_path / "run"))
    assert code == 1 and "not UTF-8 text" in err
    code, _, err = cli(ws, "generate", "--prompt", "hi", "--temperature", "nan")
    assert code == 2 and "--temperature: must be a finite number" in err
    code, _, err = cli(
        ws, "ppo", "--reward-adapter", "x", "--kl-coef", "nan", "--out", str(tmp_path / "p")
    )
    assert code == 2 and "--kl-coef: must be a finite number" in err
    job = tmp_path / "ppo.yaml"
    job.write_text("reward_adapter: x\nkl_coef: .nan\n")
    code, _, err = cli(ws, "ppo", "--config", str(job), "--out", str(tmp_path / "p"))
    assert code == 1 and "kl_coef must be a finite number" in err
    assert not (tmp_path / "p" / "adapter").exists()


@pytest.mark.integration
def test_outputs_that_are_folders_links_devices_or_unwritable_are_refused(ws, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    target = tmp_path / "target.txt"
    target.write_text("keep me")
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for out, kind in (
        (folder, "a folder"),
        (link, "a symbolic link"),
        (fifo, "a device or special file"),
    ):
        code, _, err = cli(ws, "constitution", "export", "harmless-helpful", "--out", str(out))
        assert code == 1 and f"it is {kind}" in err
    assert (
        target.read_text() == "keep me"
        and link.is_symlink()
        and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    )
    code, _, err = cli(
        ws, "constitution", "export", "harmless-helpful", "--out", "/proc/nope/x.yaml"
    )
    assert code == 1 and "Cannot write /proc/nope/x.yaml" in err


@pytest.mark.integration
def test_exports_get_normal_permissions(ws, tmp_path):
    previous = os.umask(0o022)
    try:
        assert (
            cli(
                ws, "constitution", "export", "harmless-helpful", "--out", str(tmp_path / "c.yaml")
            )[0]
            == 0
        )
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "c.yaml").st_mode) == 0o644


@pytest.mark.integration
def test_a_workspace_that_cannot_hold_a_database_is_named(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    code, _, err = cli(not_a_folder, "constitution", "list")
    assert code == 1 and "workspace" in err and str(not_a_folder) in err
    code, _, err = cli(Path("/proc"), "constitution", "list")
    assert code == 1 and "/proc/studio.db" in err


@pytest.mark.integration
@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_a_broken_database_is_refused_then_kept_aside_by_the_studio(ws, damage):
    Store(ws).seed()
    db = ws / "studio.db"
    data = db.read_bytes()
    db.write_bytes(
        {"empty": b"", "truncated": data[: len(data) // 2], "garbage": os.urandom(4096)}[damage]
    )
    broken = db.read_bytes()
    code, _, err = cli(ws, "constitution", "list")
    assert code == 1 and "To recover" in err
    assert db.read_bytes() == broken  # the CLI changed nothing
    store = Store(ws, recover=True)  # what the studio opens
    kept = [p for p in ws.glob("studio.db.broken-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(kept) == 1 and kept[0].read_bytes() == broken
    assert kept[0].name in store.notice and "new, empty one" in store.notice
    from studio.app import workspace_notice

    assert kept[0].name in workspace_notice(store)


@pytest.mark.integration
def test_a_read_only_workspace_still_lists(tmp_path):
    """As root, permissions do not stop writes: the CLI then runs as 'nobody'."""
    base = Path(tempfile_dir())
    ws = base / "ws"
    Store(ws).seed()
    for path in [ws, *ws.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    command = [sys.executable, "-m", "pipeline", "--workspace", str(ws), "constitution", "list"]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("needs setpriv (util-linux) to drop root")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    try:
        proc = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(base)},
        )
        assert proc.returncode == 0, proc.stderr
        assert "harmless-helpful@1" in proc.stdout
        save = subprocess.run(
            [*command[:-2], "constitution", "save", str(SHIPPED)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(base)},
        )
        assert (
            save.returncode == 1 and "read-only" in save.stderr and "Traceback" not in save.stderr
        )
    finally:
        for path in [ws, *ws.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(base)


def tempfile_dir() -> str:
    """A folder every user can enter (pytest's tmp_path is private to its owner)."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="ro-ws-")
    os.chmod(folder, 0o755)
    return folder


@pytest.mark.integration
def test_constitution_names_must_be_plain(ws, tmp_path):
    for name, message in (
        ("a@b", "found '@'"),
        ("harm\u200bless", "U+200B, zero width space"),
        ("harm\u200fless", "right-to-left mark"),
        ("ｈａｒｍ", "look-alike"),
    ):
        path = tmp_path / "named.yaml"
        path.write_text(
            constitution_text(**{"name: harmless-helpful": f"name: {json.dumps(name)}"})
        )
        code, _, err = cli(ws, "constitution", "save", str(path))
        assert code == 1 and message in err, name
    assert [line.split("@")[0] for line in cli(ws, "constitution", "list")[1].splitlines()] == [
        "adversarial",
        "harmless-helpful",
        "honest",
    ]


@pytest.mark.integration
def test_two_pairs_with_the_same_id_are_refused_with_their_lines(ws, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    row = {"id": "p1", "prompt": "q", "response_a": "a", "response_b": "b"}
    pairs.write_text(
        json.dumps(row) + "\n" + json.dumps({**row, "id": "p2"}) + "\n" + json.dumps(row) + "\n"
    )
    code, _, err = cli(
        ws,
        "label",
        "--pairs",
        str(pairs),
        "--constitution",
        "harmless-helpful",
        "--out",
        str(tmp_path / "labels"),
    )
    assert code == 1 and "lines 1 and 3" in err and "'p1'" in err


def flow_constitution(principles: int, text: str = "Is it careful?") -> str:
    """A flow-style constitution (the most compact form a user can write)."""
    body = ", ".join(
        f"{{id: p{i}, title: 'P {i}', critique_request: '{text}', revision_request: "
        f"'{text}', preference_question: 'Which?'}}"
        for i in range(principles)
    )
    return f"{{name: big, principles: [{body}]}}\n"


@pytest.mark.integration
def test_a_constitution_over_the_principle_cap_is_refused_with_the_cap(ws, tmp_path):
    from pipeline.data.constitution import MAX_PRINCIPLES

    path = tmp_path / "many.yaml"
    path.write_text(flow_constitution(MAX_PRINCIPLES + 1))
    for command in ("validate", "save"):
        code, _, err = cli(ws, "constitution", command, str(path))
        assert (
            code == 1
            and f"{MAX_PRINCIPLES + 1} principles; a constitution may have at most {MAX_PRINCIPLES}"
            in err
        )
    path.write_text(flow_constitution(MAX_PRINCIPLES))
    assert cli(ws, "constitution", "save", str(path))[0] == 0


@pytest.mark.integration
def test_whatever_can_be_saved_exports_to_a_file_that_imports_again(ws, tmp_path):
    """At the size limit: a compact file whose canonical YAML would be over 1 MiB is refused
    at save (saying why); one whose canonical YAML is just under it round-trips."""
    from pipeline.data.constitution import (
        MAX_FILE_BYTES,
        MAX_PRINCIPLES,
        load_constitution,
        to_yaml,
    )

    over, words = tmp_path / "over.yaml", 100
    canonical = lambda: len(to_yaml(load_constitution(over)).encode())  # noqa: E731
    over.write_text(flow_constitution(MAX_PRINCIPLES, "word " * words))
    while over.stat().st_size > MAX_FILE_BYTES:
        words -= 1
        over.write_text(flow_constitution(MAX_PRINCIPLES, "word " * words))
    assert canonical() > MAX_FILE_BYTES  # imports, yet would not export under the limit
    code, _, err = cli(ws, "constitution", "save", str(over))
    assert code == 1 and "so that it exports to a file that imports again" in err
    assert "big@" not in cli(ws, "constitution", "list")[1]
    while canonical() > MAX_FILE_BYTES:
        words -= 1
        over.write_text(flow_constitution(MAX_PRINCIPLES, "word " * words))
    assert len(to_yaml(load_constitution(over)).encode()) > MAX_FILE_BYTES - 20_000  # at the limit
    assert cli(ws, "constitution", "save", str(over))[0] == 0
    exported = tmp_path / "exported.yaml"
    assert cli(ws, "constitution", "export", "big", "--out", str(exported))[0] == 0
    assert exported.stat().st_size <= MAX_FILE_BYTES
    code, out, _ = cli(ws, "constitution", "validate", str(exported))
    assert code == 0 and f"valid ({MAX_PRINCIPLES} principles" in out
    code, out, _ = cli(ws, "constitution", "save", str(exported))
    assert code == 0 and "unchanged since big v1" in out


def test_a_log_that_is_a_device_is_refused_not_read_without_end(tmp_path):
    """/dev/zero or /dev/full in place of a JSONL log would be read until memory runs out;
    it is refused by name, and a step log standing on one is left alone by a resume."""
    from pipeline.core.errors import DatasetError
    from pipeline.core.files import read_jsonl_log
    from pipeline.train.runtime import rewind_steps

    log = tmp_path / "samples.jsonl"
    log.symlink_to("/dev/zero")
    with pytest.raises(DatasetError, match="samples.jsonl is not a regular file"):
        read_jsonl_log(log)
    rewind_steps(log, 1)  # returns at once


def test_a_stack_exchange_answer_whose_score_is_not_a_number_is_named(tmp_path):
    from pipeline.core.errors import DatasetError
    from pipeline.data.stackexchange import pmp_comparisons

    dump = tmp_path / "Posts.xml"
    dump.write_text(
        '<posts><row Id="1" PostTypeId="1" Title="Q" Body="q"/>'
        '<row Id="2" PostTypeId="2" ParentId="1" Score="3" Body="a"/>'
        '<row Id="3" PostTypeId="2" ParentId="1" Score="" Body="b"/></posts>'
    )
    with pytest.raises(DatasetError, match="answer row Id='3' has Score='', not a whole number"):
        pmp_comparisons(dump)
