"""The warm launcher: a job forked from a process that has imported torch and the trainers
runs as a fresh one would (its own session, the queue's environment, folder and log), and
how it ended is known even when it was killed."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pipeline.core.job_folder import JOB_ID_ENV
from pipeline.data.store import Store
from pipeline.runner import jobs, warm
from tests.pipeline.runner.test_jobs import gone, revise_args, twelve_prompts

PIPELINE = [sys.executable, "-m", "pipeline"]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def own_launcher(monkeypatch):
    """A launcher for this test alone (its environment differs by one variable), ready."""
    monkeypatch.setenv("HF_WARM_TEST", uuid.uuid4().hex)
    monkeypatch.setenv(warm.SWITCH_ENV, "1")  # on, whatever the suite runs with
    env = dict(os.environ)
    if not warm.enabled(PIPELINE, env):
        pytest.skip("warm launches are for Linux CPU machines")
    warm.warm_up(env)
    deadline = time.time() + 240
    while (pid := warm.launcher(env)) is None:
        assert time.time() < deadline, "the warm launcher did not start"
        time.sleep(0.5)
    yield env, pid
    os.kill(pid, signal.SIGTERM)


def test_a_launcher_serves_one_environment_and_only_pipeline_jobs():
    env = {"HF_HOME": "/a", JOB_ID_ENV: "3", "PYTEST_CURRENT_TEST": "t1"}
    assert warm.key(env) == warm.key({"HF_HOME": "/a", JOB_ID_ENV: "4"})  # read later: shared
    assert warm.key(env) == warm.key({**env, "TORCHINDUCTOR_CACHE_DIR": "/tmp/t"})
    assert warm.key(env) != warm.key({"HF_HOME": "/b"})  # read while importing: its own
    if sys.platform != "linux" or any(os.path.exists(d) for d in warm.GPU_DEVICES):
        pytest.skip("warm launches are for Linux CPU machines")
    assert warm.enabled([*PIPELINE, "revise"], {})
    assert not warm.enabled([*PIPELINE, "revise"], {warm.SWITCH_ENV: "0"})
    accelerated = jobs.job_command(["sft"], "/ws", processes=2)
    assert not warm.enabled(accelerated, {})


@pytest.mark.integration
def test_a_warm_job_runs_like_a_fresh_one_and_a_kill_is_named(tmp_path, tiny_folder, own_launcher):
    env, launcher = own_launcher
    with warm.connected(env) as conn:
        conn.sendall(b"not a request\n")  # ignored: the launcher keeps serving
    store = Store(tmp_path / "ws")
    store.seed()
    out = tmp_path / "run"
    prompts = twelve_prompts(tmp_path)
    job = jobs.launch(store, "revise", revise_args(tiny_folder, out, prompts), out)
    assert parent_of(job.pid) == launcher  # forked warm, not started afresh
    assert os.getsid(job.pid) == job.pid  # a session of its own: a cancel reaches all of it
    deadline = time.time() + 30  # `ps` names the job by its own command line
    while str(out).encode() not in Path(f"/proc/{job.pid}/cmdline").read_bytes():
        assert time.time() < deadline, "the job's process is not named by its command"
        time.sleep(0.1)
    ended = jobs.wait(store, job.id, timeout=120)
    assert ended.status == "succeeded", ended.error
    log = (out / "job.log").read_text()
    assert "priority: niceness" in log and "12/12" in log  # its own log, its own work
    assert "exit.json" not in ended.artifacts  # bookkeeping, not a result
    deadline = time.time() + 30  # the job reported its end first, then its process exits
    while warm.read_exit(out) is None and time.time() < deadline:
        time.sleep(0.2)
    assert warm.read_exit(out) == 0

    killed = tmp_path / "killed"
    job = jobs.launch(store, "revise", revise_args(tiny_folder, killed, prompts), killed)
    assert parent_of(job.pid) == launcher
    os.kill(job.pid, signal.SIGKILL)
    ended = jobs.wait(store, job.id, timeout=60)
    assert "killed by SIGKILL (most often the system running out of memory)" in ended.error
    assert warm.launcher(env) == launcher  # and it still serves


def forked(out: Path, launcher: int, timeout: float = 60) -> int:
    """The pid of the launcher's child whose command line names `out`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and parent_of(int(entry.name)) == launcher:
                    if str(out).encode() in (entry / "cmdline").read_bytes():
                        return int(entry.name)
            except OSError:
                continue
        time.sleep(0.01)
    raise AssertionError(f"no process forked by the launcher names {out}")


def ignores_ctrl_c(pid: int) -> bool:
    """Whether a process ignores SIGINT (its SigIgn mask, read while it runs)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(status.split("SigIgn:")[1].split()[0], 16)
    return bool(mask & (1 << (signal.SIGINT - 1)))


@pytest.mark.integration
def test_a_typed_command_runs_forked_on_its_terminal_and_ends_with_its_asker(
    tmp_path, tiny_folder, own_launcher
):
    env, launcher = own_launcher
    prompts = twelve_prompts(tmp_path)

    def typed(name: str, *more: str, ctrl_c=signal.SIG_DFL) -> tuple[subprocess.Popen, Path, int]:
        """The command typed by a process that takes Ctrl-C as `ctrl_c` says (a suite run
        in a script's background ignores it, and passes that on)."""
        out = tmp_path / name
        command = [*PIPELINE, "--workspace", str(tmp_path / "ws")]
        command += [*revise_args(tiny_folder, out, prompts), *more]
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: signal.signal(signal.SIGINT, ctrl_c),
        )
        return proc, out, forked(out, launcher)

    done, _, worker = typed("done", ctrl_c=signal.SIG_IGN)
    assert ignores_ctrl_c(worker)  # as a process its asker started would
    stdout, stderr = done.communicate(timeout=120)
    assert done.returncode == 0, stderr.decode()[-2000:]
    assert b"12 chains in" in stdout and b"chain/s" in stderr  # its output reached our pipes
    assert gone(worker)

    # Ctrl-C reaches the command itself (a long one: the signal must find it at work, not
    # ending, however busy the machine)
    asked, out, worker = typed("cancelled", "--rounds", "8", "--max-new-tokens", "96")
    assert not ignores_ctrl_c(worker)
    deadline = time.time() + 60
    while not (out / "progress.json").exists():
        assert time.time() < deadline and asked.poll() is None, asked.stderr.read().decode()
        time.sleep(0.02)
    asked.send_signal(signal.SIGINT)
    _, stderr = asked.communicate(timeout=60)
    assert asked.returncode == 130 and b"cancelled:" in stderr, stderr.decode()[-2000:]
    assert gone(worker)

    asked, _, worker = typed("killed")  # an asker killed takes its command with it
    asked.kill()
    asked.wait()
    assert gone(worker), "the command outlived the process that asked for it"
    assert warm.launcher(env) == launcher  # and the launcher still serves


def test_a_typed_command_runs_in_its_own_process_when_switched_off_or_already_forked(
    monkeypatch,
):
    monkeypatch.setenv(warm.SWITCH_ENV, "0")
    assert warm.run_attached(["revise"]) is None
    monkeypatch.setenv(warm.SWITCH_ENV, "1")
    monkeypatch.setenv(warm.ATTACHED_ENV, "1")  # the forked command itself: it runs there
    assert warm.run_attached(["revise"]) is None


def test_a_command_inside_other_limits_gets_a_launcher_of_its_own():
    """A launcher's child inherits the launcher's limits, not the asker's: an asker with a
    lower limit (or another control group, other CPUs) must not reach this one."""
    if sys.platform != "linux":
        pytest.skip("warm launches are for Linux")
    import resource

    ask = [sys.executable, "-c", "from pipeline.runner import warm; print(warm.key({}))"]
    same = subprocess.run(ask, capture_output=True, text=True, check=True).stdout.strip()
    assert same == warm.key({})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def fewer_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512) - 1, hard))

    bounded = subprocess.run(ask, capture_output=True, text=True, preexec_fn=fewer_files)
    assert bounded.returncode == 0 and bounded.stdout.strip() != same


def test_of_two_askers_at_once_one_starts_the_launcher(tmp_path):
    starting = tmp_path / "key.starting"
    assert warm.claimed(starting) and not warm.claimed(starting)  # the second waits for it
    old = time.time() - warm.STARTING_SECONDS - 1
    os.utime(starting, (old, old))
    assert warm.claimed(starting)  # one that never answered is started again
