"""A row of hidden metric plots (step on x), filled and shown by the handlers that own them."""

from __future__ import annotations

import gradio as gr


def step_plots(count: int, prefix: str, color: str) -> list[gr.LinePlot]:
    """`count` line plots in one row, `#PREFIX-N`, one line per value of the `color` column."""
    with gr.Row():
        return [
            gr.LinePlot(
                x="step",
                y="value",
                color=color,
                visible=False,
                elem_id=f"{prefix}-{n}",
                min_width=300,
            )
            for n in range(count)
        ]
