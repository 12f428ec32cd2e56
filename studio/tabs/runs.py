"""Runs tab: every run of the workspace in one table — chains, pairs, labels, training
stages, pipelines, evaluations — by readable name, with status, time and its telling
number; pick one to see where it is, open it in the tab that shows it, or export a trained
policy as a model to take elsewhere."""

from __future__ import annotations

import html
import re
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from pipeline.config.commands import EXPORT_DTYPES, ExportJob
from pipeline.core.errors import StudioError
from pipeline.data.store import Store
from pipeline.runner import jobs
from pipeline.runner.compare import RunComparison, compare_runs
from pipeline.runner.export import export_model
from pipeline.runner.run_list import STAGE_NAMES, RunSummary, summaries, summarise
from pipeline.train.runtime import ADAPTER_DIR
from studio.components.notices import notice
from studio.components.plots import step_plots
from studio.tabs.preferences import STUDIO_RUN
from studio.tabs.train import METRIC_ORDER, NOT_PLOTTED
from studio.wiring import NEWEST, to_components, wire

ALL = "all"
HEADERS = ["id", "run", "status", "time", "key number"]
TAB_TITLES = {
    "chains": "Chains",
    "preferences": "Preferences",
    "train": "Train",
    "values": "Values",
    "evaluate": "Evaluate",
}


def kind_choices() -> list[tuple[str, str]]:
    return [("every kind", ALL)] + [(name, kind) for kind, name in STAGE_NAMES.items()]


def table_rows(runs: list[RunSummary]) -> list[list[Any]]:
    return [
        [r.job_id, ("  ↳ " if r.parent else "") + r.name, r.status, r.duration, r.metric]
        for r in runs
    ]


COMPARE_PLOTS = 4  # curves shown overlaid, the stage's headline metrics first


def on_refresh(store: Store, kind: str) -> dict[str, Any]:
    runs = summaries(jobs.refresh(store), "" if kind == ALL else kind)
    finished = [r for r in runs if r.status in ("succeeded", "cancelled", "failed")]
    note = (
        ""
        if runs
        else notice(
            "info",
            "No runs yet: launch one from the Chains, Preferences or Train tab (or Start here).",
        )
    )
    return {
        "table": table_rows(runs),
        "message": note,
        "compare_pick": gr.update(
            choices=[(f"{r.name} · job {r.job_id}", r.job_id) for r in finished]
        ),
    }


def details_html(run: RunSummary) -> str:
    part_of = f" · stage of pipeline job {run.parent}" if run.parent else ""
    return (
        f'<div class="run-details" data-job="{run.job_id}"><p><b>{html.escape(run.name)}</b>'
        f"{part_of}</p><p>job {run.job_id} · {html.escape(run.status)} · "
        f"{html.escape(run.duration or 'not started')} · "
        f"{html.escape(run.metric or 'no results yet')}</p>"
        f'<p class="chain-label">folder: <code>{html.escape(run.folder)}</code></p></div>'
    )


def picked_run(store: Store, job_id: int | None) -> RunSummary | None:
    """The summary of one run (None when there is no such job)."""
    if job_id is None:
        return None
    try:
        return summarise(store.job(job_id))
    except StudioError:
        return None


EXPORTABLE = ("sft", "ppo", "dpo", "rahf", "grpo", "rloo")  # the stages whose adapter is a policy
MODELS_DIR = "models"  # exports, under the workspace


def exportable(run: RunSummary) -> bool:
    return run.kind in EXPORTABLE and (Path(run.folder) / ADAPTER_DIR).is_dir()


def on_pick(store: Store, job_id: int | None) -> dict[str, Any]:
    """The run's details, the Open button's label, the export panel (for a finished policy)
    and the picked job, by name."""
    run = picked_run(store, job_id)
    if run is None:
        return {
            "details": notice("error", "That run is no longer in the workspace."),
            "picked": None,
            "export_panel": gr.update(visible=False),
        }
    return {
        "details": details_html(run),
        "open_button": gr.update(value=f"Open in the {TAB_TITLES[run.tab]} tab", interactive=True),
        "picked": run.job_id,
        "export_panel": gr.update(visible=exportable(run)),
        "export_name": Path(run.folder).name,
        "export_message": "",
    }


def on_export(
    store: Store, job_id: int | None, merge: bool, dtype: str, name: str, as_gguf: bool = False
) -> dict:
    """Export the picked run's policy adapter into WORKSPACE/models/NAME (see `export`)."""
    run = picked_run(store, job_id)
    if run is None or not exportable(run):
        text = "Pick a finished policy run (SFT, PPO, GRPO, RLOO, DPO or RAHF) to export."
        return {"export_message": notice("error", text)}
    name = (name or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        text = f"Name the export with letters, digits, '.', '-' or '_' (got {name!r})."
        return {"export_message": notice("error", text)}
    job = ExportJob(
        adapter=str(Path(run.folder) / ADAPTER_DIR), merge=merge, dtype=dtype, gguf=as_gguf
    )
    problems = job.problems()
    if problems:
        return {"export_message": notice("error", "; ".join(problems))}
    try:
        folder = export_model(job, store.workspace / MODELS_DIR / name)
    except StudioError as exc:
        return {"export_message": notice("error", str(exc))}
    how = (
        f"AutoModelForCausalLM.from_pretrained('{folder}') loads it without this project"
        if merge
        else f"PeftModel.from_pretrained(base, '{folder}') loads it on its base"
    )
    command = f"cstudio export --adapter {job.adapter} --out {folder}"
    command += f" --merge --dtype {dtype}" if merge else ""
    command += " --gguf" if as_gguf else ""
    return {
        "export_message": notice(
            "success",
            f"Exported into {folder} with its model card (README.md: how it was made, its "
            f"tournament). {how}. The same from the command line: {command}",
        )
    }


def curve_frames(c: RunComparison) -> list[tuple[str, pd.DataFrame]]:
    """The metrics logged step by step (2 steps or more in some run), headline ones first,
    each as one long frame (step, value, run) for an overlaid plot."""
    curves = {
        name: series
        for name, series in c.curves().items()
        if name not in NOT_PLOTTED and max(len(p) for p in series.values()) > 1
    }
    ordered = [m for m in METRIC_ORDER if m in curves] + sorted(set(curves) - set(METRIC_ORDER))
    return [
        (
            name,
            pd.DataFrame(
                [
                    {"step": step, "value": value, "run": run}
                    for run, points in curves[name].items()
                    for step, value in points
                ]
            ),
        )
        for name in ordered
    ]


def comparison_html(c: RunComparison) -> str:
    """Each run's key number, then its settings side by side, the differing rows marked."""
    settings = c.settings()
    heads = "".join(f"<th>{html.escape(r.name)}</th>" for r in c.runs)
    key = "".join(f"<td>{html.escape(r.key_metric or 'no result yet')}</td>" for r in c.runs)
    rows = "".join(
        f'<tr class="{"differs" if differs else "same"}"><th>{html.escape(name)}</th>'
        + "".join(f"<td>{html.escape(str(v))}</td>" for v in values)
        + "</tr>"
        for name, values, differs in settings
    )
    differing = sum(1 for *_, differs in settings if differs)
    return (
        f'<div class="run-compare"><p>{len(c.runs)} runs · {differing} settings differ '
        "(marked, listed first)</p><table><tr><th></th>"
        f"{heads}</tr><tr><th>key number</th>{key}</tr>{rows}</table></div>"
    )


def on_compare(store: Store, picked: list[int] | None) -> dict[str, Any]:
    """Two or more runs of one stage side by side: curves overlaid by step, settings with
    the differing ones marked, key numbers with their intervals."""
    hidden = {f"compare_plot_{n}": gr.update(visible=False) for n in range(COMPARE_PLOTS)}
    try:
        c = compare_runs(store, [str(j) for j in picked or []])
    except StudioError as exc:
        return {"compare_view": notice("error", str(exc)), **hidden}
    frames = curve_frames(c)[:COMPARE_PLOTS]
    plots = {
        f"compare_plot_{n}": gr.update(value=frame, title=name, visible=True)
        for n, (name, frame) in enumerate(frames)
    }
    return {"compare_view": comparison_html(c), **hidden, **plots}


# where each kind of run is picked in its own tab (the Train tab watches a job instead)
PICKERS = {
    "revise": "chains_run",
    "label": "labels_run",
    "pairs": "pairs_source",
    "values-report": "values_run",
    "evaluate": "evaluate_run",
}


def on_open(store: Store, job_id: int | None, watched: int | None) -> dict[str, Any]:
    """Switch to the tab that shows the run, with the run picked there (by name: tabs, the
    picker of its kind, train_watched, message); the other tabs' pickers stay as they are."""
    run = picked_run(store, job_id)
    if run is None:
        return {"message": notice("error", "Pick a run in the table first.")}
    opened: dict[str, Any] = {"tabs": gr.Tabs(selected=run.tab), "message": ""}
    if run.kind in PICKERS:
        folders = [j.out_dir for j in store.jobs(run.kind)]
        before = {"label": [STUDIO_RUN], "pairs": ["gold"]}.get(run.kind, [])
        opened[PICKERS[run.kind]] = gr.update(choices=[*before, *folders], value=run.folder)
    if run.tab == "train":
        opened["train_watched"] = run.job_id
    return opened


def build(
    store: Store,
    demo: gr.Blocks,
    tabs: gr.Tabs,
    chains_run: gr.Dropdown,
    labels_run: gr.Dropdown,
    pairs_source: gr.Dropdown,
    values_run: gr.Dropdown,
    evaluate_run: gr.Dropdown,
    train_watched: gr.State,
) -> None:
    """Lay out the tab and wire its events; the pickers of the other tabs are where a run
    opens."""
    message = gr.HTML(elem_id="runs-message")
    with gr.Row():
        kind = gr.Dropdown(
            label="Show", choices=kind_choices(), value=ALL, elem_id="runs-kind", scale=3
        )
        refresh = gr.Button("Refresh", elem_id="runs-refresh", scale=1)
    table = gr.Dataframe(
        headers=HEADERS,
        interactive=False,
        wrap=True,
        elem_id="runs-table",
        label="Every run, newest first (click one)",
    )
    details = gr.HTML(elem_id="runs-details")
    open_button = gr.Button("Pick a run to open it", interactive=False, elem_id="runs-open")
    picked = gr.State(None)
    with gr.Accordion(
        "Export this policy as a model", open=True, visible=False, elem_id="runs-export"
    ) as export_panel:
        merge = gr.Checkbox(
            value=True,
            label="Merge into its base",
            info="A standalone transformers folder (safetensors, tokenizer, chat template) for "
            "transformers, vLLM or llama.cpp's converter; unticked: the LoRA adapter alone.",
            elem_id="runs-export-merge",
        )
        dtype = gr.Radio(
            list(EXPORT_DTYPES), value="fp32", label="Weights (merged)", elem_id="runs-export-dtype"
        )
        as_gguf = gr.Checkbox(
            value=False,
            label="Also as GGUF (model.gguf: llama.cpp, Ollama)",
            info="Llama-architecture models, fp32 or fp16; others are pointed to llama.cpp's "
            "converter.",
            elem_id="runs-export-gguf",
        )
        export_name = gr.Textbox(
            label=f"Name (written to the workspace's {MODELS_DIR}/NAME, new or empty)",
            elem_id="runs-export-name",
        )
        export_button = gr.Button("Export", elem_id="runs-export-button")
        export_message = gr.HTML(elem_id="runs-export-message")

    with gr.Accordion("Compare runs", open=False, elem_id="runs-compare"):
        compare_pick = gr.Dropdown(
            label="Runs of one stage (two or more)",
            multiselect=True,
            choices=[],
            elem_id="runs-compare-pick",
        )
        compare_button = gr.Button("Compare", elem_id="runs-compare-button")
        compare_view = gr.HTML(elem_id="runs-compare-view")
        compare_plots = step_plots(COMPARE_PLOTS, "runs-compare-plot", "run")

    picking = {
        "details": details,
        "open_button": open_button,
        "picked": picked,
        "export_panel": export_panel,
        "export_name": export_name,
        "export_message": export_message,
    }

    def on_select(evt: gr.SelectData) -> dict:
        return to_components(
            on_pick(store, int(evt.row_value[0]) if evt.row_value else None), picking
        )

    show = partial(on_refresh, store)
    listed = {"table": table, "message": message, "compare_pick": compare_pick}
    for event in (kind.input, refresh.click, demo.load, tabs.select):  # fresh on every tab
        wire(event, show, kind, listed, **NEWEST)
    table.select(on_select, None, list(picking.values()))
    opened = {
        "tabs": tabs,
        "chains_run": chains_run,
        "labels_run": labels_run,
        "pairs_source": pairs_source,
        "values_run": values_run,
        "evaluate_run": evaluate_run,
        "train_watched": train_watched,
        "message": message,
    }
    wire(open_button.click, partial(on_open, store), [picked, train_watched], opened)
    compared = {"compare_view": compare_view}
    compared |= {f"compare_plot_{n}": plot for n, plot in enumerate(compare_plots)}
    wire(compare_button.click, partial(on_compare, store), compare_pick, compared)
    wire(
        export_button.click,
        partial(on_export, store),
        [picked, merge, dtype, export_name, as_gguf],
        {"export_message": export_message},
    )
