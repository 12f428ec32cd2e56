"""A job's share of the work under several processes: the plan split without overlap, each
process's own log, and the logs folded into one (what a crash leaves folded next time)."""

import json

from pipeline.core.files import RecordLog
from pipeline.core.shards import Shard, barrier, fold, parts, read_all
from pipeline.train.runtime import CancelFlag


class Rows(RecordLog[dict]):
    FILE = "rows.jsonl"

    def to_row(self, record: dict) -> dict:
        return record

    def from_row(self, row, n: int) -> dict:
        return row

    def key(self, record: dict) -> str:
        return record["id"]


def test_the_shards_of_a_plan_cover_it_once():
    plan = [f"item-{i}" for i in range(11)]
    shares = [Shard(rank, 3).mine(plan) for rank in range(3)]
    assert sorted(sum(shares, [])) == sorted(plan)
    assert shares[1] == ["item-1", "item-4", "item-7", "item-10"]
    assert Shard().mine(plan) == plan


def test_each_process_writes_its_own_log_and_the_first_folds_them(tmp_path):
    main = tmp_path / "rows.jsonl"
    assert Shard().own_file(main) == main  # alone: the log itself
    assert Shard(1, 2).own_file(main).name == "rows.rank1.jsonl"
    Rows(tmp_path).append([{"id": "a", "v": 1}])
    for rank, rows in ((0, [{"id": "b", "v": 1}]), (1, [{"id": "c", "v": 1}, {"id": "a", "v": 2}])):
        Rows.of_file(Shard(rank, 2).own_file(main)).append(rows)
    assert [p.name for p in parts(main)] == ["rows.jsonl", "rows.rank0.jsonl", "rows.rank1.jsonl"]
    expected = {"a": 2, "b": 1, "c": 1}  # the latest of each key, wherever it was written
    assert {r["id"]: r["v"] for r in read_all(Rows(tmp_path))} == expected
    fold(main)
    assert parts(main) == [main]
    assert {r["id"]: r["v"] for r in Rows(tmp_path).read()} == expected
    fold(main)  # nothing left to fold: nothing changes
    assert len(main.read_text().splitlines()) == 4


def test_a_fold_killed_before_it_removed_a_file_leaves_a_repeat_the_log_drops(tmp_path):
    main = tmp_path / "rows.jsonl"
    rank1 = Shard(1, 2).own_file(main)
    Rows.of_file(rank1).append([{"id": "x", "v": 1}])
    main.write_text(json.dumps({"id": "x", "v": 1}) + "\n")  # appended, then killed
    fold(main)
    assert Rows(tmp_path).read() == [{"id": "x", "v": 1}] and not rank1.exists()


def test_one_process_never_waits():
    """Alone, a process has no one to wait for: no process group is started (gloo would wait
    for peers that never come) and a cancel requested meanwhile is the job's to notice later."""
    import torch.distributed as dist

    cancel = CancelFlag()
    cancel.set()
    assert barrier(Shard(), cancel) is None
    assert not dist.is_initialized()
