"""The runs overview: readable names and telling numbers from what runs wrote."""

import json

from pipeline.cai.critique import ChainLog
from pipeline.core.job_folder import RUN_FILE
from pipeline.data.store import Store
from pipeline.runner.run_list import kept_note, key_metric, run_name, summaries
from tests.records import chain_record


def test_runs_are_named_by_stage_and_constitution_with_their_key_number(tmp_path):
    store = Store(tmp_path / "ws")
    chains = tmp_path / "chains-1"
    ChainLog(chains).append([chain_record("Pick it.", ["Ask a locksmith.", ""])])
    (chains / RUN_FILE).write_text(json.dumps({"constitution": "harmless-helpful"}))
    revise, _ = store.add_job("revise", ["revise"], str(chains), [])
    sft_dir = tmp_path / "sft-1"
    sft_dir.mkdir()
    (sft_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 1.25}\n')
    (sft_dir / "job.yaml").write_text("model: embedded\n")
    sft, _ = store.add_job("sft", ["sft"], str(sft_dir), [], parent=revise.id)
    store.start_job(sft.id, 1)
    store.set_job_status(sft.id, "succeeded")
    runs = {r.job_id: r for r in summaries(store.jobs())}
    assert runs[revise.id].name.startswith("chains · harmless-helpful · 20")
    assert runs[revise.id].metric == "1 chains, 1 failed rounds" and runs[revise.id].tab == "chains"
    assert runs[sft.id].metric == "loss 1.25 at step 2" and runs[sft.id].tab == "train"
    assert runs[sft.id].parent == revise.id and runs[sft.id].duration.endswith("s")
    assert [r.job_id for r in summaries(store.jobs(), "sft")] == [sft.id]
    assert str(tmp_path) not in run_name(store.job(sft.id))  # never a folder as the name
    labels, _ = store.add_job("label", ["label"], str(tmp_path / "nothing-yet"), [])
    assert key_metric(store.job(labels.id)) == ""


def test_a_reading_and_a_values_report_are_summarised_with_their_intervals(tmp_path):
    store = Store(tmp_path / "ws")
    steer = tmp_path / "steer-1" / "direction"
    steer.mkdir(parents=True)
    (steer / "direction.json").write_text(
        json.dumps(
            {
                "read_on": "gold",
                "reading": [
                    {"layer": 8, "accuracy": 0.6, "low": 0.5, "high": 0.7, "controlled": None},
                    {"layer": 13, "accuracy": 0.8, "low": 0.7, "high": 0.9, "controlled": 0.55},
                ],
            }
        )
    )
    extract, _ = store.add_job("steer-extract", ["steer"], str(steer.parent), [])
    assert key_metric(store.job(extract.id)) == (
        "best layer 13: 80% (95% interval 70%–90%), length-controlled 55% on gold"
    )
    values = tmp_path / "values-1"
    values.mkdir()
    (values / "values.json").write_text(
        json.dumps(
            [
                {
                    "constitution": "adversarial",
                    "adversarial": True,
                    "mean_cos_constitution": -0.035,
                    "mean_cos_constitution_interval": [-0.052, 0.003],
                },
                {"constitution": "honest", "adversarial": False},
            ]
        )
    )  # written before the intervals
    report, _ = store.add_job("values-report", ["values"], str(values), [])
    assert key_metric(store.job(report.id)) == (
        "adversarial: adversarial yes (mean cos(w_c, w*) -0.035, 95% -0.052 to +0.003); "
        "honest: adversarial no"
    )


def test_a_preference_model_is_headlined_by_held_out_accuracy_not_a_training_batch(tmp_path):
    store = Store(tmp_path / "ws")
    pm = tmp_path / "reward-1"
    pm.mkdir()
    (pm / "metrics.jsonl").write_text('{"step": 3, "loss": 0.6930, "accuracy": 1.0}\n')
    job, _ = store.add_job("reward", ["reward"], str(pm), [])
    running = key_metric(store.job(job.id))  # still training: no held-out number yet
    assert running == (
        "training-batch accuracy 1 at step 3 (not held out; loss 0.693, chance level (ln 2))"
    )
    (pm / "summary.json").write_text(
        json.dumps(
            {
                "held_out": {
                    "held_out_ai": "0.600 (95% interval 0.387–0.781) on 20",
                    "gold": "0.541 (95% interval "
                    "0.427–0.650) on 74 (always-longer 0.892, length-controlled 0.500)",
                }
            }
        )
    )
    assert key_metric(store.job(job.id)) == (
        "held-out accuracy: on held-out AI labels 0.600 (95% interval 0.387–0.781) on 20; on the "
        "gold pairs 0.541 (95% interval 0.427–0.650) on 74 (always-longer 0.892, "
        "length-controlled 0.500)"
    )


def test_a_resumed_run_is_one_run_with_its_time_added_up(tmp_path):
    from studio.tabs.train import job_rows

    store = Store(tmp_path / "ws")
    folder = str(tmp_path / "sft-1")
    first, _ = store.add_job("sft", ["sft"], folder, [])
    store.start_job(first.id, 1)
    store.set_job_status(first.id, "cancelled")
    again, _ = store.add_job("sft", ["sft"], folder, [])
    other, _ = store.add_job("sft", ["sft"], str(tmp_path / "sft-2"), [])
    runs = summaries(store.jobs())
    assert [r.job_id for r in runs] == [other.id, again.id]  # the resume stands for its run
    assert runs[1].name.endswith(" · resumed") and runs[1].duration  # the first attempt's time
    rows = job_rows(store.jobs())
    assert [r[0] for r in rows] == [other.id, again.id] and rows[1][1].endswith(" · resumed")


def test_runs_say_whether_their_labels_were_verified_and_what_a_comparison_picked(tmp_path):
    store = Store(tmp_path / "ws")
    labels = tmp_path / "labels-1"
    labels.mkdir()
    (labels / "summary.json").write_text(
        json.dumps(
            {
                "labels": 8,
                "position_bias": 0.5,
                "agreement": None,
                "judge": "labels unverified: there are no human A/B labels in 'human'",
            }
        )
    )
    job, _ = store.add_job("label", ["label"], str(labels), [])
    assert key_metric(store.job(job.id)) == "8 pairs, position bias 50%; labels unverified"
    pm = tmp_path / "reward-1"
    pm.mkdir()
    (pm / "metrics.jsonl").write_text('{"step": 3, "loss": 0.5}\n')
    (pm / "labels-note.json").write_text(json.dumps({"verified": False, "note": "x"}))
    job, _ = store.add_job("reward", ["reward"], str(pm), [])
    assert key_metric(store.job(job.id)) == "labels unverified · loss 0.5 at step 3"
    board = tmp_path / "judges-1"
    board.mkdir()
    (board / "judges.json").write_text(json.dumps({"pairs": 40, "best": "probe", "rows": [{}]}))
    job, _ = store.add_job("judges-compare", ["judges-compare"], str(board), [])
    assert key_metric(store.job(job.id)) == "40 human labels; auto picks probe"
    assert run_name(store.job(job.id)).startswith("judges compared · ")


def test_a_cancel_says_what_it_keeps_only_when_something_was_kept(tmp_path):
    chains = tmp_path / "chains"
    assert kept_note("revise", chains) == "no chains finished yet: a resume starts over."
    chains.mkdir()
    # two finished chains and one torn by a kill mid-write: the torn one is not counted
    (chains / "chains.jsonl").write_text('{"id": 1}\n{"id": 2}\n{"id": ')
    assert (
        kept_note("revise", chains) == "2 finished chains are kept; a resume continues after them."
    )
    assert kept_note("pairs", tmp_path / "pairs") == "no pairs finished yet: a resume starts over."
    (chains / "chains.jsonl").write_text('{"id": 1}\n')
    assert kept_note("revise", chains) == "1 finished chain is kept; a resume continues after it."
    assert kept_note("sft", tmp_path / "sft") == "finished work is kept."


def test_the_chain_file_named_here_is_the_chain_logs():
    from pipeline.cai.critique import CHAINS_FILE, ChainLog
    from pipeline.runner import run_list

    assert run_list.CHAINS_FILE == CHAINS_FILE == ChainLog.FILE
