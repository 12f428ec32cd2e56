"""The "Which judge to trust" panel of the Preferences tab: every judge measured against the
person's own labels (a `judges compare` job), ranked by length-controlled agreement, each
with its verdict; and which judge `auto` uses now. Handlers are plain functions of the store
and the form's values; `build` lays the panel out inside the tab and wires it."""

from __future__ import annotations

import html
import json
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr

from pipeline.config.commands import JudgesCompareJob, build_job, to_argv
from pipeline.core.errors import StudioError
from pipeline.data.store import JobRecord, Store
from pipeline.evaluation.judge_choice import (
    BOARD_FILE,
    TARGET_LABELS,
    JudgeChoice,
    read_choice,
    unverified,
)
from pipeline.evaluation.leaderboard import check_labels
from pipeline.runner import jobs
from pipeline.values.features import labelled_in
from studio.components.choices import folder_choices, resolve_choice
from studio.components.heartbeat import Heartbeat
from studio.components.job_panel import job_bar, latest_job, writing_now
from studio.components.notices import error_notice, notice
from studio.wiring import wire

KIND = "judges-compare"
COLUMNS = [
    "rank",
    "judge",
    "agreement (95%)",
    "length-controlled (95%)",
    "always longer / shorter",
    "position bias",
    "calibration error",
    "verdict",
]
SHOW_WITHIN = 60.0  # s after a compare job ends in which a tick still shows its board


def label_sources(store: Store) -> list[tuple[str, str]]:
    """Where human labels can come from: the workspace's own, the shipped gold pairs, and
    every pairs or label run (pairs people labelled here count wherever they appear)."""
    return [
        ("your labels in this workspace", "human"),
        ("gold pairs (demo; length-confounded)", "gold"),
    ] + folder_choices(store.jobs(), ("pairs", "label"))


def _interval(row: dict, value: str, interval: str) -> str:
    if row.get(value) is None:
        return "n/a"
    span = row.get(interval)
    return f"{row[value]:.0%}" + (f" ({span[0]:.0%}–{span[1]:.0%})" if span else "")


def board_rows(board: dict) -> list[list]:
    """The board's rows as the table shows them, best first."""
    rows = []
    for n, r in enumerate(board.get("rows") or [], 1):
        length = (
            "n/a"
            if r.get("always_longer") is None
            else f"{r['always_longer']:.0%} / {r['always_shorter']:.0%}"
        )
        calibration = r.get("calibration_error")
        rows.append(
            [
                n,
                r["judge"],
                _interval(r, "agreement", "interval"),
                _interval(r, "controlled", "controlled_interval"),
                length,
                f"{r['position_bias']:.0%}",
                "n/a" if calibration is None else f"{calibration:.3f}",
                r["verdict"]["text"],
            ]
        )
    return rows


def read_board(folder: str | Path) -> dict:
    try:
        return json.loads((Path(folder) / BOARD_FILE).read_text())
    except (OSError, ValueError):
        return {}


def latest_board(store: Store) -> JobRecord | None:
    """The newest finished judges comparison."""
    done = [j for j in store.jobs() if j.kind == KIND and j.status == "succeeded"]
    return max(done, key=lambda j: j.id) if done else None


def auto_choice(store: Store) -> JudgeChoice:
    """The judge `auto` stands for in this tab: the newest comparison's choice, or the
    log-prob judge with its labels unverified."""
    job = latest_board(store)
    choice = read_choice(job.out_dir) if job else None
    if choice is None:
        return unverified(
            "human",
            human_count(store),
            "no judge has been measured against your labels yet (Compare judges)",
        )
    return choice


def human_count(store: Store) -> int:
    try:
        return len(labelled_in("human", store).pairs)
    except StudioError:
        return 0


def board_view(store: Store, job: JobRecord | None) -> dict[str, Any]:
    """The summary above the table and the table's rows of a comparison, its board read once."""
    board = read_board(job.out_dir) if job else {}
    return {"summary": summary_html(store, job, board), "table": board_rows(board)}


def summary_html(store: Store, job: JobRecord | None, board: dict) -> str:
    """What the board rests on and what `auto` uses, above the table."""
    if job is None:
        have = human_count(store)
        return notice(
            "info",
            f"No comparison yet. You have labelled {have} pair(s) A or B here; "
            f"label {max(TARGET_LABELS - have, 0)} more (keys 1 / 2, Next: n), "
            "then Compare judges: every judge is scored against your labels "
            "with answer length controlled.",
        )
    length = board.get("length") or {}
    lines = [
        f"{board.get('pairs', 0)} human-labelled pairs ({html.escape(str(board.get('labels')))}"
        f"), job {job.id}"
    ]
    if length:
        lines.append(
            f"answer length alone: always-longer {length['longer']:.0%}, always-shorter "
            f"{length['shorter']:.0%}"
        )
    choice = read_choice(job.out_dir)
    if choice:
        lines.append(f"<b>auto uses</b>: {html.escape(choice.text)}")
    kind = "ok" if choice and choice.verified else "warn"
    return notice(kind, " · ".join(lines))


def on_compare(store: Store, labels: str | None, constitution: str | None, model_name: str) -> str:
    """Launch a comparison, refusing at once labels no judge can be checked on."""
    if not constitution:
        return notice(
            "error", "Pick a constitution first (the log-prob and direction judges use it)."
        )
    try:
        source = labels or "human"
        check_labels(labelled_in(source, store), JudgesCompareJob.folds)
        out = store.new_run_folder("judges")  # only once the labels pass
        path = jobs.freeze_constitution(resolve_choice(store, constitution), out)
        job = build_job(
            JudgesCompareJob, {"labels": source, "constitution": str(path), "model": model_name}
        )
        record = jobs.launch(store, KIND, to_argv(KIND, job, out), out)
    except StudioError as exc:
        return error_notice(exc)
    return notice(
        "ok",
        f"Launched job {record.id}: every judge against your labels, in the "
        "background (a few minutes on a CPU).",
    )


def on_board_load(store: Store) -> dict[str, Any]:
    return board_view(store, latest_board(store))


def on_board_tick(store: Store, shown: int | None) -> dict[str, Any]:
    """The bar while a comparison runs; its board once, when it has finished (then `shown`,
    the comparison on screen, is that job)."""
    job = latest_job(store, (KIND,))
    if job is None:
        return {"progress": ""}
    progress = job_bar(job, "steps") if writing_now(job, SHOW_WITHIN) else ""
    if job.status == "succeeded" and job.id != shown:
        return {"progress": progress, **board_view(store, job), "shown": job.id}
    return {"progress": progress}


def build(
    store: Store,
    demo: gr.Blocks,
    beat: Heartbeat,
    constitution: gr.Dropdown,
    model: gr.Dropdown,
    message: gr.HTML,
) -> None:
    """The panel, laid out where it is called; its progress and board follow the heartbeat."""
    with gr.Accordion("Which judge to trust: every judge against your labels", open=True):
        with gr.Row():
            labels = gr.Dropdown(
                label="Human labels",
                choices=label_sources(store),
                value="human",
                elem_id="judges-labels",
                scale=3,
            )
            compare = gr.Button("Compare judges", variant="primary", elem_id="judges-compare")
        progress = gr.HTML(elem_id="judges-progress")
        summary = gr.HTML(elem_id="judges-summary")
        table = gr.Dataframe(
            headers=COLUMNS,
            interactive=False,
            wrap=True,
            elem_id="judges-table",
            label="Judges ranked by length-controlled agreement (lower bound)",
        )
    shown = gr.State(None)  # the comparison whose board is on screen
    labels.focus(partial(offer_sources, store), None, labels)
    beat.kick(compare.click(partial(on_compare, store), [labels, constitution, model], message))
    views = {"progress": progress, "summary": summary, "table": table, "shown": shown}
    beat.watch(partial(on_board_tick, store), shown, views)
    wire(demo.load, partial(on_board_load, store), None, {"summary": summary, "table": table})


def offer_sources(store: Store) -> Any:
    return gr.update(choices=label_sources(store))
