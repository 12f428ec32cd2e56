"""One page-wide timer for every tab's watch over its jobs: one event per beat, every 2 s
while a job runs (or has just ended) and every 15 s when none does; a launch or resume
from the page, and the page's load, set the pace at once.

Why: on every status change of any event, Gradio's page re-applies the loading status of
every component any event has read, and each beat costs the browser that walk whatever its
number of handlers, and the server every tab's look at its jobs. Seven timers of their own
(five every 2 s) kept 0.7 of a core busy in Chromium with nothing running, once the tabs had
been opened; one beat every 4 s took it to 0.2 (with the Train tab's events reading one
stage's fields each: 1.0 before both), and one every 15 s to the page's own floor"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Callable

import gradio as gr

from pipeline.data.store import JobRecord, Store
from studio.wiring import by_keyword, to_components

QUICK, SLOW = 2.0, 15.0  # seconds between beats while a job runs / while none does
RECENT = 60.0  # seconds after a job ends in which a tab may still draw its last output


@dataclass
class Watch:
    """One tab's part of a beat: its handler, the components it reads and those it draws."""

    handler: Callable[..., dict[str, Any]]
    inputs: list[Any]
    outputs: dict[str, Any]


def recent(job: JobRecord, now: float) -> bool:
    """Running, or ended less than RECENT seconds ago."""
    if job.active:
        return True
    ended = job.finished_at and datetime.fromisoformat(job.finished_at).timestamp()
    return bool(ended) and now - ended < RECENT


def interval(store: Store) -> float:
    now = time.time()
    return QUICK if any(recent(job, now) for job in store.jobs()) else SLOW


class Heartbeat:
    """Tabs `watch()` while they are built; `wire()` then makes the one timer and its event."""

    def __init__(self, store: Store):
        self.store, self.watches = store, list[Watch]()
        self.timer = gr.Timer(SLOW)

    def watch(self, handler: Callable, inputs: Any, outputs: dict[str, Any]) -> None:
        """Like `wire(timer.tick, handler, inputs, outputs)`: `inputs` one component, a list
        or {parameter: component}; the handler answers by name, as everywhere."""
        if isinstance(inputs, dict):
            handler, inputs = by_keyword(handler, list(inputs)), list(inputs.values())
        elif inputs is None:
            inputs = []
        elif not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        self.watches.append(Watch(handler, list(inputs), outputs))

    def kick(self, event: Any) -> None:
        """After `event` (a launch, a resume) the page beats quickly from now on, not at the
        next slow beat: the job's progress shows at once."""
        event.then(partial(gr.Timer, QUICK), None, self.timer, show_progress="hidden")

    def wire(self, demo: gr.Blocks) -> None:
        """The timer's event; the page's load sets its pace (a job may be running)."""
        demo.load(lambda: gr.Timer(interval(self.store)), None, self.timer)
        reads = list({id(c): c for w in self.watches for c in w.inputs}.values())
        draws = list({id(c): c for w in self.watches for c in w.outputs.values()}.values())
        where = {id(c): i for i, c in enumerate(reads)}

        def beat(every: float, *values: Any) -> dict[Any, Any]:
            answer: dict[Any, Any] = {}
            for w in self.watches:
                named = w.handler(*(values[where[id(c)]] for c in w.inputs))
                answer.update(to_components(named, w.outputs))
            wanted = interval(self.store)
            if wanted != every:
                answer[self.timer] = gr.Timer(wanted)
            return answer or {self.timer: gr.skip()}

        self.timer.tick(beat, [self.timer, *reads], [self.timer, *draws])
