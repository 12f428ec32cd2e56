"""fp32 products through MKL against oneDNN (`pipeline/model/cpu_linear.py`), same run.

Three measures, each way, on the embedded model:

  layers      each Linear layer's product once, 1 and 16 rows (median of 20 after a warm-up);
  sampling    16 red-team and helpful prompts, 64 sampled tokens (0.7 / 0.95, seed 0), batched;
  prefill     a forward pass of 16 rows × 81 tokens without gradients (what the AI judge and
              hidden states run).

Sampling and prefill run in a fresh process per setting (`CSTUDIO_FP32_PRODUCTS=mkl` or
`onednn`), interleaved, `--repeats` times each. Ends with `ratio=<MKL / oneDNN seconds for
the sampled batch>` (larger is better). On an AMD CPU `auto` takes oneDNN; elsewhere the
ratio says what `CSTUDIO_FP32_PRODUCTS=onednn` would give.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("mkl", "onednn")


def layers() -> None:
    """Median milliseconds of each distinct layer shape, per setting, 1 and 16 rows."""
    import torch

    from pipeline.model.cpu_linear import OneDNNLinear
    from pipeline.model.loading import load_model

    model = load_model("embedded").model
    shapes = {
        (m.out_features, m.in_features) for m in model.modules() if isinstance(m, torch.nn.Linear)
    }
    print("layer (out × in)  rows  MKL ms  oneDNN ms")
    for out, inp in sorted(shapes):
        plain = torch.nn.Linear(inp, out, bias=False)
        fast = OneDNNLinear(inp, out, bias=False)
        fast.weight = plain.weight
        for rows in (1, 16):
            x = torch.randn(rows, inp)
            times = []
            for layer in (plain, fast):
                with torch.inference_mode():
                    for _ in range(3):
                        layer(x)
                    runs = []
                    for _ in range(20):
                        start = time.perf_counter()
                        layer(x)
                        runs.append(time.perf_counter() - start)
                times.append(statistics.median(runs) * 1e3)
            print(f"{out:>6} × {inp:<6} {rows:>5} {times[0]:7.3f} {times[1]:9.3f}")


def worker() -> None:
    """One setting's sampled batch and prefill (in this process's environment), as JSON."""
    import torch

    from pipeline.config.settings import SamplingConfig
    from pipeline.data.prompts import load_prompts
    from pipeline.model.engines import backend_for

    backend = backend_for("embedded", engine="fp32", greedy=False)
    prompts = [p.prompt for p in load_prompts("red-team", "test")][:8]
    prompts += [p.prompt for p in load_prompts("helpful", "test")][:8]
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    config = SamplingConfig(max_new_tokens=64, temperature=0.7, top_p=0.95, seed=0)
    backend.new_ids(conversations[:2], SamplingConfig(max_new_tokens=4, seed=0))  # warm-up
    start = time.perf_counter()
    answers = backend.new_ids(conversations, config)
    sampling = time.perf_counter() - start
    ids = torch.randint(100, 10_000, (16, 81), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        backend.loaded.model(input_ids=ids[:2], logits_to_keep=1)
        start = time.perf_counter()
        backend.loaded.model(input_ids=ids, logits_to_keep=1)
        prefill = time.perf_counter() - start
    print(json.dumps({"sampling": sampling, "prefill": prefill, "answers": answers}))


def run_worker(setting: str) -> dict:
    env = {**os.environ, "CSTUDIO_FP32_PRODUCTS": setting, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, __file__, "--worker"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    layers()
    runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for _ in range(args.repeats):
        for setting in SETTINGS:
            runs[setting].append(run_worker(setting))
    print("\nsetting  sampled batch (s)       prefill 16 × 81 (s)")
    for setting in SETTINGS:
        sampled = ", ".join(f"{r['sampling']:.2f}" for r in runs[setting])
        prefill = ", ".join(f"{r['prefill']:.2f}" for r in runs[setting])
        print(f"{setting:<8} {sampled:<23} {prefill}")
    same = sum(a == b for a, b in zip(runs["mkl"][0]["answers"], runs["onednn"][0]["answers"]))
    print(f"sampled answers the same text both ways: {same} of 16 (another order of summation)")
    mkl = statistics.median(r["sampling"] for r in runs["mkl"])
    onednn = statistics.median(r["sampling"] for r in runs["onednn"])
    print(f"ratio={mkl / onednn:.2f}")


if __name__ == "__main__":
    main()
