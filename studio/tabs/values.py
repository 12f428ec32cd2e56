"""Values tab: how much value signal a model's representations hold (the probe ceiling), how
much of it a constitution's direction and judge capture and generation already follows — per
layer, with length controlled — whether a constitution is adversarial, and how its
principles relate. The report runs as a background job (`values-report`); a run with the
same model, pairs, settings and constitutions is shown from its folder instead of redone."""

from __future__ import annotations

import hashlib
import html
import json
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from pipeline.config.commands import (
    POOLINGS,
    PROBE_METHODS,
    ValuesFitJob,
    ValuesJob,
    build_job,
    to_argv,
)
from pipeline.config.settings import DEFAULT_MODEL
from pipeline.core.errors import StudioError
from pipeline.core.stats import Accuracy
from pipeline.data.constitution import content_hash
from pipeline.data.store import JobRecord, Store
from pipeline.runner import jobs
from pipeline.values.features import labelled_in
from pipeline.values.report import FORMAT as REPORT_FORMAT
from pipeline.values.report import cos_text, differences_from_first
from studio.components.choices import (
    adapter_choices,
    constitution_choices,
    default_choice,
    resolve_choice,
)
from studio.components.heartbeat import Heartbeat
from studio.components.job_panel import cancel_notice, job_bar, latest_job, writing_now
from studio.components.notices import error_notice, notice
from studio.wiring import wire

KIND = "values-report"
RESULTS = "values.json"
HIST_BINS = 12


def pair_choices(store: Store) -> list[str]:
    """Human-labelled pair sets: the gold pairs, your labels, pairs and label runs."""
    folders = [
        j.out_dir for j in store.jobs() if j.kind in ("pairs", "label") and j.status == "succeeded"
    ]
    return ["gold", "human", *folders]


def cache_key(store: Store, values: dict[str, Any], constitutions: list) -> str:
    """Same model, pairs (and their human labels), settings and constitution contents →
    same key, so a finished report is shown instead of recomputed."""
    data = labelled_in(values["pairs"], store)
    blob = json.dumps(
        {
            **values,
            "format": REPORT_FORMAT,
            "constitution": [content_hash(c) for c in constitutions],
            "data": [(p.id, int(y)) for p, y in zip(data.pairs, data.y.tolist())],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def read_results(folder: str | Path) -> list[dict]:
    """The reports a finished run wrote (one per constitution)."""
    raw = json.loads((Path(folder) / RESULTS).read_text())
    reports = raw if isinstance(raw, list) else [raw]
    if any(r.get("format", 1) < REPORT_FORMAT for r in reports):
        raise ValueError(
            "it was written by an earlier version of the studio (without the "
            "cosines' intervals); run the report again"
        )
    return reports


# --- what the results look like -----------------------------------------------------------


def curves_frame(reports: list[dict]) -> pd.DataFrame:
    """Accuracy by layer: the ceiling, the length-free probe, each constitution's direction,
    the generation direction, and flat lines for the judges and the length baselines."""
    first = reports[0]
    layers = first["layers"]
    series = {
        "ceiling (probe w*)": first["ceiling"]["value"],
        "probe, length removed": first["residualised"]["value"],
        "generation direction w_g": first["generation_probe"]["value"],
    }
    for r in reports:
        series[f"w_c {r['constitution']}"] = r["constitution_accuracy"]["value"]
        if r["judge"]:
            series[f"log-prob judge {r['constitution']}"] = [r["judge"]["value"]] * len(layers)
        if r.get("judge_direction"):
            series[f"judge's own direction {r['constitution']}"] = r["judge_direction"]["value"]
    if first["length"]:
        series["always longer"] = [first["length"]["longer"]] * len(layers)
        series["always shorter"] = [first["length"]["shorter"]] * len(layers)
    return pd.DataFrame(
        [
            {"layer": layer, "accuracy": values[i], "series": name}
            for name, values in series.items()
            for i, layer in enumerate(layers)
        ]
    )


def cosines_frame(reports: list[dict]) -> pd.DataFrame:
    """Cosines with the probe w* by layer, each point with its 95% bootstrap interval (shown
    on hover)."""

    def series(name: str, r: dict, key: str) -> list[dict]:
        return [
            {
                "layer": layer,
                "cosine": r[key][i],
                "low": r[f"{key}_interval"][i][0],
                "high": r[f"{key}_interval"][i][1],
                "series": name,
            }
            for i, layer in enumerate(r["layers"])
        ]

    rows = [
        row
        for r in reports
        for row in series(f"cos(w_c, w*) {r['constitution']}", r, "cos_constitution")
    ]
    rows += [
        row
        for r in reports
        if r.get("cos_judge")
        for row in series(f"cos(judge's direction, w*) {r['constitution']}", r, "cos_judge")
    ]
    rows += series("cos(w_g, w*)", reports[0], "cos_generation")
    return pd.DataFrame(rows)


def projections_frame(report: dict) -> pd.DataFrame:
    """Histogram of the answers' projections on w* at the best layer: preferred vs not."""
    sides = report["projections"]
    values = sides["preferred"] + sides["dispreferred"]
    if not values:
        return pd.DataFrame({"projection": [], "answers": [], "side": []})
    low, high = min(values), max(values)
    width = (high - low) / HIST_BINS or 1.0
    rows = []
    for side in ("preferred", "dispreferred"):
        counts = [0] * HIST_BINS
        for v in sides[side]:
            counts[min(int((v - low) / width), HIST_BINS - 1)] += 1
        rows += [
            {"projection": round(low + (k + 0.5) * width, 3), "answers": c, "side": side}
            for k, c in enumerate(counts)
        ]
    return pd.DataFrame(rows)


def _cell(c: float) -> str:
    colour = f"rgba(46,125,50,{abs(c):.2f})" if c >= 0 else f"rgba(198,40,40,{abs(c):.2f})"
    return f'<td style="background:{colour}" title="{c:+.2f}">{c:+.2f}</td>'


def heatmap_html(report: dict) -> str:
    """The principles' directions against each other (cosines), with near-duplicates and
    conflicts named."""
    cos = report["principle_cosines"]
    ids = sorted(cos)
    accuracy = report.get("principle_accuracy", {})
    head = "".join(f"<th>{html.escape(i)}</th>" for i in ids) + "<th>accuracy alone</th>"
    body = "".join(
        f"<tr><th>{html.escape(a)}</th>{''.join(_cell(cos[a][b]) for b in ids)}"
        f"<td>{_acc(accuracy.get(a))}</td></tr>"
        for a in ids
    )
    notes = [
        f"near-duplicates: {a} and {b} (cos {c:+.2f})" for a, b, c in report["near_duplicates"]
    ]
    notes += [f"conflicting: {a} and {b} (cos {c:+.2f})" for a, b, c in report["conflicts"]]
    listed = "".join(f"<li>{html.escape(n)}</li>" for n in notes) or "<li>none named</li>"
    name = html.escape(report["constitution"])
    return (
        f'<div class="values-heatmap" data-constitution="{name}">'
        f"<p><b>{html.escape(report['constitution'])}</b>: its principles' directions "
        f"(cosine at layer {report['best_layer']}; green = same way, red = opposite)</p>"
        f'<table class="heatmap"><tr><th></th>{head}</tr>{body}</table><ul>{listed}</ul></div>'
    )


def banner_html(reports: list[dict]) -> str:
    """Each constitution's verdict with what it rests on (the mean cosine's interval, the
    judge's test)."""
    parts = [
        notice("error", f"Adversarial constitution: {r['constitution']} — {r['grounds']}.")
        if r["adversarial"]
        else notice("ok", f"{r['constitution']}: not adversarial — {r['grounds']}.")
        for r in reports
    ]
    return f'<div id="values-verdicts">{"".join(parts)}</div>'


def _acc(a: dict | None) -> str:
    return Accuracy(**a).text if a else "—"


def summary_html(reports: list[dict]) -> str:
    """The numbers at the best layer, a row per constitution, beside the length baselines;
    with several constitutions, each one's mean cosine against the first's (paired)."""
    first = reports[0]
    i = first["layers"].index(first["best_layer"])
    length = first["length"]
    baseline = (
        f"length alone: always-longer {length['longer']:.0%}, always-shorter "
        f"{length['shorter']:.0%} on {length['compared']} pairs"
        if length
        else "length baselines: no pairs of different lengths"
    )
    compared = len(reports) > 1
    differences = [
        f"<td>{'—' if found is None else found.text}</td>" if compared else ""
        for found in differences_from_first(reports)
    ]
    rows = "".join(
        f"<tr><td>{html.escape(r['constitution'])}</td>"
        f"<td>{_acc({k: v[i] for k, v in r['constitution_accuracy'].items()})}</td>"
        f"<td>{cos_text(r['cos_constitution'][i], r['cos_constitution_interval'][i])}</td>"
        f"{difference}<td>{_acc(r['judge'])}</td>"
        f"<td>{'—' if r['gap'] is None else format(r['gap'], '+.0%')}</td></tr>"
        for r, difference in zip(reports, differences)
    )
    head = (
        f"<th>mean cos(w_c, w*) minus {html.escape(first['constitution'])}'s (95%)</th>"
        if compared
        else ""
    )
    return (
        f'<div class="values-summary"><p>{first["pairs"]} human-labelled pairs · model '
        f"{html.escape(first['model'])} · best layer {first['best_layer']} · ceiling "
        f"{_acc(first['ceiling_best'])} · generation (policy likelihood) "
        f"{_acc(first['generation'])} · {baseline}</p>"
        "<table><tr><th>constitution</th><th>w_c accuracy</th><th>cos(w_c, w*) (95%)</th>"
        f"{head}<th>log-prob judge</th><th>generation–judgment gap</th></tr>"
        f"{rows}</table></div>"
    )


RESULTS_SHOWN = ("banner", "summary", "curves", "cosines", "projections", "heatmap")


def show_results(folder: str | None) -> dict[str, Any]:
    """A run's verdict banners, summary, accuracy curves, cosines, projections and heatmaps,
    by name; nothing changes while no finished report is picked."""
    if not folder or not (Path(folder) / RESULTS).exists():
        return {}
    try:
        reports = read_results(folder)
    except (OSError, ValueError, KeyError) as exc:
        return {"banner": notice("error", f"Cannot read the results in {folder}: {exc}")}
    plots = {
        "curves": curves_frame(reports),
        "cosines": cosines_frame(reports),
        "projections": projections_frame(reports[0]),
    }
    return {
        "banner": banner_html(reports),
        "summary": summary_html(reports),
        **{name: gr.update(value=frame, visible=True) for name, frame in plots.items()},
        "heatmap": "".join(heatmap_html(r) for r in reports),
    }


# What the results area says before any report is picked (its plots stay hidden till then).
NO_REPORT = notice(
    "info",
    "No values report shown yet: pick one or more constitutions above and "
    "press Run the values report (a few minutes on a CPU); a finished "
    "report appears in the Report picker and its results here.",
)


# --- handlers ------------------------------------------------------------------------------


def latest(store: Store) -> JobRecord | None:
    return latest_job(store, (KIND,))


def run_choices(store: Store, selected: str | None = None) -> Any:
    folders = [j.out_dir for j in store.jobs(KIND) if j.status == "succeeded"]
    return gr.update(choices=folders, value=selected or (folders[0] if folders else None))


def on_page_load(store: Store) -> dict[str, Any]:
    choice = default_choice(store)
    return {
        "constitutions": gr.update(
            choices=constitution_choices(store), value=[choice] if choice else []
        ),
        "pairs": gr.update(choices=pair_choices(store)),
        "model": gr.update(choices=list(dict.fromkeys([DEFAULT_MODEL, *adapter_choices(store)]))),
        "progress": job_bar(latest(store), "steps"),
        "run": run_choices(store),
    }


def on_launch(
    store: Store,
    chosen: list[str] | None,
    pairs: str,
    model: str,
    pooling: str,
    method: str,
    layers: str,
    judge_ensemble: float,
) -> dict[str, Any]:
    """The report of every chosen constitution on the pairs, as one background job — or the
    finished run that already answers the same question (then picked in `run`)."""
    if not chosen:
        return {"message": notice("error", "Pick at least one constitution.")}
    values = {
        "pairs": pairs or "gold",
        "model": model or DEFAULT_MODEL,
        "pooling": pooling,
        "method": method,
        "layers": (layers or "").strip(),
        "judge_ensemble": int(judge_ensemble),
    }
    try:
        constitutions = [resolve_choice(store, c) for c in chosen]
        build_job(ValuesJob, {**values, "constitution": ",".join(chosen)})  # refuse bad settings
        out = store.runs / f"values-{cache_key(store, values, constitutions)}"
        if (out / RESULTS).exists():
            return {
                "message": notice(
                    "ok",
                    f"The same model, pairs, settings and constitutions were "
                    f"reported in {out.name}; showing it.",
                ),
                "run": run_choices(store, str(out)),
            }
        frozen = [
            str(jobs.freeze_constitution(c, out, f"constitution-input-{n}.yaml"))
            for n, c in enumerate(constitutions, 1)
        ]
        job = build_job(ValuesJob, {**values, "constitution": ",".join(frozen)})
        record = jobs.launch(store, KIND, to_argv(KIND, job, out), out)
    except StudioError as exc:
        return {"message": error_notice(exc)}
    return {"message": notice("ok", f"Launched job {record.id}: the values report into {out}.")}


def on_fit(store: Store, pairs: str, model: str, pooling: str, method: str, layers: str) -> str:
    """Fit a representation judge on these pairs in the background (`values fit`); it is
    then offered as a judge in the Preferences tab and to `label --probe`."""
    out = store.new_run_folder("judge")
    try:
        job = build_job(
            ValuesFitJob,
            {
                "pairs": pairs or "gold",
                "model": model or DEFAULT_MODEL,
                "pooling": pooling,
                "method": method,
                "layers": (layers or "").strip(),
            },
        )
        record = jobs.launch(store, "values-fit", to_argv("values-fit", job, out), out)
    except StudioError as exc:
        return error_notice(exc)
    return notice(
        "ok",
        f"Launched job {record.id}: a representation judge fitted on these pairs, "
        f"into {out}; pick it as the judge in the Preferences tab when it is done.",
    )


PICK_WITHIN = 60.0  # seconds after a report ends in which the tab still picks it by itself


def on_timer(store: Store, shown: str | None) -> dict[str, Any]:
    """Progress every tick; once the job writing a report ends, its run is picked."""
    job = latest(store)
    bar = job_bar(job, "steps")
    if (
        job is not None
        and job.status == "succeeded"
        and writing_now(job, PICK_WITHIN)
        and shown != job.out_dir
    ):
        return {"progress": bar, "run": run_choices(store, job.out_dir)}
    return {"progress": bar}


def on_cancel(store: Store, confirmed: int | None) -> dict[str, Any]:
    return cancel_notice(
        store,
        latest(store),
        "No values report is running.",
        "a cancelled report can be launched again.",
        confirmed,
    )


def build(store: Store, demo: gr.Blocks, beat: Heartbeat) -> gr.Dropdown:
    """Lay out the tab and wire its events; returns the report picker (the Runs tab opens
    reports there)."""
    gr.Markdown(
        "How much value signal does the model's representation hold, how much of it "
        "does a constitution select, and how much does generation already follow? Probes "
        "on human-labelled pairs give the *ceiling*; the constitution's direction w_c "
        "comes from answers the model writes under each principle and its opposite (no "
        "labels); the generation direction w_g from the model's own likelihood. Every "
        "accuracy sits beside what answer length alone would score."
    )
    message = gr.HTML(elem_id="values-message")
    with gr.Row():
        constitutions = gr.Dropdown(
            label="Constitutions (pick two or more to compare)",
            choices=[],
            multiselect=True,
            elem_id="values-constitutions",
            scale=3,
        )
        pairs = gr.Dropdown(
            label="Human-labelled pairs",
            choices=["gold"],
            value="gold",
            allow_custom_value=True,
            elem_id="values-pairs",
            scale=2,
        )
        model = gr.Dropdown(
            label="Model",
            choices=[DEFAULT_MODEL],
            value=DEFAULT_MODEL,
            allow_custom_value=True,
            elem_id="values-model",
            scale=2,
        )
    with gr.Row():
        pooling = gr.Dropdown(
            label="Pooling", choices=list(POOLINGS), value=POOLINGS[0], elem_id="values-pooling"
        )
        method = gr.Dropdown(
            label="Probe",
            choices=list(PROBE_METHODS),
            value=PROBE_METHODS[0],
            elem_id="values-method",
        )
        layers = gr.Textbox(label="Layers (comma-separated; empty = all)", elem_id="values-layers")
        judge_ensemble = gr.Number(
            value=ValuesJob.judge_ensemble,
            precision=0,
            label="log-prob judge: principles per label (-1 = skip)",
            elem_id="values-judge",
        )
    with gr.Row():
        launch = gr.Button("Run the values report", variant="primary", elem_id="values-launch")
        cancel = gr.Button("Cancel report", variant="stop", elem_id="values-cancel")
        fit = gr.Button("Fit a judge from these pairs", elem_id="values-fit")
    progress = gr.HTML(elem_id="values-progress")
    run = gr.Dropdown(label="Report", choices=[], elem_id="values-run")
    banner = gr.HTML(NO_REPORT, elem_id="values-banner")
    summary = gr.HTML(elem_id="values-summary")
    with gr.Row():
        curves = gr.LinePlot(
            x="layer",
            y="accuracy",
            color="series",
            y_lim=[0, 1],
            label="Accuracy on the human-labelled pairs, by layer",
            elem_id="values-curves",
            visible=False,
        )
        cosines = gr.LinePlot(
            x="layer",
            y="cosine",
            color="series",
            y_lim=[-1, 1],
            tooltip=["series", "layer", "cosine", "low", "high"],
            label="Direction cosines with the probe w* (hover: 95% interval)",
            elem_id="values-cosines",
            visible=False,
        )
    with gr.Row():
        projections = gr.BarPlot(
            x="projection",
            y="answers",
            color="side",
            label="Answers projected on w* (best layer)",
            elem_id="values-projections",
            visible=False,
        )
        heatmap = gr.HTML(elem_id="values-heatmap")
    armed = gr.State(None)

    shown = dict(zip(RESULTS_SHOWN, (banner, summary, curves, cosines, projections, heatmap)))
    beat.kick(
        wire(
            launch.click,
            partial(on_launch, store),
            {
                "chosen": constitutions,
                "pairs": pairs,
                "model": model,
                "pooling": pooling,
                "method": method,
                "layers": layers,
                "judge_ensemble": judge_ensemble,
            },
            {"message": message, "run": run},
        )
    )
    wire(cancel.click, partial(on_cancel, store), armed, {"message": message, "armed": armed})
    beat.kick(fit.click(partial(on_fit, store), [pairs, model, pooling, method, layers], message))
    wire(run.change, show_results, run, shown)
    beat.watch(partial(on_timer, store), run, {"progress": progress, "run": run})
    page = {"constitutions": constitutions, "pairs": pairs, "model": model, "progress": progress}
    wire(demo.load, partial(on_page_load, store), None, {**page, "run": run})
    return run
