"""The job runner: queue, one job at a time, cancel, resume, restart re-attach, failures."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipeline.cai.critique import ChainLog
from pipeline.core import cpu, job_folder
from pipeline.core.errors import JobError
from pipeline.data.store import Store
from pipeline.runner import jobs
from pipeline.train.runtime import read_metrics

ROOT = Path(__file__).resolve().parents[3]


def twelve_prompts(tmp_path: Path) -> Path:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"Tell me fact number {i}.\n" for i in range(12)))
    return prompts


def revise_args(model: Path, out: Path, prompts: Path) -> list[str]:
    return [
        "revise",
        "--constitution",
        "harmless-helpful",
        "--prompts",
        str(prompts),
        "--model",
        str(model),
        "--rounds",
        "2",
        "--no-few-shot",
        "--batch-size",
        "2",
        "--max-new-tokens",
        "24",
        "--temperature",
        "1.0",
        "--out",
        str(out),
    ]


@pytest.mark.integration
def test_job_cancel_then_resume_writes_no_duplicates(tmp_path, tiny_folder):
    prompts = twelve_prompts(tmp_path)
    store = Store(tmp_path / "ws")
    store.seed()
    out = tmp_path / "run"
    job = jobs.launch(store, "revise", revise_args(tiny_folder, out, prompts), out)
    assert job.status == "running"
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "chains.jsonl").exists():
        time.sleep(0.05)
    jobs.cancel(store, job.id)
    ended = jobs.wait(store, job.id, timeout=60)
    assert ended.status == "cancelled", job_folder.log_tail(out)
    partial = ChainLog(out).done_ids()
    assert 0 < len(partial) < 12
    said = re.search(r"cancelled: (\d+) finished chains? (is|are) kept", job_folder.log_tail(out))
    assert said and int(said.group(1)) == len(partial), job_folder.log_tail(out)

    resumed = jobs.launch(store, "revise", revise_args(tiny_folder, out, prompts), out)
    assert jobs.wait(store, resumed.id, timeout=600).status == "succeeded", job_folder.log_tail(out)
    ids = [c.id for c in ChainLog(out).read()]
    assert len(ids) == len(set(ids)) == 12 and partial <= set(ids)
    assert job_folder.read_progress(out)["done"] == 12


@pytest.mark.integration
def test_failed_job_reports_its_message(tmp_path, tiny_folder):
    store = Store(tmp_path / "ws")
    out = tmp_path / "run"
    job = jobs.launch(
        store,
        "revise",
        ["revise", "--constitution", "no-such", "--prompts", "red-team", "--out", str(out)],
        out,
    )
    ended = jobs.wait(store, job.id, timeout=120)
    assert ended.status == "failed" and "neither a file nor a saved constitution" in ended.error


@pytest.mark.integration
def test_a_queued_job_yields_to_the_studio_at_the_niceness_set_and_says_so(tmp_path, monkeypatch):
    store = Store(tmp_path / "ws")
    failing = ["revise", "--constitution", "no-such", "--prompts", "red-team", "--out"]
    monkeypatch.setenv(cpu.NICENESS_ENV, "7")
    out = tmp_path / "run"
    job = jobs.launch(store, "revise", [*failing, str(out)], out)
    assert jobs.wait(store, job.id, timeout=120).status == "failed"
    assert "priority: niceness 7 (a queued job yields" in job_folder.log_tail(out)
    monkeypatch.setenv(cpu.NICENESS_ENV, "99")
    out = tmp_path / "other"
    job = jobs.launch(store, "revise", [*failing, str(out)], out)
    ended = jobs.wait(store, job.id, timeout=120)
    assert f"{cpu.NICENESS_ENV} must be a whole number from 0 to 19" in ended.error


@pytest.mark.integration
def test_a_job_that_died_silently_is_marked_failed_with_its_log(tmp_path):
    store = Store(tmp_path / "ws")
    out = tmp_path / "run"
    out.mkdir()
    (out / job_folder.LOG_FILE).write_text("step 1\nKilled\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job, _ = store.add_job("revise", ["revise"], str(out), ["python"])
    store.start_job(job.id, dead.pid)
    (settled,) = [j for j in jobs.refresh(store) if j.id == job.id]
    assert settled.status == "failed" and "Killed" in settled.error


@pytest.mark.integration
def test_a_job_that_reported_its_end_is_settled_while_its_process_still_exits(tmp_path):
    """A cancelled training job may take a while to tear down; the list says so at once."""
    store = Store(tmp_path / "ws")
    out = tmp_path / "run"
    out.mkdir()
    slow_exit = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        job, _ = store.add_job("sft", ["sft"], str(out), ["python"])
        store.start_job(job.id, slow_exit.pid)
        assert next(j for j in jobs.refresh(store) if j.id == job.id).status == "running"
        (out / job_folder.STATUS_FILE).write_text(
            json.dumps({"status": "cancelled", "message": "kept"})
        )
        settled = next(j for j in jobs.refresh(store) if j.id == job.id)
        assert settled.status == "cancelled" and slow_exit.poll() is None
    finally:
        slow_exit.kill()
        slow_exit.wait()


@pytest.mark.integration
def test_a_job_killed_from_outside_names_the_signal(tmp_path, tiny_folder):
    """What the system's out-of-memory killer does: SIGKILL, no chance to report."""
    store = Store(tmp_path / "ws")
    store.seed()
    out = tmp_path / "run"
    job = jobs.launch(store, "revise", revise_args(tiny_folder, out, twelve_prompts(tmp_path)), out)
    os.kill(job.pid, signal.SIGKILL)
    ended = jobs.wait(store, job.id, timeout=60)
    assert ended.status == "failed"
    assert "killed by SIGKILL (most often the system running out of memory)" in ended.error


@pytest.mark.integration
def test_queue_runs_one_job_at_a_time_and_never_the_same_job_twice(tmp_path, tiny_folder):
    prompts = twelve_prompts(tmp_path)
    store = Store(tmp_path / "ws")
    store.seed()
    first = jobs.launch(
        store, "revise", revise_args(tiny_folder, tmp_path / "a", prompts), tmp_path / "a"
    )
    again = jobs.launch(
        store, "revise", revise_args(tiny_folder, tmp_path / "a", prompts), tmp_path / "a"
    )
    assert again.id == first.id and first.status == "running"  # a second tab: same job
    dropped = jobs.launch(
        store, "revise", revise_args(tiny_folder, tmp_path / "b", prompts), tmp_path / "b"
    )
    listing = jobs.launch(store, "prompts", ["prompts", "list"], tmp_path / "c")
    assert dropped.status == listing.status == "queued"
    assert jobs.cancel(store, dropped.id).status == "cancelled"
    with pytest.raises(JobError, match="not running"):
        jobs.cancel(store, dropped.id)

    done = jobs.wait(store, first.id, timeout=600)
    assert done.status == "succeeded", job_folder.log_tail(done.out_dir)
    after = jobs.wait(store, listing.id, timeout=120)
    assert after.status == "succeeded" and after.started_at >= done.finished_at
    assert "red-team" in job_folder.log_tail(after.out_dir)
    assert "chains.jsonl" in done.artifacts and "job.log" not in done.artifacts
    assert done.command[1:3] == ("-m", "pipeline") and done.started_at
    assert store.job(dropped.id).started_at is None  # never ran


@pytest.mark.integration
def test_a_restarted_launcher_reattaches_to_a_running_job(tmp_path, tiny_folder):
    """The launching process exits (a studio restart); a new one still sees the job run and
    records how it ended."""
    prompts = twelve_prompts(tmp_path)
    store = Store(tmp_path / "ws")
    store.seed()
    out = tmp_path / "run"
    script = (
        f"from pipeline.runner import jobs; from pipeline.data.store import Store; "
        f"print(jobs.launch(Store({str(store.workspace)!r}), 'revise', "
        f"{revise_args(tiny_folder, out, prompts)!r}, {str(out)!r}).id)"
    )
    job_id = int(
        subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
    )
    assert store.job(job_id).status == "running"
    (seen,) = [j for j in jobs.refresh(store) if j.id == job_id]
    assert seen.status == "running"
    ended = jobs.wait(store, job_id, timeout=600)
    assert ended.status == "succeeded", job_folder.log_tail(out)


@pytest.mark.integration
def test_resume_reruns_an_ended_job_into_its_folder(tmp_path):
    store = Store(tmp_path / "ws")
    job = jobs.launch(store, "prompts", ["prompts", "list"], tmp_path / "run")
    assert jobs.wait(store, job.id, timeout=120).status == "succeeded"
    again = jobs.resume(store, job.id)
    assert again.id != job.id and again.out_dir == job.out_dir and again.args == job.args
    assert jobs.wait(store, again.id, timeout=120).status == "succeeded"


@pytest.mark.integration
@pytest.mark.skipif(0 < torch.cuda.device_count() < 2, reason="two processes need two GPUs here")
def test_a_two_process_sft_job_trains_data_parallel(tmp_path, tiny_folder):
    """`processes: 2` really runs two processes (CPU processes over gloo here), and only
    the first writes the metrics, the adapter and the status."""
    command = jobs.job_command(["sft", "--config", "job.yaml"], "/ws", processes=4)
    assert command[1:6] == [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "4",
    ]
    assert command[6:] == ["-m", "pipeline", "--workspace", "/ws", "sft", "--config", "job.yaml"]
    assert jobs.job_command(["sft"], "/ws")[1:] == ["-m", "pipeline", "--workspace", "/ws", "sft"]
    assert "needs 2 GPUs (one per process); this machine has 1" in jobs.processes_problem(2, 1)
    assert jobs.processes_problem(2, 0) == jobs.processes_problem(2, 2) == ""
    data = tmp_path / "sft.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"Say the word number {i}."},
                        {
                            "role": "assistant",
                            "content": "I am sorry, but I can help with that safely.",
                        },
                    ]
                }
            )
            + "\n"
            for i in range(8)
        )
    )
    store = Store(tmp_path / "ws")
    out = tmp_path / "run"
    args = [
        "sft",
        "--model",
        str(tiny_folder),
        "--data",
        str(data),
        "--max-steps",
        "4",
        "--batch-size",
        "2",
        "--processes",
        "2",
        "--out",
        str(out),
    ]
    job = jobs.launch(store, "sft", args, out, processes=2)
    assert jobs.wait(store, job.id, timeout=600).status == "succeeded", job_folder.log_tail(out)
    rows = [r for r in read_metrics(out) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # one writer, each step once
    assert rows[0]["epoch"] == 0.5  # 2 processes × 2 examples of 8 per step
    assert (out / "adapter" / "adapter_config.json").exists()
    assert job_folder.log_tail(out).count("wrote ") == 1

    long = tmp_path / "long"  # a cancel reaches both processes: they stop after the same step
    args[args.index("4")] = "400"
    job = jobs.launch(store, "sft", args[:-1] + [str(long)], long, processes=2)
    deadline = time.time() + 120
    while time.time() < deadline and not [r for r in read_metrics(long) if "loss" in r]:
        time.sleep(0.2)
    jobs.cancel(store, job.id)
    assert jobs.wait(store, job.id, timeout=120).status == "cancelled", job_folder.log_tail(long)
    saved = next((long / "checkpoint").glob("checkpoint-*"))
    assert {"adapter_model.safetensors", "rng_state_0.pth", "rng_state_1.pth"} <= {
        p.name for p in saved.iterdir()
    }


def test_a_frozen_constitution_is_the_one_a_job_reads(tmp_path):
    from pipeline.data.constitution import load_constitution

    store = Store(tmp_path / "ws")
    store.seed()
    live = store.version("harmless-helpful").constitution
    path = jobs.freeze_constitution(live, tmp_path / "run")
    assert path.name == jobs.CONSTITUTION_FILE and load_constitution(path) == live


@pytest.mark.integration
def test_two_writers_in_one_run_folder_one_is_refused_and_no_id_is_written_twice(
    tmp_path, tiny_folder
):
    """The second writer is refused at once with the holder; once the holder is killed (-9),
    the kernel has dropped its lock and the same command resumes the folder."""
    prompts = twelve_prompts(tmp_path)
    ws, out = tmp_path / "ws", tmp_path / "run"
    Store(ws).seed()
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "--workspace",
        str(ws),
        *revise_args(tiny_folder, out, prompts),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    holder = 0  # the command's process (forked from the warm launcher where one is up)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (holder := writer(out)):
            time.sleep(0.05)
        started = time.time()
        second = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert first.poll() is None, "the first writer ended before the second was tried"
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert f"is being written by process {holder} (" in second.stderr
        assert "revise" in second.stderr and time.time() - started < 60  # refused, not queued
    finally:
        first.kill()  # -9: a command forked from the launcher is killed with it
        first.wait()
    assert not holder or gone(holder, 30), "the writer outlived the command that was killed"
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    ids = [c.id for c in ChainLog(out).read()]
    assert len(ids) == len(set(ids)) == 12
    assert job_folder.read_status(out)[0] == "succeeded"


def gone(pid: int, timeout: float = 10) -> bool:
    """Whether a process has ended within `timeout` seconds."""
    deadline = time.time() + timeout
    while Path(f"/proc/{pid}").exists() and time.time() < deadline:
        time.sleep(0.05)
    return not Path(f"/proc/{pid}").exists()


def writer(out: Path) -> int:
    """The process the run folder's writer lock names (0 until one has written it)."""
    try:
        return int(json.loads(_read(out / job_folder.WRITER_LOCK))["pid"])
    except (ValueError, KeyError, TypeError):
        return 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@pytest.mark.integration
def test_relaunching_after_the_launcher_and_the_job_were_killed_starts_it_again(tmp_path):
    store = Store(tmp_path / "ws")
    out, args = tmp_path / "run", ["prompts", "list"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, _ = store.add_job("prompts", args, str(out), jobs.job_command(args, store.workspace))
    store.start_job(stale.id, dead.pid)  # what a killed launcher leaves: 'running', no process
    relaunched = jobs.launch(store, "prompts", args, out)
    assert relaunched.id != stale.id and relaunched.status == "running"
    assert store.job(stale.id).status == "failed"
    assert jobs.wait(store, relaunched.id, timeout=120).status == "succeeded"
