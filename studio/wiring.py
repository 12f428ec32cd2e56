"""Handlers answer by name: they return (or yield) {output name: value}, and the wiring turns
names into the tab's components for Gradio, which updates only the components named — the
rest stay as they are. No handler pads its answer with placeholder updates, and a test reads
`result["message"]`, not the third item of a tuple. Inputs given as {parameter: component}
reach the handler by keyword, so a form's order is written once, where it is laid out."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import gradio as gr


def to_components(values: dict[str, Any], components: dict[str, Any]) -> dict[Any, Any]:
    """{name: value} as Gradio's {component: value}; a name the wiring does not know is a
    bug in the handler, said at once."""
    unknown = sorted(set(values) - set(components))
    if unknown:
        raise KeyError(f"no output named {', '.join(unknown)} (known: {', '.join(components)})")
    return {components[name]: value for name, value in values.items()}


def as_outputs(values: dict[str, Any], components: dict[str, Any]) -> Any:
    """What Gradio is given for one answer: its components by name, or, when the handler names
    none (a tick with nothing new), one skip per output — Gradio reads an empty dict as a
    single value and fails the event."""
    return to_components(values, components) or [gr.skip()] * len(components)


def pick(components: dict[str, Any], *names: str) -> dict[str, Any]:
    """The named components of a tab, as the outputs (or inputs) of one event."""
    return {name: components[name] for name in names}


def by_keyword(handler: Callable, names: list[str]) -> Callable:
    """The handler called with Gradio's positional input values as keyword arguments, one per
    name; names the handler does not take are refused here, when the tab is built."""
    inspect.signature(handler).bind_partial(**dict.fromkeys(names))

    if inspect.isgeneratorfunction(handler):

        def stream(*values):
            yield from handler(**dict(zip(names, values)))

        return stream

    def call(*values):
        return handler(**dict(zip(names, values)))

    return call


def named(handler: Callable, components: dict[str, Any]) -> Callable:
    """The handler as Gradio calls it: the same inputs, its named outputs as components
    (a generator handler streams, each step by name)."""
    if inspect.isgeneratorfunction(handler):

        def stream(*args):
            for values in handler(*args):
                yield as_outputs(values, components)

        return stream

    def call(*args):
        return as_outputs(handler(*args), components)

    return call


# Options for an event whose answer shows what its inputs hold now (a job file's preview, a
# filtered table, a smoothed plot). Gradio ignores an `input` sent while the same event is
# still pending (its default trigger mode, "once", for every event but `change`), so a value
# typed while the page waited for the last answer was never shown (CI saw a Train field's
# new value never checked); "always_last" runs the event once more, after the pending one,
# with the newest values.
NEWEST: dict[str, Any] = {"trigger_mode": "always_last"}


def in_order(queue: str) -> dict[str, Any]:
    """Event options for handlers that read what an earlier one writes (a form's state, a
    draft): the studio runs four events at a time, so without one queue a later click could
    run before an earlier one had finished (Save before Apply) and an older answer could land
    last (a stale preview). Those of one `queue` run one at a time, in the order sent."""
    return {"concurrency_id": queue, "concurrency_limit": 1}


def wire(
    event: Callable, handler: Callable, inputs: Any, components: dict[str, Any], **options: Any
) -> Any:
    """`event(handler, inputs, outputs, **options)` for a handler that answers by name;
    `inputs` given as {parameter name: component} reach the handler by keyword."""
    if isinstance(inputs, dict):
        handler, inputs = by_keyword(handler, list(inputs)), list(inputs.values())
    return event(named(handler, components), inputs, list(components.values()), **options)
