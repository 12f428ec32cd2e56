"""Builds the studio from its tabs and launches it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gradio as gr
from gradio.route_utils import FnIndexInferError
from starlette.middleware import Middleware

from pipeline.config.settings import DEFAULT_MODEL
from pipeline.data.store import Store
from pipeline.runner import warm
from studio import access, start_here
from studio.components.heartbeat import Heartbeat
from studio.components.notices import notice
from studio.components.shortcuts import PRESS_IN_ORDER
from studio.components.theme import CSS, HEAD, THEME, TOGGLE_JS
from studio.login_guard import LoginGuard, LoginPolicy
from studio.tabs import chains as chains_tab
from studio.tabs import constitution as constitution_tab
from studio.tabs import evaluate as evaluate_tab
from studio.tabs import playground as playground_tab
from studio.tabs import preferences as preferences_tab
from studio.tabs import runs as runs_tab
from studio.tabs import train as train_tab
from studio.tabs import values as values_tab


def workspace_notice(store: Store) -> str:
    """What the user must know about the workspace before anything else: a broken database
    moved aside, or a workspace that cannot be written."""
    if store.notice:
        return notice("error", store.notice)
    if store.read_only:
        return notice(
            "info",
            f"The workspace {store.workspace} is read-only: you can look, "
            "but nothing can be saved or run.",
        )
    return ""


QUEUE_POLL_S, PROGRESS_POLL_S = 0.05, 0.1  # seconds between an idle queue's looks


def build_studio(
    workspace: str | Path | None = None, default_model: str = DEFAULT_MODEL
) -> tuple[gr.Blocks, Store]:
    store = Store(workspace, recover=True)
    store.seed()
    with gr.Blocks(title="Constitution Studio") as demo:
        with gr.Row():
            gr.Markdown(
                "# Constitution Studio\nWrite a constitution, then see what it does to a model."
            )
            help_button = gr.Button(
                "Start here", size="sm", elem_id="start-here-open", elem_classes="header-button"
            )
            theme = gr.Button(
                "Dark / light theme",
                size="sm",
                elem_id="theme-toggle",
                elem_classes="header-button",
            )
        theme.click(None, js=TOGGLE_JS)
        gr.HTML(workspace_notice(store), elem_id="workspace-notice")
        beat = Heartbeat(store)
        panel, steps, pipeline, dismiss, dismissed = start_here.build()
        start_message = gr.HTML(elem_id="start-message")
        with gr.Tabs() as tabs:
            with gr.Tab("Constitution", id="constitution"):
                show_principle, principle_outputs = constitution_tab.build(store, demo)
            with gr.Tab("Playground", id="playground"):
                playground_tab.build(store, demo, default_model)
            with gr.Tab("Chains", id="chains"):
                chains_run = chains_tab.build(
                    store, demo, tabs, show_principle, principle_outputs, beat
                )
            with gr.Tab("Preferences", id="preferences"):
                labels_run, pairs_source = preferences_tab.build(store, demo, beat, default_model)
            with gr.Tab("Values", id="values"):
                values_run = values_tab.build(store, demo, beat)
            with gr.Tab("Train", id="train"):
                train = train_tab.build(store, demo, beat)
            with gr.Tab("Evaluate", id="evaluate"):
                evaluate_run = evaluate_tab.build(store, demo, beat)
            with gr.Tab("Runs", id="runs"):
                runs_tab.build(
                    store,
                    demo,
                    tabs,
                    chains_run,
                    labels_run,
                    pairs_source,
                    values_run,
                    evaluate_run,
                    train.watched,
                )
        start_here.wire(
            store,
            demo,
            tabs,
            panel,
            steps,
            pipeline,
            dismiss,
            dismissed,
            help_button,
            start_message,
            train,
            beat,
        )
        beat.wire(demo)
    keep_handlers_out_of_the_page(demo)
    keep_background_events_quiet(demo)
    return demo, store


def keep_background_events_quiet(demo: gr.Blocks) -> None:
    """Events the user did not start (page load, timers) and events that show no progress
    register no loading status. Gradio's page refreshes the loading status of every output any
    event has ever had, on every status change of any event: with the Train tab's forms filled
    at load that made the first page load quadratic (7.9 s to a filled page here, 3.6 s
    without). Steps chained after a quiet event are quiet too; a user's own clicks keep their
    spinners."""
    quiet: set[int] = set()
    for index, fn in sorted(demo.fns.items()):  # a chained step comes after its first one
        started_by = {trigger for _, trigger in fn.targets}
        if (
            fn.show_progress == "hidden"
            or started_by & {"load", "tick"}
            or (fn.trigger_after is not None and fn.trigger_after in quiet)
        ):
            quiet.add(index)
            fn.show_progress_on = []


def keep_handlers_out_of_the_page(demo: gr.Blocks) -> None:
    """Gradio inlines the API description of every public event handler into each page it
    serves (3.7 of the page's 4.2 MB, rebuilt per request). The studio's handlers are UI
    plumbing, not an API — the CLI is that — so they stay callable by the page but are left
    out of it."""
    for fn in demo.fns.values():
        if fn.api_visibility == "public":
            fn.api_visibility = "undocumented"


def idle_queue(demo: gr.Blocks) -> gr.Blocks:
    """Gradio's queue looks for new events every 1 ms and for progress to send every 10 ms,
    busy or not: with nothing to do that alone kept 7% of a core here (measured on the
    idle studio's server). Every 50 and 100 ms delays an event by at most that; a private
    setting of Gradio's queue, checked by a test."""
    demo._queue.sleep_when_free = QUEUE_POLL_S
    demo._queue.progress_update_sleep_when_free = PROGRESS_POLL_S
    return demo


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    workspace: str | None = None,
    default_model: str = DEFAULT_MODEL,
    logins: list[tuple[str, str]] | None = None,
    policy: LoginPolicy = LoginPolicy(),
) -> None:
    """Serve the studio; with `logins`, every page and API call needs one of them, and wrong
    passwords are throttled by `policy`."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    warning = access.exposure_warning(host, bool(logins))
    if warning:
        print(warning, file=sys.stderr, flush=True)
    demo, store = build_studio(workspace, default_model)
    if logins:
        print(access.sharing_notice(logins, store), file=sys.stderr, flush=True)
    allowed, blocked = access.served_paths(store)
    middleware = [Middleware(LoginGuard, policy=policy)] if logins else []
    warm.warm_up(dict(os.environ))  # the first job starts warm too (pipeline/runner/warm.py)
    idle_queue(demo.queue(default_concurrency_limit=4)).launch(
        server_name=host,
        server_port=port,
        theme=THEME,
        css=CSS,
        head=HEAD + PRESS_IN_ORDER + preferences_tab.SHORTCUTS,
        allowed_paths=allowed,
        blocked_paths=blocked,
        max_file_size="50mb",
        footer_links=["settings"],
        auth=access.checker(logins) if logins else None,
        auth_message="Constitution Studio: sign in with a login given by --auth, --auth-file "
        f"or ${access.AUTH_ENV}. After {policy.free_tries} wrong passwords each try "
        f"waits twice as long as the last, up to {policy.lockout:.0f} s.",
        app_kwargs={
            "middleware": middleware,
            "exception_handlers": {FnIndexInferError: access.unknown_api_name},
        },
        # Gradio's start-up self-check (a HEAD request with 3 s to answer, made for Colab)
        # reads a machine busy with a training job as "localhost is not accessible" and
        # refuses to start; the studio is only ever served here, never through a share link
        _frontend=False,
    )
