"""The Values tab's handlers, without a browser: a real report job on a tiny model, its
results drawn, and the same question answered from the finished run."""

import json
from pathlib import Path

import pytest

from pipeline.runner import jobs
from studio.tabs import values as tab


@pytest.mark.integration
def test_the_page_offers_constitutions_pairs_and_models(store):
    page = tab.on_page_load(store)
    constitutions, pairs, bar, run = (
        page["constitutions"],
        page["pairs"],
        page["progress"],
        page["run"],
    )
    assert (
        constitutions["value"] == ["harmless-helpful"] and "adversarial" in constitutions["choices"]
    )
    assert pairs["choices"][:2] == ["gold", "human"] and bar == "" and run["value"] is None
    refused = tab.on_launch(
        store,
        chosen=[],
        pairs="gold",
        model="embedded",
        pooling="answer_mean",
        method="logistic",
        layers="",
        judge_ensemble=2,
    )
    assert list(refused) == ["message"] and "Pick at least one constitution" in refused["message"]
    message = tab.on_launch(
        store,
        chosen=["honest"],
        pairs="gold",
        model="embedded",
        pooling="answer_mean",
        method="logistic",
        layers="two",
        judge_ensemble=2,
    )["message"]
    assert "layers must be comma-separated layer numbers" in message


@pytest.mark.integration
def test_a_report_job_runs_is_drawn_and_is_not_run_twice(store, tmp_path, tiny_folder):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": f"Question {i}?",
                    "chosen": f"A safe answer {i}.",
                    "rejected": f"No {i}.",
                }
            )
            + "\n"
            for i in range(8)
        )
    )
    form = {
        "chosen": ["adversarial", "honest"],
        "pairs": str(pairs),
        "model": str(tiny_folder),
        "pooling": "answer_mean",
        "method": "logistic",
        "layers": "1,2",
        "judge_ensemble": -1,
    }
    launched = tab.on_launch(store, **form)
    assert list(launched) == ["message"] and "Launched job" in launched["message"]
    job = store.jobs(tab.KIND)[0]
    assert jobs.wait(store, job.id, timeout=300).status == "succeeded", job.error
    shown = tab.show_results(job.out_dir)
    assert set(shown) == set(tab.RESULTS_SHOWN)
    banner, summary, heatmap = shown["banner"], shown["summary"], shown["heatmap"]
    plots = [shown[name] for name in ("curves", "cosines", "projections")]
    assert all(plot["visible"] for plot in plots)  # hidden until a report is shown
    curves, cosines, projections = (plot["value"] for plot in plots)
    assert banner.count('role="status"') == 2 and "adversarial" in banner and "honest" in banner
    assert banner.count("95% interval") == 2 and "cos(w_c, w*) (95%)" in summary
    assert "minus adversarial's (95%)" in summary
    assert (cosines["low"] <= cosines["high"]).all() and cosines["high"].max() <= 1
    assert "8 human-labelled pairs" in summary and "always-longer 100%" in summary
    assert set(curves["layer"]) == {1, 2} and "w_c adversarial" in set(curves["series"])
    assert "always longer" in set(curves["series"]) and "cos(w_g, w*)" in set(cosines["series"])
    assert set(projections["side"]) == {"preferred", "dispreferred"}
    assert projections["answers"].sum() == 16 and heatmap.count("values-heatmap") == 2
    assert "accuracy alone" in heatmap and "length-controlled" in heatmap
    again = tab.on_launch(store, **form)
    assert "showing it" in again["message"] and again["run"]["value"] == job.out_dir
    assert len(store.jobs(tab.KIND)) == 1
    assert tab.show_results(None) == {}  # nothing picked: the results area stays as it is
    older = tmp_path / "older"  # a run written before the cosines had intervals
    older.mkdir()
    written = json.loads((Path(job.out_dir) / tab.RESULTS).read_text())
    (older / tab.RESULTS).write_text(
        json.dumps([{k: v for k, v in r.items() if k != "format"} for r in written])
    )
    assert "written by an earlier version" in tab.show_results(str(older))["banner"]
    fitted = tab.on_fit(store, str(pairs), str(tiny_folder), "answer_mean", "logistic", "2")
    assert "a representation judge fitted on these pairs" in fitted
    fit_job = store.jobs("values-fit")[0]
    assert jobs.wait(store, fit_job.id, timeout=300).status == "succeeded", fit_job.error
    assert "layers must be" in tab.on_fit(store, "gold", "embedded", "answer_mean", "logistic", "x")
