"""What a command runs with besides its job config: the workspace, the run folder, whether
to print JSON, and its own command line (to start it again under `accelerate launch`); and
the few things every command's run shares — finding a constitution, saying what loads, a
step reporter."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline.core.errors import StoreError
from pipeline.core.job_folder import write_progress
from pipeline.data.constitution import Constitution, load_constitution
from pipeline.data.store import Store, parse_ref
from pipeline.runner.jobs import check_processes, launcher


@dataclass(frozen=True)
class Invocation:
    workspace: str | None
    out: Path | None
    as_json: bool = False
    argv: tuple[str, ...] = ()

    def store(self) -> Store:
        store = Store(self.workspace)
        store.seed()
        return store

    def constitution(self, ref: str) -> Constitution:
        return resolve_constitution(ref, self.store)[1]

    @property
    def folder(self) -> Path:
        """The run folder, for commands that always have one (the parser requires it)."""
        if self.out is None:
            raise StoreError("this command needs --out (its run folder)")
        return self.out


def resolve_constitution(ref: str, store: Callable[[], Store]) -> tuple[str, Constitution]:
    """A file path, `name@version`, or `name` (latest saved version) → (label, constitution);
    the workspace is opened only for a saved name."""
    if Path(ref).is_file():
        return ref, load_constitution(ref)
    name, version = parse_ref(ref)
    try:
        record = store().version(name, version)
    except StoreError:
        raise StoreError(
            f"'{ref}' is neither a file nor a saved constitution (name or name@version)."
        ) from None
    return record.label, record.constitution


def loading(model: str) -> str:
    """A job's progress while its model loads: where it looks, so a slow load is explained."""
    return f"loading the model {model} (embedded cache, local folder or hub)"


def stepper(out: Path | None, steps: int) -> Callable[[str], None]:
    """A job's step reporter: each call says what it starts (stderr, and the run folder's
    progress when there is one) and counts one step done."""
    done = [0]

    def step(what: str) -> None:
        print(f"… {what}", file=sys.stderr, flush=True)
        if out:
            write_progress(out, done[0], steps, what)
        done[0] += 1

    return step


def as_processes(inv: Invocation, processes: int) -> int | None:
    """A stage that asks for several processes, started directly: the same command again
    through `accelerate launch` (as the job queue starts it), returning its exit status;
    None when this already is one of those processes, or one is asked for."""
    if processes <= 1 or "WORLD_SIZE" in os.environ:
        return None
    check_processes(processes)
    return subprocess.run([*launcher(processes), "-m", "pipeline", *inv.argv]).returncode
