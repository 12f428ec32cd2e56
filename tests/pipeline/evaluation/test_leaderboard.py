"""The judge leaderboard: rows, verdicts and ranking by hand; the nested probe never lets a
held-out label choose anything; the CLI on a tiny model."""

import json

import pytest
import torch

from pipeline.core.errors import DatasetError
from pipeline.data.preferences import Pair
from pipeline.evaluation.leaderboard import (
    AGREES,
    CHANCE,
    LENGTH_ONLY,
    POSITION,
    Judged,
    check_labels,
    controlled_interval,
    format_board,
    leaderboard,
    nested_probe,
    score,
)
from pipeline.values.features import labelled


def pairs_people(longer_wins: int, shorter_wins: int) -> tuple:
    """Labelled pairs where people chose the longer answer `longer_wins` times and the shorter
    one `shorter_wins` times; the chosen answer alternates between A and B."""
    pairs = []
    for i in range(longer_wins + shorter_wins):
        long, short = f"a long answer number {i} with words", f"short {i}"
        chosen, other = (long, short) if i < longer_wins else (short, long)
        a, b = (chosen, other) if i % 2 == 0 else (other, chosen)
        pairs.append(Pair(f"Q{i}?", a, b, human="A" if i % 2 == 0 else "B"))
    return labelled(pairs, {})


def judge(name: str, data, pick) -> Judged:
    """A position-free judge whose P(A) is 0.9 where `pick(pair, chose_a)` says A."""
    p = tuple(0.9 if pick(pair, bool(y)) else 0.1 for pair, y in zip(data.pairs, data.y.tolist()))
    return Judged(name, "test", p, p, p)


def longer(pair, _):
    return len(pair.response_a.split()) > len(pair.response_b.split())


def test_verdicts_say_what_agreement_means_and_the_board_ranks_by_the_controlled_bound():
    data = pairs_people(30, 10)
    people = judge("people's twin", data, lambda pair, a: a)
    length = judge("always longer", data, longer)
    # agrees on pairs 0, 1, 4, 5, …: half of all, under half of either length group (a fixed
    # pattern, not hash(): string hashes change with every process)
    coin = judge("coin", data, lambda pair, a: a == (int(pair.prompt[1:-1]) % 4 < 2))
    first = Judged("first shown", "test", (0.5,) * 40, (0.9,) * 40, (0.1,) * 40)
    rows = {j.name: score(j, data) for j in (people, length, coin, first)}
    assert rows["people's twin"].verdict.text.startswith(AGREES)
    assert rows["people's twin"].agreement == 1 and rows["people's twin"].controlled == 1
    assert rows["always longer"].agreement == 0.75 and rows["always longer"].controlled == 0.5
    assert rows["always longer"].verdict.text.startswith(LENGTH_ONLY)
    assert rows["always longer"].always_longer == 0.75
    assert rows["first shown"].verdict.text.startswith(POSITION)
    assert rows["first shown"].position_bias == 1
    board = leaderboard("test", data, [coin, length, first, people])
    assert board.rows[0].judge == "people's twin" and board.best.judge == "people's twin"
    assert board.rows[1].judge == "always longer"  # its controlled bound beats the others
    text = format_board(board)
    assert "always-longer 75%" in text and "auto picks: people's twin" in text
    assert json.loads(json.dumps(board.as_json()))["best"] == "people's twin"
    assert leaderboard("test", data, [length, first]).best is None


def test_the_controlled_interval_needs_both_sides_and_covers_the_estimate():
    assert controlled_interval([(True, True)] * 20 + [(False, False)] * 4) is None
    outcomes = [(True, i % 4 != 0) for i in range(20)] + [(False, i % 2 == 0) for i in range(10)]
    low, high = controlled_interval(outcomes)
    assert low < (0.75 + 0.5) / 2 < high and 0 <= low and high <= 1
    few = pairs_people(12, 3)
    row = score(judge("twin", few, lambda pair, a: a), few)
    assert row.controlled == 1 and row.controlled_interval is None
    assert "length cannot be controlled" in row.verdict.text and "shorter in 3" in row.verdict.text
    tiny = pairs_people(4, 4)
    assert "too few pairs" in score(judge("twin", tiny, lambda pair, a: a), tiny).verdict.text
    assert CHANCE  # the chance verdict is exercised on real judges in the CLI test


def test_labels_no_judge_can_be_checked_on_are_refused_by_what_is_missing():
    with pytest.raises(DatasetError, match="at least 10 human A/B labels.*label 2 more"):
        check_labels(pairs_people(5, 3), folds=5)
    with pytest.raises(DatasetError, match="at least 12 .*6 cross-validation folds"):
        check_labels(pairs_people(6, 5), folds=6)
    with pytest.raises(DatasetError, match="people chose the longer answer .*20 pairs"):
        check_labels(pairs_people(20, 0), folds=5)
    check_labels(pairs_people(18, 2), folds=5)


def planted(n: int = 40, layers: int = 4, dim: int = 16, signal_layer: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) > 0.5).long()
    d = torch.randn(n, layers, dim, generator=g)
    d[:, signal_layer, 0] += 3 * (2 * y.float() - 1)
    return d, y


def test_the_nested_probe_finds_the_planted_layer_and_no_held_out_label_leaks():
    d, y = planted()
    found = nested_probe(d, y, (0, 1, 2, 3), k=4)
    assert set(found.layers) == {2}
    right = sum((p > 0.5) == bool(label) for p, label in zip(found.p_a, y.tolist()))
    assert right >= 36
    # flipping one pair's label changes nothing about that pair's own P(A): only probes fitted
    # without it (and layers picked without it) judged it (up to the joint L-BFGS run's
    # stopping point, which every fit of a layer shares)
    for i in (0, 17):
        flipped = y.clone()
        flipped[i] = 1 - flipped[i]
        again = nested_probe(d, flipped, (0, 1, 2, 3), k=4)
        assert again.p_a[i] == pytest.approx(found.p_a[i], abs=1e-3)
    means = nested_probe(d, y, (0, 1, 2, 3), method="mean_difference", k=4)
    assert sum((p > 0.5) == bool(label) for p, label in zip(means.p_a, y.tolist())) >= 34


def length_pairs_file(path, n: int, shorter_every: int):
    """A trl pairs file of n human-labelled pairs: the chosen answer is the longer one except
    in every `shorter_every`-th pair."""
    rows = []
    for i in range(n):
        long, short = f"Here is a careful and complete answer number {i}.", f"No {i}."
        chosen, other = (long, short) if i % shorter_every else (short, long)
        rows.append({"prompt": f"Question {i}?", "chosen": chosen, "rejected": other})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.integration
def test_judges_compare_ranks_every_judge_from_the_command_line(tmp_path, tiny_folder):
    from tests.pipeline.test_cli import run

    pairs = length_pairs_file(tmp_path / "pairs.jsonl", 24, shorter_every=3)
    ws = tmp_path / "ws"
    out = tmp_path / "board"
    proc = run(
        "judges",
        "compare",
        "--labels",
        str(pairs),
        "--model",
        str(tiny_folder),
        "--constitution",
        "honest",
        "--folds",
        "3",
        "--layers",
        "1,2",
        "--out",
        str(out),
        workspace=ws,
    )
    board = json.loads((out / "judges.json").read_text())
    assert board["pairs"] == 24 and len(board["rows"]) == 3
    assert {r["kind"] for r in board["rows"]} == {"logprob", "representation", "probe"}
    assert all(r["compared"] == 24 and r["verdict"]["text"] for r in board["rows"])
    keys = [(r["controlled_interval"] or [-1])[0] for r in board["rows"]]
    assert keys == sorted(keys, reverse=True)
    assert "always-longer 67%" in proc.stdout and "auto picks:" in proc.stdout
    assert (out / "judges.md").read_text().startswith("Judges against people on 24")
    few = run(
        "judges",
        "compare",
        "--labels",
        str(pairs),
        "--model",
        str(tiny_folder),
        "--folds",
        "20",
        workspace=ws,
        check_rc=1,
    )
    assert "needs at least 40 human A/B labels" in few.stderr
