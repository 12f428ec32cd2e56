import json

import pytest

from pipeline.cai.feedback import Labeller, run_labelling
from pipeline.cai.trust import agreement, entropy_bits, histogram, trust_report
from pipeline.config.settings import FeedbackConfig
from pipeline.core.errors import DatasetError, StoreError
from pipeline.data.constitution import load_constitution
from pipeline.data.preferences import (
    GOLD_PAIRS,
    LabelLog,
    Pair,
    export_preferences,
    gold_pairs,
    human_choice,
    import_hh,
    read_labels,
    read_pairs,
    trl_rows,
    write_pairs,
)
from pipeline.data.store import Store
from pipeline.model.loading import load_model

HARMLESS = load_constitution("constitutions/harmless-helpful.yaml")


def test_gold_pairs_are_many_varied_and_balanced():
    pairs = gold_pairs()
    assert len(pairs) >= 60 and len({p.id for p in pairs}) == len(pairs)
    assert len({p.category for p in pairs}) >= 25
    a_wins = sum(p.human == "A" for p in pairs)
    assert 0.3 < a_wins / len(pairs) < 0.7  # the better answer is not always in one position
    rows = [json.loads(line) for line in GOLD_PAIRS.read_text().splitlines()]
    for row, pair in zip(rows, pairs):
        better = pair.response_a if pair.human == "A" else pair.response_b
        assert better == row["chosen"]


def test_pairs_file_errors_name_the_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"prompt": "p", "response_a": "a", "response_b": "b"}\n'
        '{"prompt": "p", "response_a": "a"}\n'
        "not json\n"
    )
    with pytest.raises(
        DatasetError, match=r"pairs.jsonl, line 2: needs a non-empty text field 'response_b'"
    ):
        read_pairs(path)
    skipped = []
    assert len(read_pairs(path, on_bad_line=skipped.append)) == 1
    assert "line 3: not valid JSON" in skipped[1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds neither"):
        read_pairs(tmp_path / "empty")


def test_write_and_read_pairs_round_trip(tmp_path):
    pairs = gold_pairs()[:5]
    write_pairs(pairs, tmp_path / "pairs.jsonl")
    assert read_pairs(tmp_path) == pairs


def test_hh_rlhf_import(tmp_path):
    path = tmp_path / "hh.jsonl"
    rows = [
        {
            "chosen": "\n\nHuman: How do I boil an egg?\n\nAssistant: Simmer it for 8 minutes.",
            "rejected": "\n\nHuman: How do I boil an egg?\n\nAssistant: Microwave it whole.",
        },
        {
            "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a fact.\n\nAssistant: "
            "Octopuses have three hearts.",
            "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a fact."
            "\n\nAssistant: No.",
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first, second = import_hh(path)
    assert first.prompt == "How do I boil an egg?"
    better = first.response_a if first.human == "A" else first.response_b
    assert better == "Simmer it for 8 minutes."
    assert second.prompt.startswith("Human: Hi\n\nAssistant: Hello!")
    assert {second.response_a, second.response_b} == {"Octopuses have three hearts.", "No."}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(rows[0])
        + "\n"
        + json.dumps({"chosen": rows[0]["chosen"], "rejected": "\n\nHuman: Other\n\nAssistant: x"})
        + "\n"
    )
    with pytest.raises(DatasetError, match="line 2: 'chosen' and 'rejected' differ"):
        import_hh(bad)


def test_human_labels_are_found_in_either_order(tmp_path):
    store = Store(tmp_path)
    pair = Pair("p", "a", "b")
    assert human_choice(pair, store.human_labels()) is None
    store.set_human_label(pair.id, "A", pair.prompt, pair.response_a, pair.response_b)
    assert human_choice(pair, store.human_labels()) == "A"
    assert human_choice(pair.swapped(), store.human_labels()) == "B"
    store.set_human_label(pair.id, "tie", pair.prompt, pair.response_a, pair.response_b)
    assert human_choice(pair.swapped(), store.human_labels()) == "tie"
    with pytest.raises(StoreError, match="A, B or tie"):
        store.set_human_label(pair.id, "C", "p", "a", "b")


def test_agreement_and_calibration_by_hand():
    result = agreement([(0.9, "A"), (0.8, "B"), (0.3, "B"), (0.1, "A"), (0.6, "tie")])
    assert result.compared == 4 and result.ties == 1
    assert result.accuracy == 0.5
    by_bin = {(b.low, b.high): (b.count, b.mean_p_a, b.human_a) for b in result.bins}
    assert by_bin[(0.8, 1.0)] == (2, pytest.approx(0.85), 0.5)
    assert by_bin[(0.0, 0.2)] == (1, 0.1, 1.0)
    assert result.ece == pytest.approx((2 * 0.35 + 1 * 0.3 + 1 * 0.9) / 4)
    assert agreement([(0.5, "tie")]) is None
    assert entropy_bits(0.5) == pytest.approx(1) and entropy_bits(1.0) == 0
    assert histogram([0.0, 0.19, 0.5, 1.0], 5) == [2, 0, 1, 0, 1]


def test_a_real_labelling_run_resumes_exports_and_never_touches_human_labels(tmp_path):
    store = Store(tmp_path / "ws")
    pairs = gold_pairs()[:6] + [Pair("Same?", "yes", "yes")]
    mine = pairs[0]
    store.set_human_label(mine.id, "tie", mine.prompt, mine.response_a, mine.response_b)
    before = store.human_labels()
    labeller = Labeller(load_model(), FeedbackConfig(ensemble=2))
    seen = []
    prefs = run_labelling(
        labeller, HARMLESS, pairs, tmp_path / "run", lambda done, total: seen.append((done, total))
    )
    assert len(prefs) == 7 and seen[-1] == (7, 7)
    assert [p.pair.id for p in prefs] == [p.id for p in pairs]
    assert all(len(p.labels) == 2 for p in prefs[:6]) and prefs[6].flags == ("identical",)
    # rerunning into the folder labels nothing twice; other settings are refused
    again = run_labelling(labeller, HARMLESS, pairs, tmp_path / "run")
    assert len(again) == 7 and len(LabelLog(tmp_path / "run").read()) == 7
    with pytest.raises(DatasetError, match="other settings"):
        run_labelling(
            Labeller(load_model(), FeedbackConfig(ensemble=3)), HARMLESS, pairs, tmp_path / "run"
        )
    # a resume on other pairs would mix two pair sets: refused, naming the run and a pair
    changed = [Pair(p.prompt, p.response_a + " (edited)", p.response_b) for p in pairs[:2]]
    with pytest.raises(
        DatasetError, match="The pairs changed since .*run was labelled: 6 of its 7 labelled pairs"
    ):
        run_labelling(labeller, HARMLESS, changed + pairs[2:3], tmp_path / "run")
    assert store.human_labels() == before
    report = trust_report(read_labels(tmp_path / "run"), store.human_labels())
    assert report.labels == 7 and report.identical == 1
    assert report.agreement.ties == 1 and report.agreement.compared == 5  # gold labels + mine
    assert 0 <= report.position_bias <= 1 and sum(report.entropy_histogram) == 6
    rows = trl_rows(prefs)
    assert len(rows) == 6 and all(0 <= r["margin"] <= 1 for r in rows)
    for row, pref in zip(rows, prefs):
        assert row["chosen"] == (pref.pair.response_a if pref.p_a >= 0.5 else pref.pair.response_b)
    out = export_preferences(prefs, tmp_path / "export" / "trl.jsonl")
    assert len(out.read_text().splitlines()) == 6
    from datasets import load_from_disk

    assert set(load_from_disk(str(tmp_path / "export" / "trl")).column_names) >= {
        "prompt",
        "chosen",
        "rejected",
        "margin",
    }
    records = export_preferences(prefs, tmp_path / "export" / "records.jsonl", "jsonl")
    row = json.loads(records.read_text().splitlines()[0])
    assert {
        "p_a",
        "p_a_ab",
        "p_a_ba",
        "principle_ids",
        "feedback_model",
        "constitution_hash",
        "human",
    } <= set(row)
