"""The studio's live answer beside a queued job, on a laptop CPU: the two must not
oversubscribe the cores when they run side by side.

A batch-1 greedy answer (the Playground, a live chain: 32 new tokens, the embedded model,
fp32) is timed alone, then beside a job process generating batches of 8 — once with the
job at the studio's priority (how jobs started before), once the way a queued job starts
now (`pipeline.core.cpu.run_in_background`: niceness 10, one thread per physical core).
Then the job alone at both priorities, to show a lone job loses nothing. Prints tokens/s
for each and `ratio=` live speed beside the job now / before (larger is better).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pipeline.config.settings import SamplingConfig
from pipeline.core import cpu
from pipeline.model.engines import backend_for
from pipeline.model.generation import chat

ROOT = Path(__file__).resolve().parent.parent
SAMPLING = SamplingConfig(max_new_tokens=32, temperature=0)

# the job: as pipeline.runner.commands starts a queued one, then batches of 8 answers until
# its time is up, writing its tokens/s so far to a file after each batch
JOB = """
import sys, time, torch
from pipeline.core import cpu
cpu.use_physical_cores()
cpu.run_in_background()
from pipeline.config.settings import SamplingConfig
from pipeline.model.engines import backend_for
from pipeline.model.generation import chat
torch.set_flush_denormal(True)
backend = backend_for("embedded", engine="fp32")
rows = [chat(f"Tell me about topic number {i} in detail.") for i in range(8)]
sampling = SamplingConfig(max_new_tokens=32, temperature=0)
backend.new_ids(rows[:1], sampling)
report, seconds = sys.argv[1], float(sys.argv[2])
open(report, "w").write("started")
tokens, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    tokens += sum(map(len, backend.new_ids(rows, sampling)))
    open(report, "w").write(str(tokens / (time.perf_counter() - start)))
"""


def start_job(niceness: int, seconds: float, report: Path) -> subprocess.Popen:
    """The job process, once it has loaded its model and begun."""
    report.unlink(missing_ok=True)
    env = {**os.environ, cpu.NICENESS_ENV: str(niceness)}
    proc = subprocess.Popen(
        [sys.executable, "-c", JOB, str(report), str(seconds)], cwd=ROOT, env=env
    )
    while not report.exists():
        if proc.poll() is not None:
            raise SystemExit(f"the job process ended early (exit {proc.returncode})")
        time.sleep(0.2)
    time.sleep(2)  # into its stride
    return proc


def job_rate(report: Path) -> str:
    text = report.read_text()
    return f"{float(text):.1f} tokens/s" if text != "started" else "no batch of 8 finished"


def live_rate(backend, seconds: float) -> float:
    """Tokens/s of batch-1 answers, one after another, for `seconds`."""
    conversation = chat("How do I pick a lock?")
    tokens, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        tokens += len(backend.new_ids([conversation], SAMPLING)[0])
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=25, help="each measurement's length")
    args = parser.parse_args()
    cpu.use_physical_cores()
    torch.set_flush_denormal(True)
    backend = backend_for("embedded", engine="fp32")
    backend.new_ids([chat("Hello.")], SAMPLING)
    print(f"{cpu.physical_cores()} physical cores, {torch.get_num_threads()} torch threads")
    alone = live_rate(backend, args.seconds)
    print(f"live answer alone                      {alone:6.1f} tokens/s")
    beside = {}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "job.txt"
        for label, niceness in (
            ("before (niceness 0)", 0),
            ("now (niceness 10)", cpu.JOB_NICENESS),
        ):
            job = start_job(niceness, args.seconds + 60, report)
            beside[niceness] = live_rate(backend, args.seconds)
            job.kill()
            job.wait()
            print(
                f"live answer beside a job, {label:<20}{beside[niceness]:6.1f} tokens/s"
                f" (the job meanwhile: {job_rate(report)})"
            )
        del backend  # the job alone has the machine
        for label, niceness in (("niceness 0", 0), ("niceness 10", cpu.JOB_NICENESS)):
            job = start_job(niceness, args.seconds, report)
            job.wait()
            print(f"the job alone, {label:<24}        {job_rate(report)}")
    print(
        f"beside a job the live answer runs at {beside[0] / alone:.2f}× (before) and "
        f"{beside[cpu.JOB_NICENESS] / alone:.2f}× (now) its speed alone"
    )
    print(f"ratio={beside[cpu.JOB_NICENESS] / beside[0]:.2f}")


if __name__ == "__main__":
    main()
