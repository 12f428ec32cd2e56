"""validate / save / diff / export of the largest constitution allowed, against the path
before this one, in the same run.

The constitution: MAX_PRINCIPLES principles whose texts make its canonical YAML just under
the 1 MiB limit, written as a flow-style file (`{name: …, principles: [{…}, …]}`), the
slowest form for a YAML scanner. Ours is the real CLI (`python -m pipeline constitution
…`, in-process, database included, after one warm-up command: what a process start costs
is not counted). The baseline is the earlier path on the same text,
re-enacted here: PyYAML's pure-Python parser run three times per read (an event scan for
aliases and depth, a node tree for line numbers, a load for the value), `validate` reading
the file twice, and the pure-Python emitter for the canonical YAML; it leaves out the
database, so the ratio understates our gain. Ends with `ratio=<baseline / ours total
seconds>` (larger is better); the target is every command of ours under 2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import yaml

from pipeline.cli import main  # noqa: E402
from pipeline.data.constitution import (
    MAX_FILE_BYTES,
    MAX_PRINCIPLES,
    _line_map,  # noqa: E402
    _represent_str,
    check_raw,
    content_hash,
    diff_constitutions,
    from_dict,
    to_dict,
)


class PurePythonDumper(yaml.SafeDumper):
    pass


PurePythonDumper.add_representer(str, _represent_str)


def flow_text(principles: int, words: int, name: str = "big", changed: int = 0) -> str:
    """A flow-style constitution; the first `changed` principles get other critique texts."""

    def principle(i: int) -> str:
        critique = " ".join(["Is the answer fair and careful"] * words) + (
            " now?" if i < changed else "?"
        )
        text = " ".join(["Rewrite the answer so that it is kind and careful"] * words)
        return (
            f"{{id: p{i}, title: 'Principle {i}', critique_request: '{critique}', "
            f"revision_request: '{text}.', preference_question: 'Which answer is better "
            f"under principle {i}?', weight: 1.0, tags: [bench], enabled: true}}"
        )

    return (
        f"{{name: {name}, version: 1, description: 'bench', principles: ["
        + ", ".join(principle(i) for i in range(principles))
        + "]}\n"
    )


def old_read(text: str):
    """The earlier read: three pure-Python passes over the text."""
    for _ in yaml.parse(text, Loader=yaml.SafeLoader):
        pass
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    raw = yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 (SafeLoader)
    _line_map(node, (), {}, [])
    assert not check_raw(raw)
    return from_dict(raw)


def old_dump(c) -> str:
    return yaml.dump(
        to_dict(c), Dumper=PurePythonDumper, sort_keys=False, allow_unicode=True, width=100
    )


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cli(*args: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    if code != 0:
        raise SystemExit(f"{' '.join(args)} failed: {err.getvalue()}")


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--principles", type=int, default=MAX_PRINCIPLES)
    parser.add_argument("--words", type=int, default=8, help="repeats of the phrase per text")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        v1, v2 = tmp / "v1.yaml", tmp / "v2.yaml"
        v1.write_text(flow_text(args.principles, args.words))
        v2.write_text(flow_text(args.principles, args.words, changed=args.principles // 10))
        ws = str(tmp / "ws")
        canonical = len(old_dump(old_read(v1.read_text())).encode())
        print(
            f"{args.principles} principles: flow-style file {v1.stat().st_size / 1e6:.2f} MB, "
            f"canonical YAML {canonical / 1e6:.2f} MB (limit {MAX_FILE_BYTES / 1e6:.2f} MB)"
        )

        cli("--workspace", ws, "constitution", "list")  # imports once, as a process start would
        ours = {
            "validate": timed(lambda: cli("--workspace", ws, "constitution", "validate", str(v1))),
            "save": timed(lambda: cli("--workspace", ws, "constitution", "save", str(v1))),
        }
        cli("--workspace", ws, "constitution", "save", str(v2))
        ours["diff"] = timed(
            lambda: cli("--workspace", ws, "constitution", "diff", "big@1", "big@2")
        )
        ours["export"] = timed(
            lambda: cli(
                "--workspace", ws, "constitution", "export", "big@2", "--out", str(tmp / "out.yaml")
            )
        )

        stored1, stored2 = old_dump(old_read(v1.read_text())), old_dump(old_read(v2.read_text()))
        baseline = {
            "validate": timed(lambda: (old_read(v1.read_text()), old_read(v1.read_text()))),
            "save": timed(
                lambda: (lambda c: (check_raw(to_dict(c)), content_hash(c), old_dump(c)))(
                    old_read(v1.read_text())
                )
            ),
            "diff": timed(lambda: diff_constitutions(old_read(stored1), old_read(stored2))),
            "export": timed(lambda: old_dump(old_read(stored2))),
        }

    print(f"{'command':<10}{'before (s)':>12}{'ours (s)':>10}{'ratio':>8}")
    for op in ours:
        print(f"{op:<10}{baseline[op]:>12.2f}{ours[op]:>10.2f}{baseline[op] / ours[op]:>8.1f}")
    print(f"slowest of ours: {max(ours.values()):.2f} s (target: under 2 s)")
    print(f"ratio={sum(baseline.values()) / sum(ours.values()):.2f}")


if __name__ == "__main__":
    main_bench()
