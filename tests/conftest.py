"""Shared test set-up: offline, CPU (pytest.ini puts the repository root on the import path)."""

import os
import signal
import uuid
from pathlib import Path

from pipeline.core import cpu  # torch-free: it must not load torch before the threads are set

TEST_RUN_ENV = "CSTUDIO_TEST_RUN"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    # xdist workers share the cores: one torch/OpenMP thread pool each of its share, set before
    # torch is imported and inherited by the jobs and studios a test starts (spinning OpenMP
    # threads on an oversubscribed core cost more than they win)
    share = cpu.physical_cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault(cpu.THREADS_ENV, str(max(1, share)))
# a queued job yields to the studio's live work; the suite's workers are peers, so a job one
# test waits for must not yield to the other worker's test
os.environ.setdefault(cpu.NICENESS_ENV, "0")
# names what this test run starts (set once, by the first process; xdist workers inherit it)
os.environ.setdefault(TEST_RUN_ENV, uuid.uuid4().hex)


import pytest  # noqa: E402


def pytest_sessionfinish(session):
    """The warm launchers this test run started leave with it, not ten idle minutes later
    (a machine that waits for every process of the run would wait for them)."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not Path("/proc").is_dir():
        return
    ours = f"{TEST_RUN_ENV}={os.environ[TEST_RUN_ENV]}".encode()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"pipeline.runner.warm" in (entry / "cmdline").read_bytes():
                if ours in (entry / "environ").read_bytes().split(b"\0"):
                    os.kill(int(entry.name), signal.SIGTERM)
        except OSError:
            continue  # gone already, or not ours to read


@pytest.fixture(scope="session", autouse=True)
def warm_launcher():
    """The jobs tests start fork from a warm launcher, as the studio's do
    (pipeline/runner/warm.py); started with the session, it is ready for the first job."""
    from pipeline.runner import warm

    warm.warm_up(dict(os.environ))


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """The tiny model saved as a model folder, for code that loads models by path."""
    from tests.tiny import fresh_tiny_model

    folder = tmp_path_factory.mktemp("tiny-model")
    tiny = fresh_tiny_model()
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


def kill_processes_naming(path: Path) -> list[int]:
    """SIGKILL every process whose command line names `path`, with its process group: a job
    a test started (its own session, so it outlives the studio that launched it) must not
    keep a core and a model's memory for the rest of the suite."""
    needle, killed = str(path).encode(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "cmdline").read_bytes():
                continue
            pid = int(entry.name)
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (OSError, ProcessLookupError):
            continue  # gone already, or not ours to read
    return killed


@pytest.fixture(autouse=True)
def no_orphan_jobs(request):
    """After each test that had a temporary folder, stop what still runs on it."""
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if folder is not None and Path("/proc").is_dir():
        kill_processes_naming(folder)
