"""Which memory allocator a training process runs on. glibc's default heap keeps the
fragments of a PPO step's many short-lived activation tensors (several hundred MB over what
the tensors hold); a fixed mmap threshold gives them back but costs PPO steps about a third
of their speed on a CPU; jemalloc, preloaded, gives them back at about the default heap's
speed (`bench/ppo.py`). So a PPO run re-executes itself under jemalloc where the library is
installed (Debian: `libjemalloc2`), before it loads anything; elsewhere it falls back to the
fixed threshold (`pipeline.train.runtime.steady_heap`)."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

PRELOAD = "LD_PRELOAD"
NAME = "libjemalloc.so.2"
SEARCHED = ("/usr/lib/*", "/usr/lib", "/usr/lib64", "/usr/local/lib")  # Debian's multiarch first


def jemalloc() -> str:
    """The jemalloc library's path ('' when it is not installed)."""
    for folder in SEARCHED:
        for found in sorted(glob.glob(f"{folder}/{NAME}")):
            return found
    return ""


def on_jemalloc() -> bool:
    """Whether this process was started with jemalloc preloaded."""
    return NAME in os.environ.get(PRELOAD, "")


def from_command_line() -> bool:
    """Whether this process is the command line itself (`python -m pipeline`, `cstudio`),
    not a program that called its main function (a test, a notebook)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    started = Path(str(getattr(main, "__file__", "") or "")).stem
    return (spec is not None and spec.name == "pipeline.__main__") or started == "cstudio"


def restart_on_jemalloc() -> None:
    """Replace this process (same pid, same arguments) by one with jemalloc preloaded;
    returns only where that is not done: already on it, not installed, or not started as the
    command line."""
    library = jemalloc()
    if on_jemalloc() or not library or not from_command_line():
        return
    preload = " ".join(filter(None, [library, os.environ.get(PRELOAD, "")]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, {**os.environ, PRELOAD: preload})
