"""A job's share of the work when it runs as several processes (`accelerate launch` and
torchrun give each its RANK and WORLD_SIZE).

Every process builds the same seeded plan and takes every WORLD_SIZE-th item of it from its
RANK, so no two take the same item and none needs to hear from the others what to do. Each
appends its records to a log file of its own beside the shared one (appends from several
processes to one file could interleave, and a reader may cut what looks like a torn last
line), reads others' files only after a barrier, when nobody writes, and the first process
folds them into the shared log once all are done. The processes meet at barriers that a
cancel still reaches: a waiting process polls the job's cancel flag, so one cancelled
sibling never leaves another waiting forever.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

from pipeline.core.files import RecordLog, append_jsonl, read_jsonl_log
from pipeline.core.job_folder import JobCancelled

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """The process that folds the logs together and writes the results."""
        return self.rank == 0

    def mine(self, items: Sequence[T]) -> list[T]:
        return list(items[self.rank :: self.world])

    def own_file(self, path: Path) -> Path:
        """Where this process appends to the log `path`: the log itself when it runs alone."""
        return (
            path if self.world == 1 else path.with_name(f"{path.stem}.rank{self.rank}{path.suffix}")
        )


def current_shard() -> Shard:
    """This process's shard; under several processes with GPUs, each takes its own GPU."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(
                int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
            )
    return Shard(rank, world)


def parts(path: Path) -> list[Path]:
    """The log and every process's file beside it (left by this run or a crashed one)."""
    return [path] + sorted(path.parent.glob(f"{path.stem}.rank*{path.suffix}"))


def read_all(log: RecordLog[T]) -> list[T]:
    """The records of a log and of its processes' files, the latest of each key."""
    return log.latest([r for part in parts(log.path) for r in type(log).of_file(part).read()])


def done_here(log: RecordLog, shard: Shard) -> set[str]:
    """The ids this process may count as done: the shared log's and its own file's (read
    once when they are one file). Others' files are read only after a barrier."""
    return set().union(
        *(type(log).of_file(p).done_ids() for p in {log.path, shard.own_file(log.path)})
    )


def fold(path: Path) -> None:
    """Append every process's file to the log, then remove it. Killed in between, the next
    fold appends the same rows again; keyed reads keep one of each."""
    for part in parts(path)[1:]:
        append_jsonl(path, read_jsonl_log(part))
        part.unlink()


def barrier(shard: Shard, cancel, poll: float = 0.2) -> None:
    """Wait until every process gets here (gloo, which needs no GPU); a cancel requested
    while waiting raises JobCancelled."""
    if shard.world == 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    work = dist.barrier(async_op=True)
    while not work.is_completed():
        if cancel.requested:
            raise JobCancelled()
        time.sleep(poll)
