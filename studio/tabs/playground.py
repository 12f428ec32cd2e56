"""Playground tab: chat with any model, streaming; one principle as the system prompt, and
steering by a direction in the hidden states (the Steering accordion)."""

from __future__ import annotations

import html
from functools import partial
from typing import Any, Iterator

import gradio as gr

from pipeline.config.settings import (
    DEFAULT_MODEL,
    DEFAULT_SAMPLING,
    SamplingConfig,
)
from pipeline.core.errors import StudioError
from pipeline.data.constitution import principle_system_prompt
from pipeline.data.store import Store
from pipeline.model.engines import backend_for, engine_note
from pipeline.model.generation import chat
from pipeline.model.loading import LoadedModel, load_model
from studio.components import steering_panel
from studio.components.choices import engine_choice, offer_models
from studio.components.notices import error_notice, notice
from studio.wiring import NEWEST, in_order, wire

NO_PRINCIPLE = "(none)"


def message_text(content: Any) -> str:
    """The text of a Chatbot message, whose content may be a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def conversation(history: list[dict], system: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system.strip()}] if system and system.strip() else []
    return messages + [{"role": m["role"], "content": message_text(m["content"])} for m in history]


# --- handlers: plain values in, plain values (and gr.update) out; tested without a browser ---


def on_load_page(store: Store) -> dict[str, Any]:
    chosen = store.default_name()
    return {
        "constitution": gr.update(choices=store.names(), value=chosen),
        "principle": principle_choices(store, chosen),
    }


def on_clear() -> dict[str, Any]:
    """An empty conversation and message box."""
    return {"chatbot": [], "message": ""}


def principle_choices(store: Store, name: str | None) -> Any:
    if not name:
        return gr.update(choices=[NO_PRINCIPLE], value=NO_PRINCIPLE)
    ids = [p.id for p in store.working(name).enabled_principles]
    return gr.update(choices=[NO_PRINCIPLE, *ids], value=NO_PRINCIPLE)


def on_principle(store: Store, name: str | None, pid: str) -> str:
    if not name or pid == NO_PRINCIPLE:
        return ""
    return principle_system_prompt(store.working(name).principle(pid))


def model_line(loaded: LoadedModel, steering: str = "", engine: str = "") -> str:
    """Which model answers (and, when said, on which engine and how it is steered)."""
    params = sum(p.numel() for p in loaded.model.parameters()) / 1e6
    return notice(
        "ok",
        f"Model in use: {loaded.name} from {loaded.source} ({params:.0f}M "
        f"parameters, {loaded.device}, {loaded.model.dtype})"
        + (f", {engine}" if engine else "")
        + (f" — {steering}." if steering else "."),
    )


def on_load_model(name: str) -> dict[str, Any]:
    """Load the model now; `said_of` records which model the status now speaks of."""
    try:
        status = model_line(load_model(name))
    except StudioError as exc:
        status = error_notice(exc)
    return {"model_status": status, "said_of": name or DEFAULT_MODEL}


def on_model_choice(name: str, said_of: str | None = None) -> dict[str, Any]:
    """Which model answers: said as soon as it is picked, loaded with the first message.

    Where Load has already spoken of this very model (`said_of`, the session's state, read
    when this runs), its answer stays: the box sends a typed name when it loses the focus,
    that is as Load is clicked, so the choice can run after Load and would hide an error
    (seen in CI: the page's status, read when the choice was sent, did not have Load's
    answer yet)."""
    chosen = name or DEFAULT_MODEL
    if chosen == said_of:
        return {}
    return {
        "model_status": notice(
            "info", f"Model: {chosen} — it loads with the first message (or press Load model)."
        ),
        "said_of": None,
    }


def limit_note(reason: str, new_tokens: int) -> str:
    if reason != "length":
        return ""
    return notice(
        "info",
        f"The answer stopped at the token limit ({new_tokens} new tokens); raise "
        "max new tokens to let it finish.",
    )


def on_user(text: str, history: list[dict]) -> dict[str, Any]:
    """The typed message joins the conversation (the box is cleared); an empty one is refused
    and stays where it was typed."""
    if not text or not text.strip():
        return {"chatbot": history, "message": notice("error", "Type a message first.")}
    return {"prompt": "", "chatbot": history + [{"role": "user", "content": text}], "message": ""}


def sampling(temp: float, nucleus: float, new_tokens: float, seed_value: float) -> SamplingConfig:
    return SamplingConfig(
        max_new_tokens=int(new_tokens),
        temperature=float(temp),
        top_p=float(nucleus),
        seed=int(seed_value or 0),
    )


def on_respond(
    history: list[dict],
    model_name: str,
    system_text: str,
    temp: float,
    nucleus: float,
    new_tokens: float,
    seed_value: float,
    constitution_name: str | None = None,
    steer_choice: str | None = None,
    steer_layers: str = "",
    coefficient: float = 0.0,
    engine: str = "fp32",
    store: Store | None = None,
) -> Iterator:
    """Stream the model's answer into the conversation, by name (chatbot, message,
    model_status, said_of) per piece; the last says whether the answer stopped at the token
    limit. A coefficient other than 0 steers the answer (the status line says how); the
    status line also says which engine answered (`engine`: fp32, int8 or auto, see
    pipeline.model.engines)."""
    if not history or history[-1]["role"] != "user":
        return
    try:
        config = sampling(temp, nucleus, new_tokens, seed_value)
        steered, greedy = bool(store and coefficient), config.temperature == 0
        backend = backend_for(model_name, engine=engine, steered=steered, greedy=greedy, live=True)
        steering = (
            steering_panel.steering_for(
                store, backend.loaded, steer_choice, constitution_name, steer_layers, coefficient
            )
            if steered
            else None
        )
        ended: list[str] = []
        pieces = backend.stream(conversation(history, system_text), config, ended.append, steering)
        answer = ""
        history = history + [{"role": "assistant", "content": ""}]
        on = engine_note(engine, backend.loaded, steered, greedy, live=True)
        said = {  # the status speaks of this model now (see on_model_choice)
            "model_status": model_line(backend.loaded, steering.text if steering else "", on),
            "said_of": model_name or DEFAULT_MODEL,
        }
        for piece in pieces:
            answer += piece
            history[-1] = {"role": "assistant", "content": answer}
            yield {"chatbot": history, "message": "", **said}
        note = limit_note(ended[0] if ended else "", config.max_new_tokens)
        yield {"chatbot": history, "message": note, **said}
    except StudioError as exc:
        yield {"chatbot": history, "message": error_notice(exc)}


def answer_card(title: str, text: str, reason: str, new_tokens: int) -> str:
    limit = '<p class="chain-failed">stopped at the token limit</p>' if reason == "length" else ""
    return (
        f'<div class="chain-card"><b>{html.escape(title)}</b>'
        f"<p>{html.escape(text) or '<em>(empty)</em>'}</p>{limit}</div>"
    )


def on_compare(
    model_name: str,
    system_text: str,
    text: str,
    history: list[dict],
    temp: float,
    nucleus: float,
    new_tokens: float,
    seed_value: float,
    engine: str = "fp32",
) -> tuple[str, str]:
    """The same prompt (the box, else the last message sent) answered with and without the
    system prompt, same seed, on the engine asked for: (the two answers side by side,
    message)."""
    prompt = last_prompt(text, history)
    if not prompt:
        return "", notice("error", "Type a message (or send one) to compare.")
    if not (system_text or "").strip():
        return "", notice("error", "Pick a principle or write a system prompt to compare with.")
    try:
        config = sampling(temp, nucleus, new_tokens, seed_value)
        # each answer a run of its own: a live int8 run's seed seeds its engine, whose rows
        # draw from one stream, so one batch would not give both answers the same draws
        with_it, without = (
            backend_for(
                model_name, engine=engine, greedy=config.temperature == 0, live=True
            ).generate([asked], config, seeds=[config.seed])[0]
            for asked in (chat(prompt, system_text.strip()), chat(prompt))
        )
    except StudioError as exc:
        return "", error_notice(exc)
    cards = answer_card(
        "With the system prompt", with_it.text, with_it.finish_reason, config.max_new_tokens
    ) + answer_card("Without it", without.text, without.finish_reason, config.max_new_tokens)
    return (
        f'<div class="compare" data-seed="{config.seed}"><p class="chain-label">'
        f'{html.escape(prompt)} · seed {config.seed}</p><div class="diff2">{cards}</div></div>',
        "",
    )


def last_prompt(text: str, history: list[dict]) -> str:
    """The prompt box, else the last message sent."""
    return (text or "").strip() or next(
        (message_text(m["content"]) for m in reversed(history or []) if m["role"] == "user"), ""
    )


def on_sweep(
    store: Store,
    model_name: str,
    system_text: str,
    text: str,
    history: list[dict],
    temp: float,
    nucleus: float,
    new_tokens: float,
    seed_value: float,
    constitution_name: str | None,
    steer_choice: str | None,
    steer_layers: str,
    coefficient: float,
) -> tuple[str, str]:
    """The same prompt answered at five coefficients side by side (same seed)."""
    try:
        config = sampling(temp, nucleus, new_tokens, seed_value)
    except StudioError as exc:
        return "", error_notice(exc)
    return steering_panel.on_sweep(
        store,
        model_name,
        last_prompt(text, history),
        system_text,
        steer_choice,
        constitution_name,
        steer_layers,
        coefficient,
        config,
    )


def build(store: Store, demo: gr.Blocks, default_model: str = DEFAULT_MODEL) -> None:
    """Lay out the tab and wire its events (call inside a gr.Tab of `demo`)."""
    with gr.Row():
        model = gr.Dropdown(
            label="Model",
            choices=[DEFAULT_MODEL],
            value=default_model,
            allow_custom_value=True,
            scale=4,
            elem_id="playground-model",
            info="'embedded' (SmolLM2-135M-Instruct), a local folder, or a hub id",
        )
        offer_models(store, model, default_model)
        load = gr.Button("Load model", scale=1, elem_id="playground-load")
    model_status = gr.HTML(elem_id="playground-model-status")
    said_of = gr.State(None)  # the model the status speaks of after a Load (on_model_choice)
    with gr.Row():
        with gr.Column(scale=1):
            constitution = gr.Dropdown(
                label="Constitution", choices=[], elem_id="playground-constitution"
            )
            principle = gr.Dropdown(
                label="Principle as system prompt",
                choices=[NO_PRINCIPLE],
                value=NO_PRINCIPLE,
                elem_id="playground-principle",
            )
            system = gr.Textbox(label="System prompt", lines=4, elem_id="playground-system")
            temperature = gr.Slider(
                0,
                1.5,
                value=DEFAULT_SAMPLING.temperature,
                step=0.05,
                label="temperature (0 = greedy)",
                elem_id="playground-temperature",
            )
            top_p = gr.Slider(0.05, 1, value=DEFAULT_SAMPLING.top_p, step=0.05, label="top-p")
            max_new_tokens = gr.Slider(
                8,
                1024,
                value=DEFAULT_SAMPLING.max_new_tokens,
                step=8,
                label="max new tokens",
                elem_id="playground-max-tokens",
            )
            seed = gr.Number(value=0, precision=0, label="seed")
            engine = engine_choice(
                "playground", "answers ~4.6× faster on a CPU (the model line says which answered)"
            )
        with gr.Column(scale=2):
            chatbot = gr.Chatbot(label="Conversation", height=460, elem_id="playground-chat")
            message = gr.HTML(elem_id="playground-message")
            with gr.Row():
                prompt = gr.Textbox(
                    show_label=False,
                    placeholder="Type a message, press Enter",
                    scale=5,
                    elem_id="playground-input",
                )
                send = gr.Button("Send", variant="primary", scale=1, elem_id="playground-send")
                stop = gr.Button("Stop", scale=1, elem_id="playground-stop")
                clear = gr.Button("Clear", scale=1, elem_id="playground-clear")
            compare = gr.Button(
                "Compare with and without the system prompt (same prompt, same seed)",
                elem_id="playground-compare",
            )
            compared = gr.HTML(elem_id="playground-compared")
            steer = steering_panel.build(store, "playground")

    respond_inputs = [
        chatbot,
        model,
        system,
        temperature,
        top_p,
        max_new_tokens,
        seed,
        constitution,
        *steer.inputs,
        engine,
    ]
    respond = partial(on_respond, store=store)
    asked = {"prompt": prompt, "chatbot": chatbot, "message": message}
    answered = {
        "chatbot": chatbot,
        "message": message,
        "model_status": model_status,
        "said_of": said_of,
    }
    submitted = wire(prompt.submit, on_user, [prompt, chatbot], asked)
    submitted = wire(submitted.then, respond, respond_inputs, answered)
    clicked = wire(send.click, on_user, [prompt, chatbot], asked)
    clicked = wire(clicked.then, respond, respond_inputs, answered)
    wire(
        steer.read.click,
        partial(steering_panel.on_read_layers, store),
        [model, steer.direction, constitution],
        steer.readings,
    )
    steer.sweep.click(
        partial(on_sweep, store),
        [
            model,
            system,
            prompt,
            chatbot,
            temperature,
            top_p,
            max_new_tokens,
            seed,
            constitution,
            *steer.inputs,
        ],
        [steer.swept, steer.note],
    )
    compare.click(
        on_compare,
        [model, system, prompt, chatbot, temperature, top_p, max_new_tokens, seed, engine],
        [compared, message],
    )
    # the box's note and a load's answer land in the order asked, and the note does not
    # replace what Load said of the same model (a typed name's note hid Load's error)
    said = {"model_status": model_status, "said_of": said_of}
    model_order = in_order("playground-model")
    wire(model.input, on_model_choice, [model, said_of], said, **model_order, **NEWEST)
    stop.click(None, cancels=[submitted, clicked])
    wire(clear.click, on_clear, None, {"chatbot": chatbot, "message": message})
    wire(load.click, on_load_model, model, said, **model_order)
    constitution.input(partial(principle_choices, store), constitution, principle, **NEWEST)
    principle.input(partial(on_principle, store), [constitution, principle], system, **NEWEST)
    page_loaded = wire(
        demo.load,
        partial(on_load_page, store),
        None,
        {"constitution": constitution, "principle": principle},
    )
    wire(page_loaded.then, on_model_choice, [model, said_of], said, **model_order)
