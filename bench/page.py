"""The studio's page: its size and how fast its root answers 20 clients at once, ours (event
handlers kept out of the page) against Gradio's default (every handler's API description
inlined into every page), both in this process on the same workspace — then ours again
while a real generation job loads both cores.

Prints a table and `ratio=` (default p50 / ours p50 under 20 clients; larger is better).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLIENTS, REQUESTS = 20, 3


def serve(workspace: Path, without: str = "") -> str:
    """A studio on `workspace`, served from this process; its URL. `without` names a step of
    `studio.app`'s build to leave out (Gradio's default where that step changes it)."""
    from studio import app

    original = getattr(app, without) if without else None
    if without:
        setattr(app, without, lambda demo: None)
    try:
        demo, _ = app.build_studio(workspace)
    finally:
        if without:
            setattr(app, without, original)
    demo.queue().launch(
        server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True
    )
    return demo.local_url


def fetch(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        size = len(response.read())
    return time.perf_counter() - started, size


def load(url: str) -> tuple[int, float, float]:
    """(page bytes, p50 s, p95 s) of the root under CLIENTS concurrent clients."""
    fetch(url)  # warm
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda _: fetch(url), range(CLIENTS * REQUESTS)))
    times = sorted(t for t, _ in results)
    return results[0][1], statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> None:
    workspace = Path(tempfile.mkdtemp(prefix="bench-page-"))
    default_url = serve(workspace, without="keep_handlers_out_of_the_page")
    ours_url = serve(workspace)
    rows = {"default (API inlined)": load(default_url), "ours": load(ours_url)}
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "--workspace",
            str(workspace),
            "generate",
            "--prompt",
            "Tell me a long story.",
            "--prompt",
            "Explain photosynthesis.",
            "--max-new-tokens",
            "400",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(8)  # the job has loaded its model and is generating
    rows["ours, a job running"] = load(ours_url)
    job.kill()
    print(f"{'page':<24}{'bytes':>12}{'p50 s':>10}{'p95 s':>10}   ({CLIENTS} clients × {REQUESTS})")
    for name, (size, p50, p95) in rows.items():
        print(f"{name:<24}{size:>12,}{p50:>10.3f}{p95:>10.3f}")
    size_ratio = rows["ours"][0] / rows["default (API inlined)"][0]
    print(f"page size ratio (ours / default) = {size_ratio:.3f}")
    print(f"ratio={rows['default (API inlined)'][1] / rows['ours'][1]:.2f}")
    os._exit(0)  # the servers run in daemon threads


if __name__ == "__main__":
    main()
