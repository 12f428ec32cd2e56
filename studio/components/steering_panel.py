"""The Steering accordion of the Playground and the Chains tab: a direction (read from the
constitution picked in the tab, or a saved one from `steer extract`), the layers, and a
coefficient slider (0 = off); a sweep answers the same prompt at five coefficients side by
side, flagging answers that break down; each layer's accuracy on labelled pairs is drawn as
a curve, so layers are picked from evidence."""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from pipeline.config.commands import SteerExtractJob
from pipeline.config.settings import SamplingConfig
from pipeline.core.errors import ConfigError, StudioError
from pipeline.data.constitution import content_hash
from pipeline.data.prompts import load_prompts
from pipeline.data.store import Store
from pipeline.model.engines import backend_for
from pipeline.model.loading import LoadedModel
from pipeline.model.steering import (
    COEFFICIENT_LIMIT,
    DIRECTION_DIR,
    LINEAGE_FILE,
    Direction,
    Steering,
    base_name,
    load_direction,
    parse_layers,
    sweep,
    sweep_coefficients,
)
from pipeline.steering.extraction import extract_from_constitution, with_reading
from pipeline.values.features import labelled_in
from studio.components.notices import error_notice, notice

FROM_CONSTITUTION = "from the constitution picked in this tab"
READ_ON = "gold"  # the labelled pairs a layer curve is read on

_cache: dict[tuple[str, str], Direction] = {}  # (model, constitution hash) → its direction
_lock = threading.Lock()


def direction_choices(store: Store) -> list[str]:
    """The constitution of the tab, then every direction a finished `steer extract` saved."""
    return [FROM_CONSTITUTION, *store.trained(("steer-extract",), DIRECTION_DIR, LINEAGE_FILE)]


def constitution_direction(store: Store, loaded: LoadedModel, name: str | None) -> Direction:
    """The direction of the constitution as being edited, read once per model and content."""
    if not name:
        raise ConfigError(
            "Pick a constitution in this tab to steer by it, or pick a saved direction."
        )
    constitution = store.working(name)
    key = (base_name(loaded), content_hash(constitution))
    with _lock:
        if key not in _cache:
            job = SteerExtractJob()
            prompts = [p.prompt for p in load_prompts(job.prompts, "train")][: job.limit]
            _cache[key] = extract_from_constitution(
                loaded, constitution, prompts, method=job.method
            )
        return _cache[key]


def of_constitution(choice: str | None) -> bool:
    """Whether the picker asks for the tab's constitution (the default) or a saved direction."""
    return not choice or choice == FROM_CONSTITUTION


def chosen_direction(
    store: Store, loaded: LoadedModel, choice: str | None, constitution_name: str | None
) -> Direction:
    if of_constitution(choice):
        return constitution_direction(store, loaded, constitution_name)
    return load_direction(choice, loaded)


def steering_for(
    store: Store,
    loaded: LoadedModel,
    choice: str | None,
    constitution_name: str | None,
    layers_text: str,
    coefficient: float,
) -> Steering | None:
    """The steering the accordion asks for; None while the coefficient is 0 (off)."""
    if not coefficient:
        return None
    direction = chosen_direction(store, loaded, choice, constitution_name)
    layers = parse_layers(layers_text) or [direction.middle_layer]
    return Steering(direction, float(coefficient), tuple(layers))


def readings_frame(direction: Direction) -> pd.DataFrame:
    rows = []
    for r in direction.reading:
        rows.append({"layer": r.layer, "accuracy": r.accuracy, "series": "accuracy"})
        if r.controlled is not None:
            rows.append({"layer": r.layer, "accuracy": r.controlled, "series": "length-controlled"})
    return pd.DataFrame(rows, columns=["layer", "accuracy", "series"])


def reading_note(direction: Direction) -> str:
    best = max(direction.reading, key=lambda r: (r.accuracy, -r.layer))
    sample = (
        " These are the pairs it was extracted from, so the curve is optimistic."
        if direction.in_sample
        else ""
    )
    return notice(
        "info",
        f"{direction.summary}. Each point: how often projecting a pair's two "
        f"answers on that layer's direction picks the one people preferred "
        f"({direction.read_on} pairs; 50% is a coin flip). Best: layer "
        f"{best.layer}, {best.accuracy:.0%} ({best.low:.0%}–{best.high:.0%}). "
        "Gold pairs favour the longer answer; the length-controlled line "
        f"removes that.{sample}",
    )


def on_read_layers(
    store: Store, model_name: str, choice: str | None, constitution_name: str | None
) -> dict[str, Any]:
    """The direction's accuracy at every layer: its curve and a note, by name."""
    try:
        loaded = backend_for(model_name).loaded
        direction = chosen_direction(store, loaded, choice, constitution_name)
        if not direction.reading:
            direction = with_reading(loaded, direction, labelled_in(READ_ON, store), READ_ON)
            if of_constitution(choice):  # kept under the key it was read with: model, content
                with _lock:
                    _cache[(direction.model, direction.source_hash)] = direction
        return {"curve": readings_frame(direction), "note": reading_note(direction)}
    except StudioError as exc:
        return {"note": error_notice(exc)}


def sweep_html(prompt: str, steering_text: str, answers) -> str:
    cards = []
    for a in answers:
        flag = (
            f'<p class="chain-failed">breaks down: {html.escape(a.problem)}</p>'
            if a.problem
            else ""
        )
        limit = (
            '<p class="chain-label">stopped at the token limit</p>'
            if a.finish_reason == "length"
            else ""
        )
        title = "off (0)" if a.coefficient == 0 else f"{a.coefficient:+g}"
        cards.append(
            f'<div class="chain-card sweep-card" data-coefficient="{a.coefficient:g}">'
            f"<b>{title}</b><p>{html.escape(a.text) or '<em>(empty)</em>'}</p>"
            f"{flag}{limit}</div>"
        )
    return (
        f'<div class="sweep"><p class="chain-label">{html.escape(prompt)} · '
        f"{html.escape(steering_text)} · same seed</p>"
        f'<div class="sweep-row">{"".join(cards)}</div></div>'
    )


def on_sweep(
    store: Store,
    model_name: str,
    prompt: str,
    system: str,
    choice: str | None,
    constitution_name: str | None,
    layers_text: str,
    coefficient: float,
    config: SamplingConfig,
) -> tuple[str, str]:
    """(five answers side by side, message)."""
    if not (prompt or "").strip():
        return "", notice("error", "Type a message (or send one) to sweep.")
    try:
        backend = backend_for(model_name)
        direction = chosen_direction(store, backend.loaded, choice, constitution_name)
        layers = tuple(parse_layers(layers_text) or [direction.middle_layer])
        Steering(direction, 1.0, layers)  # refuses bad layers before generating
        messages = (
            [{"role": "system", "content": system.strip()}] if (system or "").strip() else []
        ) + [{"role": "user", "content": prompt.strip()}]
        answers = sweep(
            backend, messages, direction, layers, sweep_coefficients(coefficient), config
        )
    except StudioError as exc:
        return "", error_notice(exc)
    text = (
        f"{direction.method} direction from {direction.source}, layer"
        f"{'s' if len(layers) > 1 else ''} {', '.join(map(str, layers))}"
    )
    broken = [a for a in answers if a.problem]
    note = (
        notice(
            "error",
            f"{len(broken)} of {len(answers)} answers break down (at "
            f"{', '.join(f'{a.coefficient:+g}' for a in broken)}): too strong a "
            "push for these layers.",
        )
        if broken
        else ""
    )
    return sweep_html(prompt.strip(), text, answers), note


@dataclass
class SteeringControls:
    direction: gr.Dropdown
    layers: gr.Textbox
    coefficient: gr.Slider
    read: gr.Button
    sweep: gr.Button
    curve: gr.LinePlot
    note: gr.HTML
    swept: gr.HTML

    @property
    def inputs(self) -> list:
        """What a handler needs to steer: the direction, layers and coefficient."""
        return [self.direction, self.layers, self.coefficient]

    @property
    def by_name(self) -> dict[str, Any]:
        """The same, by the parameter names the steering handlers take."""
        return {
            "steer_choice": self.direction,
            "steer_layers": self.layers,
            "coefficient": self.coefficient,
        }

    @property
    def readings(self) -> dict[str, Any]:
        """Where `on_read_layers` answers."""
        return {"curve": self.curve, "note": self.note}


def build(store: Store, prefix: str) -> SteeringControls:
    """Lay out the accordion (inside a tab's build); the tab wires run and sweep events."""
    with gr.Accordion(
        "Steering (add a direction to the model's hidden states)",
        open=False,
        elem_id=f"{prefix}-steering",
    ):
        direction = gr.Dropdown(
            label="Direction",
            choices=[FROM_CONSTITUTION],
            value=FROM_CONSTITUTION,
            elem_id=f"{prefix}-steer-direction",
            info="read from the constitution picked in this tab (its "
            "principles followed vs opposed), or a saved one",
        )
        direction.focus(lambda: gr.update(choices=direction_choices(store)), None, direction)
        layers = gr.Textbox(
            label="Layers",
            placeholder="empty = the middle layer",
            elem_id=f"{prefix}-steer-layers",
            info="comma-separated, 1 (first block) to the last; read the curve to choose",
        )
        coefficient = gr.Slider(
            -COEFFICIENT_LIMIT,
            COEFFICIENT_LIMIT,
            value=0,
            step=0.5,
            label="coefficient (0 = off; + toward the constitution, − away)",
            elem_id=f"{prefix}-steer-coefficient",
        )
        with gr.Row():
            read = gr.Button("Read each layer on the gold pairs", elem_id=f"{prefix}-steer-read")
            sweep_button = gr.Button(
                "Sweep: 5 coefficients side by side", elem_id=f"{prefix}-steer-sweep"
            )
        note = gr.HTML(elem_id=f"{prefix}-steer-note")
        curve = gr.LinePlot(
            x="layer",
            y="accuracy",
            color="series",
            y_lim=[0, 1],
            label="Direction accuracy on labelled pairs, by layer",
            elem_id=f"{prefix}-steer-curve",
        )
        swept = gr.HTML(elem_id=f"{prefix}-steer-swept")
    return SteeringControls(direction, layers, coefficient, read, sweep_button, curve, note, swept)
