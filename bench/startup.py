"""How long the command line takes to answer `--help`: the torch-free start against the old
import path, in the same run.

Before the settings moved out of the torch modules, building the parser imported generation,
critique chains and AI feedback (torch with them). The baseline here is that path, kept as a
one-liner: import those modules, then print the same help. Ours is `cstudio --help` as a user
types it. Each runs in a fresh interpreter `--runs` times; the medians are compared. Prints
`python -c "import torch"` too, the floor any torch-importing start pays. Ends with
`ratio=<old / ours>` (larger is better).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

OLD_PATH = (
    "import pipeline.model.generation, pipeline.cai.critique, pipeline.cai.feedback\n"
    "from pipeline.cli import build_parser\n"
    "build_parser().format_help()"
)


def seconds(argv: list[str], runs: int) -> float:
    """Median wall time of `argv` in a fresh process."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cstudio = shutil.which("cstudio") or sys.exit("cstudio is not installed: pip install -e .")
    rows = {
        "ours: cstudio --help": seconds([cstudio, "--help"], args.runs),
        "old path (torch modules, then the help)": seconds(
            [sys.executable, "-c", OLD_PATH], args.runs
        ),
        'floor: python -c "import torch"': seconds(
            [sys.executable, "-c", "import torch"], args.runs
        ),
    }
    for name, value in rows.items():
        print(f"{name:<44}{value:>8.2f} s")
    old, ours = rows["old path (torch modules, then the help)"], rows["ours: cstudio --help"]
    print(f"ratio={old / ours:.2f}")


if __name__ == "__main__":
    main()
