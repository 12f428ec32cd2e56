"""Builds the studio from its tabs and launches it."""
from __future__ import annotations

import os
from pathlib import Path

import gradio as gr

from pipeline.models import DEFAULT_MODEL
from pipeline.store import Store
from studio import chains_tab, constitution_tab, playground_tab, preferences_tab, train_tab
from studio.notices import CSS

# System fonts only: the studio must render the same with no internet access.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=["ui-monospace", "monospace"])


def build_studio(workspace: str | Path | None = None, default_model: str = DEFAULT_MODEL) -> tuple[gr.Blocks, Store]:
    store = Store(workspace)
    store.seed()
    with gr.Blocks(title="Constitution Studio") as demo:
        gr.Markdown("# Constitution Studio\nWrite a constitution, then see what it does to a model.")
        with gr.Tabs() as tabs:
            with gr.Tab("Constitution", id="constitution"):
                show_principle, principle_outputs = constitution_tab.build(store, demo)
            with gr.Tab("Playground", id="playground"):
                playground_tab.build(store, demo, default_model)
            with gr.Tab("Chains", id="chains"):
                chains_tab.build(store, demo, tabs, show_principle, principle_outputs)
            with gr.Tab("Preferences", id="preferences"):
                preferences_tab.build(store, demo, default_model)
            with gr.Tab("Train", id="train"):
                train_tab.build(store, demo)
    return demo, store


def launch(host: str = "127.0.0.1", port: int = 7860, workspace: str | None = None,
           default_model: str = DEFAULT_MODEL) -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo, store = build_studio(workspace, default_model)
    demo.queue(default_concurrency_limit=4).launch(
        server_name=host, server_port=port, theme=THEME, css=CSS, head=preferences_tab.SHORTCUTS,
        allowed_paths=[str(store.workspace)], max_file_size="50mb", footer_links=["api"])
