"""Chains tab: watch critique–revision chains build, compare constitutions side by side,
launch the dataset job in the background and browse finished chains."""

from __future__ import annotations

import functools
import html
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from pipeline.cai.critique import (
    Chain,
    ChainLog,
    ChainRequest,
    RevisionRound,
    batch_quality,
    chain_quality,
    chain_step,
    principle_stats,
    run_chains,
)
from pipeline.config.commands import ReviseJob, build_job, to_argv
from pipeline.config.settings import (
    DEFAULT_MODEL,
    DEFAULT_SAMPLING,
    ChainConfig,
    SamplingConfig,
)
from pipeline.core.errors import StudioError
from pipeline.data.prompts import PromptRecord, load_prompts
from pipeline.data.store import JobRecord, Store
from pipeline.model.engines import backend_for, engine_note
from pipeline.model.steering import SteeredBackend
from pipeline.runner import jobs
from pipeline.runner.run_list import duration_text
from studio.components import steering_panel
from studio.components.choices import (
    constitution_choices,
    default_choice,
    engine_choice,
    offer_models,
    resolve_choice,
)
from studio.components.diff_view import side_by_side
from studio.components.heartbeat import Heartbeat
from studio.components.job_panel import (
    cancel_notice,
    job_bar,
    job_buttons,
    latest_job,
    resume_notice,
    writing_now,
)
from studio.components.notices import error_notice, notice
from studio.wiring import NEWEST, pick, wire

NONE = "(none)"
TABLE_HEADERS = ["id", "category", "principles", "failed", "refuses", "change", "Δ words"]


def _text(value: str | None) -> str:
    if value is None:
        return '<span class="chain-pending">generating…</span>'
    return html.escape(value) if value.strip() else "<em>(empty)</em>"


def draw_note(rnd: RevisionRound) -> str:
    """How the round's principle was chosen, so an odd pick for the prompt reads as what it
    is: a weighted random draw."""
    if not rnd.pool_weight:
        return "drawn at random, weighted"
    return f"drawn at random (weight {rnd.weight:g} of {rnd.pool_weight:g}) from {rnd.pool}"


def round_html(n: int, rnd: RevisionRound, current: str, last: bool) -> str:
    """One round, folded unless it is the last: the principle and how it was drawn, the
    critique, and the revision beside the answer it revised."""
    badge = (
        f' <span class="chain-failed">failed: {html.escape(rnd.failure)}</span>'
        if rnd.failed
        else ""
    )
    if rnd.revision is None or rnd.failed:
        revision = f"<p>{_text(rnd.revision)}</p>"
    else:
        revision = side_by_side(current, rnd.revision, "answer before this round", "revision")
    return (
        f'<details class="chain-card chain-round" data-principle="{html.escape(rnd.principle_id)}"'
        f"{' open' if last else ''}><summary><b>Round {n} · principle "
        f"<code>{html.escape(rnd.principle_id)}</code></b>{badge} "
        f'<span class="chain-draw">{html.escape(draw_note(rnd))}</span></summary>'
        f'<p class="chain-label">Critique request</p><p>{html.escape(rnd.critique_request)}</p>'
        f'<p class="chain-label">Critique</p><p>{_text(rnd.critique)}</p>'
        f'<p class="chain-label">Revision request</p><p>{html.escape(rnd.revision_request)}</p>'
        f'<p class="chain-label">Revision</p>{revision}</details>'
    )


def signals_html(chain: Chain) -> str:
    """The side panel: the principles drawn and, once done, the chain's signals."""
    drawn = "".join(
        f"<li><code>{html.escape(r.principle_id)}</code> — {html.escape(draw_note(r))}"
        f"{' · failed' if r.failed else ''}</li>"
        for r in chain.rounds
    )
    parts = [
        f'<div class="chain-side"><b>Principles drawn</b><ul>{drawn or "<li>none yet</li>"}</ul>'
    ]
    if chain.done:
        q = chain_quality(chain)
        meta = (
            (
                '<p class="chain-failed" data-flag="meta">the final answer talks about the '
                "response instead of answering</p>"
            )
            if q.meta
            else ""
        )
        parts.append(
            f'<b>Signals</b><p class="chain-signals">refuses: {"yes" if q.refuses else "no"}'
            f"<br>changed {q.change:.0%} of the initial answer<br>length "
            f"{q.length_change:+d} words<br>{q.failed_rounds} failed round(s)</p>{meta}"
        )
    return "".join(parts) + "</div>"


def chain_html(chain: Chain, title: str) -> str:
    """One chain: the prompt, answers and rounds on the left (earlier rounds folded), the
    principles drawn and the signals on the right."""
    parts = [f'<div class="chain"><h3>{html.escape(title)}</h3>']
    if chain.truncated:
        parts.append(
            notice(
                "error",
                "The prompt was too long for the model's context and was "
                "cut; the chain below used the shortened prompt.",
            )
        )
    parts.append('<div class="chain-body"><div class="chain-main">')
    parts.append(f'<div class="chain-card"><b>Prompt</b><p>{html.escape(chain.prompt)}</p></div>')
    parts.append(
        f'<div class="chain-card"><b>Initial answer</b><p>{_text(chain.initial_answer)}</p></div>'
    )
    current = chain.initial_answer or ""
    for n, rnd in enumerate(chain.rounds, 1):
        parts.append(round_html(n, rnd, current, last=n == len(chain.rounds)))
        if rnd.revision is not None and not rnd.failed:
            current = rnd.revision
    if chain.done:
        parts.append(
            f'<div class="chain-card chain-final"><b>Final answer</b>'
            f"<p>{_text(chain.final_answer)}</p></div>"
        )
    parts.append(f"</div>{signals_html(chain)}</div></div>")
    return "".join(parts)


def chain_rows(chains: list[Chain]) -> list[list]:
    rows = []
    for c in chains:
        q = chain_quality(c)
        rows.append(
            [
                c.id,
                c.category,
                ", ".join(r.principle_id for r in c.rounds),
                q.failed_rounds,
                "yes" if q.refuses else "no",
                f"{q.change:.0%}",
                q.length_change,
            ]
        )
    return rows


def batch_summary(chains: list[Chain]) -> str:
    """Per-batch quality: refusal rate, how much answers changed, and per-principle draws."""
    if not chains:
        return notice("info", "No finished chains in this run yet.")
    q = batch_quality(chains)
    rows = "".join(
        f"<tr><td><code>{html.escape(s.principle_id)}</code></td><td>{s.drawn}</td>"
        f"<td>{s.failed} ({s.failure_rate:.0%})</td></tr>"
        for s in principle_stats(chains)
    )
    return (
        f'<div class="chain-summary"><p>{q.chains} chains · final answers refuse in '
        f"{q.refusal_rate:.0%} · mean change {q.mean_change:.0%} · mean length change "
        f"{q.mean_length_change:+.1f} words · {q.failed_rounds} failed rounds · "
        f"{q.truncated} truncated prompts</p>"
        f"<table><tr><th>principle</th><th>drawn</th><th>failed</th></tr>{rows}</table></div>"
    )


# --- handlers: the store and plain values in, plain values and gr.update out (tested) -------


@functools.lru_cache(maxsize=1)
def red_team_examples() -> dict[str, PromptRecord]:
    """Dropdown label → prompt record, for the held-out red-team prompts."""
    return {f"[{r.category}] {r.prompt}": r for r in load_prompts("red-team", "test")}


def on_example(choice: str | None) -> str:
    record = red_team_examples().get(choice or "")
    return record.prompt if record else ""


def prompt_record(text: str) -> PromptRecord:
    """The prompt on screen as a record; an example's category comes with it (so relevant
    principles can be drawn for it)."""
    category = next((r.category for r in red_team_examples().values() if r.prompt == text), "")
    return PromptRecord(id="studio", prompt=text, category=category or "studio")


def run_choices(store: Store) -> Any:
    folders = [j.out_dir for j in store.jobs("revise")]
    return gr.update(choices=folders, value=folders[0] if folders else None)


def latest(store: Store) -> JobRecord | None:
    return latest_job(store, ("revise",))


def on_page_load(store: Store) -> dict[str, Any]:
    return {
        "constitution_a": gr.update(
            choices=constitution_choices(store), value=default_choice(store)
        ),
        "constitution_b": gr.update(choices=[NONE, *constitution_choices(store)], value=NONE),
        "progress": job_bar(latest(store), "chains"),
        "run_folder": run_choices(store),
    }


def run_progress(done: int, steps: int, rounds: int, elapsed: float, engine: str = "") -> str:
    """What a live chain is generating next (and on which engine), and an estimate from the
    steps done so far (nothing once it is finished)."""
    if done >= steps:
        return ""
    left = elapsed / done * (steps - done)
    return notice(
        "info",
        f"Generating {chain_step(done, rounds)} (step {done + 1} of {steps})"
        f"{' ' + engine if engine else ''} · "
        f"elapsed {duration_text(elapsed)} · remaining about {duration_text(left)}",
    )


def on_run(
    store: Store,
    text: str,
    name_a: str,
    name_b: str,
    model_name: str,
    n_rounds: float,
    use_few_shot: bool,
    relevant: bool,
    new_tokens: float,
    temp: float,
    seed_value: float,
    steer_choice: str | None = None,
    steer_layers: str = "",
    coefficient: float = 0.0,
    engine: str = "auto",
) -> Iterator:
    """One prompt's chain under one constitution (or two side by side), streamed stage by
    stage, by name (view_a, view_b, principle: the principles used, message); view B shows
    only when used.
    A steering coefficient other than 0 steers every step the model writes (the direction
    read from the first constitution, or a saved one). `engine`: fp32, int8 or auto (see
    pipeline.model.engines); the progress line says which one runs."""
    if not text or not text.strip():
        yield {"view_a": "", "message": notice("error", "Type or pick a prompt first.")}
        return
    try:
        labels = [name_a] + ([name_b] if name_b and name_b != NONE else [])
        requests = [ChainRequest(prompt_record(text), resolve_choice(store, n)) for n in labels]
        config = ChainConfig(
            rounds=int(n_rounds),
            few_shot=bool(use_few_shot),
            batch_size=len(requests),
            relevant_only=bool(relevant),
        )
        sampling = SamplingConfig(
            max_new_tokens=int(new_tokens), temperature=float(temp), seed=int(seed_value or 0)
        )
        yield {"message": notice("info", f"Loading the model {model_name}…")}
        steered, greedy = bool(coefficient), sampling.temperature == 0
        backend = backend_for(model_name, engine=engine, steered=steered, greedy=greedy, live=True)
        on = engine_note(engine, backend.loaded, steered, greedy, live=True)
        steering = steering_panel.steering_for(
            store, backend.loaded, steer_choice, name_a, steer_layers, coefficient
        )
        if steering:
            backend = SteeredBackend(backend, steering)
        started, steps = time.monotonic(), 2 * config.rounds + 1
        for done, chains in enumerate(run_chains(backend, requests, config, sampling), 1):
            views = [
                chain_html(c, f"{label} ({c.constitution_hash[:8]})")
                for c, label in zip(chains, labels)
            ]
            used = sorted(
                {f"{c.constitution_name}:{r.principle_id}" for c in chains for r in c.rounds}
            )
            yield {
                "view_a": views[0],
                "view_b": gr.update(
                    value=views[1] if len(views) > 1 else "", visible=len(views) > 1
                ),
                "principle": gr.update(choices=used, value=used[0] if used else None),
                "message": run_progress(done, steps, config.rounds, time.monotonic() - started, on),
            }
    except StudioError as exc:
        yield {"message": error_notice(exc)}


def on_sweep(
    store: Store,
    model_name: str,
    text: str,
    name: str | None,
    new_tokens: float,
    temp: float,
    seed_value: float,
    steer_choice: str | None,
    steer_layers: str,
    coefficient: float,
) -> tuple[str, str]:
    """The prompt's first answer (the chain's start) at five coefficients side by side."""
    try:
        config = SamplingConfig(
            max_new_tokens=int(new_tokens), temperature=float(temp), seed=int(seed_value or 0)
        )
    except StudioError as exc:
        return "", error_notice(exc)
    return steering_panel.on_sweep(
        store, model_name, text, "", steer_choice, name, steer_layers, coefficient, config
    )


def revise_args(
    store: Store,
    name: str,
    chosen_set: str,
    chosen_split: str,
    n: float,
    n_rounds: float,
    use_few_shot: bool,
    relevant: bool,
    new_tokens: float,
    temp: float,
    seed_value: float,
    model_name: str,
    out: Path,
    engine: str = "fp32",
) -> list[str]:
    """The batch job's command line; the job reads the constitution as it is being edited,
    frozen into its run folder."""
    path = jobs.freeze_constitution(resolve_choice(store, name), out)
    job = build_job(
        ReviseJob,
        {
            "constitution": str(path),
            "prompts": chosen_set,
            "limit": int(n or 0),
            "split": "" if chosen_split == "all" else chosen_split,
            "rounds": int(n_rounds),
            "few_shot": bool(use_few_shot),
            "relevant_only": bool(relevant),
            "max_new_tokens": int(new_tokens),
            "temperature": float(temp),
            "seed": int(seed_value or 0),
            "model": model_name,
            "engine": engine,
        },
    )
    return to_argv("revise", job, out)


def on_launch(
    store: Store,
    name,
    chosen_set,
    chosen_split,
    n,
    n_rounds,
    use_few_shot,
    relevant,
    new_tokens,
    temp,
    seed_value,
    model_name,
    engine="fp32",
) -> dict[str, Any]:
    if not name:
        return {"message": notice("error", "Pick a constitution first.")}
    out = store.new_run_folder("chains")
    try:
        args = revise_args(
            store,
            name,
            chosen_set,
            chosen_split,
            n,
            n_rounds,
            use_few_shot,
            relevant,
            new_tokens,
            temp,
            seed_value,
            model_name,
            out,
            engine,
        )
        job = jobs.launch(store, "revise", args, out)
    except StudioError as exc:
        return {"message": error_notice(exc)}
    return {
        "message": notice("ok", f"Launched job {job.id}: chains into {out}."),
        "run_folder": run_choices(store),
    }


BROWSED = ("summary", "table", "filter_principle", "filter_category")  # what browse fills


def browse(folder: str | None, pid: str, category: str, only_failed: bool) -> dict[str, Any]:
    """A run's chains, filtered: its summary, table rows, principle and category choices."""
    try:
        chains = ChainLog(folder).read() if folder else []
    except StudioError as exc:
        return {"summary": error_notice(exc), "table": []}
    shown = [
        c
        for c in chains
        if (pid == NONE or any(r.principle_id == pid for r in c.rounds))
        and (category == NONE or c.category == category)
        and (not only_failed or any(r.failed for r in c.rounds))
    ]
    principles = sorted({r.principle_id for c in chains for r in c.rounds})
    categories = sorted({c.category for c in chains})
    return {
        "summary": batch_summary(chains),
        "table": chain_rows(shown),
        "filter_principle": gr.update(choices=[NONE, *principles]),
        "filter_category": gr.update(choices=[NONE, *categories]),
    }


def on_timer(store: Store, folder, pid, category, only_failed) -> dict[str, Any]:
    """Progress every tick; the chain table only while the job writing it runs."""
    job = latest(store)
    bar = job_bar(job, "chains")
    if writing_now(job):
        return {"progress": bar, **browse(folder, pid, category, only_failed)}
    return {"progress": bar}


def on_cancel(store: Store, confirmed: int | None) -> dict[str, Any]:
    return cancel_notice(store, latest(store), "No batch job is running.", confirmed=confirmed)


def on_resume(store: Store) -> dict[str, Any]:
    text, again = resume_notice(store, latest(store), "done chains are skipped.")
    return {"message": text, **({"run_folder": run_choices(store)} if again else {})}


def open_chain(folder: str | None, chain_id: str | None) -> str:
    chains = {c.id: c for c in ChainLog(folder).read()} if folder else {}
    chain = chains.get(chain_id) if chain_id else None
    if chain is None:
        return notice("error", "That chain is no longer in this run.")
    return chain_html(chain, f"Chain {chain.id} · {chain.constitution_name}")


def build(
    store: Store,
    demo: gr.Blocks,
    tabs: gr.Tabs,
    show_principle: Callable[[str, str], dict],
    show_outputs: list,
    beat: Heartbeat,
) -> gr.Dropdown:
    """Lay out the tab and wire its events. `show_principle(constitution, principle_id)`
    returns the updates (to `show_outputs`) that show a principle in the Constitution tab.
    Returns the run picker, so another tab can open a run here."""
    message = gr.HTML(elem_id="chains-message")
    with gr.Row():
        with gr.Column(scale=1):
            example = gr.Dropdown(
                label="Pick a red-team prompt",
                choices=list(red_team_examples()),
                value=None,
                elem_id="chains-example",
            )
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id="chains-prompt")
            constitution_a = gr.Dropdown(
                label="Constitution", choices=[], elem_id="chains-constitution-a"
            )
            constitution_b = gr.Dropdown(
                label="Side by side with (optional)",
                choices=[NONE],
                value=NONE,
                elem_id="chains-constitution-b",
            )
            model = gr.Dropdown(
                label="Model",
                choices=[DEFAULT_MODEL],
                value=DEFAULT_MODEL,
                allow_custom_value=True,
                elem_id="chains-model",
            )
            offer_models(store, model, DEFAULT_MODEL)
            rounds = gr.Slider(
                1, 6, value=ChainConfig.rounds, step=1, label="rounds", elem_id="chains-rounds"
            )
            few_shot = gr.Checkbox(value=True, label="prepend few-shot chains")
            relevant_only = gr.Checkbox(
                value=False,
                elem_id="chains-relevant",
                label="relevant principles only (those tagged with the prompt's category)",
            )
            max_new_tokens = gr.Slider(
                16,
                512,
                value=96,
                step=16,
                label="max new tokens per step",
                elem_id="chains-max-tokens",
            )
            temperature = gr.Slider(
                0,
                1.5,
                value=DEFAULT_SAMPLING.temperature,
                step=0.05,
                label="temperature (0 = greedy)",
            )
            seed = gr.Number(value=0, precision=0, label="seed")
            engine = engine_choice(
                "chains",
                "decodes ~4.6× faster on a CPU on short prompts; auto runs a chain's long "
                "ones on fp32, faster there",
            )
            steer = steering_panel.build(store, "chains")
            with gr.Row():
                run = gr.Button("Run chain", variant="primary", elem_id="chains-run")
                stop = gr.Button("Stop", elem_id="chains-stop")
        with gr.Column(scale=3):
            with gr.Row():
                view_a = gr.HTML(elem_id="chains-view-a")
                view_b = gr.HTML(elem_id="chains-view-b", visible=False)
            with gr.Row():
                principle = gr.Dropdown(
                    label="Principle used in this chain",
                    choices=[],
                    elem_id="chains-principle",
                    scale=3,
                )
                open_principle = gr.Button(
                    "Open in Constitution tab", elem_id="chains-open-principle", scale=1
                )

    with gr.Accordion("Batch: build the SL-CAI dataset in the background", open=True):
        with gr.Row():
            prompt_set = gr.Dropdown(
                label="Prompt set",
                choices=["red-team", "helpful"],
                value="red-team",
                elem_id="batch-set",
            )
            split = gr.Dropdown(
                label="Split",
                choices=["train", "test", "all"],
                value="train",
                elem_id="batch-split",
            )
            limit = gr.Number(
                value=8, precision=0, label="prompts (0 = all)", elem_id="batch-limit"
            )
            launch = gr.Button("Launch batch job", variant="primary", elem_id="batch-launch")
            cancel, resume = job_buttons("batch")
        progress = gr.HTML(elem_id="batch-progress")
        with gr.Row():
            run_folder = gr.Dropdown(label="Run", choices=[], elem_id="batch-run", scale=3)
            filter_principle = gr.Dropdown(
                label="Principle", choices=[NONE], value=NONE, elem_id="batch-filter-principle"
            )
            filter_category = gr.Dropdown(
                label="Category", choices=[NONE], value=NONE, elem_id="batch-filter-category"
            )
            failed_only = gr.Checkbox(
                label="only chains with failed rounds", elem_id="batch-failed"
            )
        summary = gr.HTML(elem_id="batch-summary")
        table = gr.Dataframe(
            headers=TABLE_HEADERS,
            interactive=False,
            wrap=True,
            elem_id="batch-table",
            label="Finished chains (click to open)",
        )
        chain_view = gr.HTML(elem_id="batch-chain")

    def on_open_principle(choice: str | None) -> dict:
        if not choice:
            return {message: notice("error", "Run a chain first, then pick one of its principles.")}
        name, _, pid = choice.rpartition(":")
        return {**show_principle(name, pid), tabs: gr.Tabs(selected="constitution")}

    def on_open_chain(folder: str | None, evt: gr.SelectData) -> str:
        return open_chain(folder, evt.row_value[0] if evt.row_value else None)

    example.input(on_example, example, prompt, **NEWEST)
    run_inputs = {
        "text": prompt,
        "name_a": constitution_a,
        "name_b": constitution_b,
        "model_name": model,
        "n_rounds": rounds,
        "use_few_shot": few_shot,
        "relevant": relevant_only,
        "new_tokens": max_new_tokens,
        "temp": temperature,
        "seed_value": seed,
        "engine": engine,
        **steer.by_name,
    }
    views = {
        "view_a": view_a,
        "view_b": view_b,
        "principle": principle,
        "message": message,
        "run_folder": run_folder,
        "progress": progress,
        "summary": summary,
        "table": table,
        "filter_principle": filter_principle,
        "filter_category": filter_category,
    }

    to = partial(pick, views)

    running = wire(
        run.click,
        partial(on_run, store),
        run_inputs,
        to("view_a", "view_b", "principle", "message"),
    )
    wire(
        steer.read.click,
        partial(steering_panel.on_read_layers, store),
        [model, steer.direction, constitution_a],
        steer.readings,
    )
    steer.sweep.click(
        partial(on_sweep, store),
        [model, prompt, constitution_a, max_new_tokens, temperature, seed, *steer.inputs],
        [steer.swept, steer.note],
    )
    stop.click(None, cancels=[running])
    open_principle.click(on_open_principle, principle, [message, tabs, *show_outputs])
    beat.kick(
        wire(
            launch.click,
            partial(on_launch, store),
            [
                constitution_a,
                prompt_set,
                split,
                limit,
                rounds,
                few_shot,
                relevant_only,
                max_new_tokens,
                temperature,
                seed,
                model,
                engine,
            ],
            to("message", "run_folder"),
        )
    )
    armed = gr.State(None)  # the pipeline job a first Cancel press asked to confirm
    wire(cancel.click, partial(on_cancel, store), armed, {"message": message, "armed": armed})
    beat.kick(wire(resume.click, partial(on_resume, store), None, to("message", "run_folder")))
    browse_inputs = [run_folder, filter_principle, filter_category, failed_only]
    browsed = to(*BROWSED)
    wire(run_folder.change, browse, browse_inputs, browsed)  # also when the Runs tab opens one
    for control in (filter_principle, filter_category, failed_only):
        wire(control.input, browse, browse_inputs, browsed, **NEWEST)
    beat.watch(partial(on_timer, store), browse_inputs, to("progress", *BROWSED))
    table.select(on_open_chain, run_folder, chain_view)
    loaded = wire(
        demo.load,
        partial(on_page_load, store),
        None,
        {
            "constitution_a": constitution_a,
            "constitution_b": constitution_b,
            **to("progress", "run_folder"),
        },
    )
    wire(loaded.then, browse, browse_inputs, browsed)
    return run_folder
