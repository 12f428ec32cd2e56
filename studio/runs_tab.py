"""Runs tab: every run of the workspace in one table — chains, pairs, labels, training
stages, pipelines, evaluations — by readable name, with status, time and its telling
number; pick one to see where it is and open it in the tab that shows it."""

from __future__ import annotations

import html
from functools import partial
from typing import Any

import gradio as gr

from pipeline.core.errors import StudioError
from pipeline.data.store import Store
from pipeline.runner import jobs
from pipeline.runner.run_list import STAGE_NAMES, RunSummary, summaries, summarise
from studio.notices import notice
from studio.preferences_tab import STUDIO_RUN

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


def on_refresh(store: Store, kind: str) -> tuple[list[list[Any]], str]:
    runs = summaries(jobs.refresh(store), "" if kind == ALL else kind)
    note = (
        ""
        if runs
        else notice(
            "info",
            "No runs yet: launch one from the Chains, Preferences or Train tab (or Start here).",
        )
    )
    return table_rows(runs), note


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


def on_pick(store: Store, job_id: int | None) -> tuple[str, Any, int | None]:
    """(details, the Open button's label, the picked job)."""
    run = picked_run(store, job_id)
    if run is None:
        return notice("error", "That run is no longer in the workspace."), gr.update(), None
    return (
        details_html(run),
        gr.update(value=f"Open in the {TAB_TITLES[run.tab]} tab", interactive=True),
        run.job_id,
    )


def on_open(store: Store, job_id: int | None, watched: int | None) -> tuple:
    """Switch to the tab that shows the run, with the run picked there: (tabs, chains run,
    labels run, pairs source, values report, tournament, the Train tab's watched job,
    message)."""
    run, keep = picked_run(store, job_id), gr.update()
    if run is None:
        return (
            keep,
            keep,
            keep,
            keep,
            keep,
            keep,
            watched,
            notice("error", "Pick a run in the table first."),
        )
    folders = {
        kind: [j.out_dir for j in store.jobs(kind)]
        for kind in ("revise", "label", "pairs", "values-report", "evaluate")
    }
    chains = (
        gr.update(choices=folders["revise"], value=run.folder) if run.kind == "revise" else keep
    )
    labels = (
        gr.update(choices=[STUDIO_RUN, *folders["label"]], value=run.folder)
        if run.kind == "label"
        else keep
    )
    pairs = (
        gr.update(choices=["gold", *folders["pairs"]], value=run.folder)
        if run.kind == "pairs"
        else keep
    )
    values = (
        gr.update(choices=folders["values-report"], value=run.folder)
        if run.kind == "values-report"
        else keep
    )
    tournament = (
        gr.update(choices=folders["evaluate"], value=run.folder) if run.kind == "evaluate" else keep
    )
    return (
        gr.Tabs(selected=run.tab),
        chains,
        labels,
        pairs,
        values,
        tournament,
        run.job_id if run.tab == "train" else watched,
        "",
    )


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

    def on_select(evt: gr.SelectData) -> tuple:
        return on_pick(store, int(evt.row_value[0]) if evt.row_value else None)

    show = partial(on_refresh, store)
    for event in (kind.input, refresh.click):
        event(show, kind, [table, message])
    table.select(on_select, None, [details, open_button, picked])
    open_button.click(
        partial(on_open, store),
        [picked, train_watched],
        [
            tabs,
            chains_run,
            labels_run,
            pairs_source,
            values_run,
            evaluate_run,
            train_watched,
            message,
        ],
    )
    demo.load(show, kind, [table, message])
    tabs.select(show, kind, [table, message])  # fresh whenever a tab is opened
