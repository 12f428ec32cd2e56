"""Start here: the first-run panel of the landing page — what the studio does (the SL-CAI →
RL-CAI flow), the three things to try in order, and the whole pipeline in one click. It can be
dismissed (remembered in the browser) and opened again from the header."""

from __future__ import annotations

import html
from functools import partial
from typing import Any

import gradio as gr

from pipeline.core.errors import StudioError
from pipeline.data.store import Store
from studio import wiring
from studio.components.heartbeat import Heartbeat
from studio.tabs import train as train_tab

FLOW = [
    ("Constitution", "principles you write"),
    ("Chains", "the model critiques and revises its answers"),
    ("SFT", "fine-tune on the revisions (SL-CAI)"),
    ("Pairs + AI labels", "two answers, judged under the constitution"),
    ("Preference model", "learns the AI labels"),
    ("PPO / DPO", "RL against it (RL-CAI)"),
    ("Evaluate", "before / after on held-out prompts"),
]

STEPS = [
    (
        "start-edit",
        "constitution",
        "1. Edit a principle",
        "Open a principle of the constitution, change its wording, Apply.",
    ),
    (
        "start-chain",
        "chains",
        "2. Run a chain",
        "Pick a red-team prompt and watch the model critique and revise its answer.",
    ),
    (
        "start-score",
        "preferences",
        "3. Score a pair",
        "Pick a gold pair and see which answer the AI judge prefers — and whether to trust it.",
    ),
]

STORAGE_KEY = "constitution-studio-start-here-dismissed"


def flow_html() -> str:
    """The CAI flow as a row of boxes."""
    boxes = "<span class='flow-arrow'>→</span>".join(
        f"<div class='flow-box'><b>{html.escape(name)}</b><br><small>{html.escape(what)}</small>"
        "</div>"
        for name, what in FLOW
    )
    return (
        f"<div class='start-flow' role='img' aria-label='The Constitutional AI pipeline'>"
        f"{boxes}</div>"
    )


def intro_html() -> str:
    return (
        "<p><b>Constitution Studio</b> shows what a constitution does to a model: write "
        "principles, watch the model critique and revise itself under them (SL-CAI), watch an "
        "AI judge pick between answers under them (RLAIF), then train on both (RL-CAI) — "
        "with every label and metric next to what it means.</p>" + flow_html()
    )


def on_dismiss() -> dict[str, Any]:
    """Hide the panel and remember that in the browser."""
    return {"panel": gr.update(visible=False), "dismissed": True}


def on_show() -> dict[str, Any]:
    return {"panel": gr.update(visible=True), "dismissed": False}


def on_page_load(dismissed: bool | None) -> dict:
    return gr.update(visible=not dismissed)


def on_pipeline(store: Store) -> dict[str, Any]:
    """Launch the tiny pipeline and open the Train tab on it (by name: message, tabs, the job
    the Train tab watches, the job the banner announces). The tab's form then shows the
    pipeline's own stage (see `wire`)."""
    text, job_id = train_tab.launch_pipeline(store)
    if job_id is None:
        return {"message": text, "launched": None}
    return {
        "message": text,
        "tabs": gr.Tabs(selected="train"),
        "watched": job_id,
        "launched": job_id,
    }


def on_banner_tick(store: Store, job_id: int | None) -> dict[str, Any]:
    """The 'launched' banner lasts while its job runs: once the job has ended (finished,
    failed or cancelled) it is cleared, as the Train tab holds the outcome."""
    if job_id is None:
        return {}
    try:
        job = store.job(job_id)
    except StudioError:
        return {"message": "", "launched": None}
    return {} if job.active else {"message": "", "launched": None}


def build() -> tuple[gr.Column, dict[str, gr.Button], gr.Button, gr.Button, gr.BrowserState]:
    """Lay out the panel (hidden until the page load says it was not dismissed); returns the
    panel, the step buttons by tab id, the pipeline button, the dismiss button and the
    remembered dismissal."""
    dismissed = gr.BrowserState(False, storage_key=STORAGE_KEY)
    with gr.Column(visible=False, elem_id="start-here", elem_classes="start-here") as panel:
        gr.HTML(intro_html())
        steps = {}
        with gr.Row():
            for elem_id, tab, title, text in STEPS:
                with gr.Column(min_width=200):
                    steps[tab] = gr.Button(title, elem_id=elem_id, variant="secondary")
                    gr.Markdown(text)
        with gr.Row():
            pipeline = gr.Button(
                "Run the whole pipeline (tiny preset) on the constitution being edited",
                variant="primary",
                elem_id="start-pipeline",
            )
            dismiss = gr.Button("Dismiss (reopen with “Start here” above)", elem_id="start-dismiss")
    return panel, steps, pipeline, dismiss, dismissed


def wire(
    store: Store,
    demo: gr.Blocks,
    tabs: gr.Tabs,
    panel: gr.Column,
    steps: dict[str, gr.Button],
    pipeline: gr.Button,
    dismiss: gr.Button,
    dismissed: gr.BrowserState,
    reopen: gr.Button,
    message: gr.HTML,
    train: train_tab.TrainView,
    beat: Heartbeat,
) -> None:
    """Each step opens its tab; the pipeline button launches and lands on the pipeline's own
    view in the Train tab (its form, its stage table); dismiss and reopen."""
    for tab_id, button in steps.items():
        button.click(partial(gr.Tabs, selected=tab_id), None, tabs)
    launched = gr.State(None)  # the pipeline job the banner announces
    announced = {"message": message, "launched": launched}
    clicked = wiring.wire(
        pipeline.click,
        partial(on_pipeline, store),
        None,
        {**announced, "tabs": tabs, "watched": train.watched},
    )
    beat.kick(clicked)
    wiring.wire(
        clicked.then,
        partial(train_tab.on_show_stage, store, "run-all"),
        train.previewed,
        train.form,
        show_progress_on=train.form["description"],  # not on every field: see the Train tab
    )
    beat.watch(partial(on_banner_tick, store), launched, announced)
    wiring.wire(dismiss.click, on_dismiss, None, {"panel": panel, "dismissed": dismissed})
    wiring.wire(reopen.click, on_show, None, {"panel": panel, "dismissed": dismissed})
    demo.load(on_page_load, dismissed, panel)
