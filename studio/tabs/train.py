"""Train tab: pick a stage (or the whole pipeline), fill its form — generated from the stage's
config dataclass — from a preset, see the exact command, launch it into the job queue, and
watch it: progress, live metric plots with smoothing, the log tail, cancel/resume, artifacts."""

from __future__ import annotations

import dataclasses
import html
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from pipeline.config.commands import (
    ALIGNMENTS,
    COMMANDS,
    PRESETS,
    build_job,
    job_yaml,
    preset,
    problem_fields,
    read_job_file,
)
from pipeline.config.settings import DEFAULT_MODEL, ENGINES, GENERATION_ENGINES
from pipeline.core import job_folder
from pipeline.core.errors import ConfigError, StudioError
from pipeline.core.files import read_jsonl_log, write_atomic
from pipeline.core.precision import PRECISIONS, slow_warning
from pipeline.core.tracking import TRACKERS
from pipeline.data.store import JobRecord, Store
from pipeline.model.loading import load_model
from pipeline.runner import jobs
from pipeline.runner.run_list import by_run, long_run_warning, run_label, run_time
from pipeline.train.health import (
    nearest_pairs,
    pm_judge_disagreement,
    pm_training_labels,
    reward_outliers,
    rl_health,
)
from pipeline.train.runtime import ADAPTER_DIR, read_metrics
from studio.components.choices import (
    adapter_choices,
    constitution_choices,
    folder_choices,
    probe_choices,
    resolve_choice,
)
from studio.components.heartbeat import Heartbeat
from studio.components.job_panel import (
    STAGE_UNITS,
    cancel_label,
    cancel_notice,
    job_bar,
    job_buttons,
    pipeline_html,
    resume_notice,
)
from studio.components.notices import error_notice, notice
from studio.components.plots import step_plots
from studio.wiring import NEWEST, in_order, pick, to_components, wire

# Every command, in pipeline order: each stage can be launched alone on the folders earlier
# stages (or the other tabs) wrote.
TITLES = {
    "run-all": "whole pipeline (chains → SFT → pairs → labels → PM → PPO/DPO/RAHF → eval)",
    "revise": "1. chains: critique–revision (SL-CAI data)",
    "sft-data": "2. SFT data from chains",
    "sft": "3. SFT (SL-CAI)",
    "pairs": "4. pairs: two answers per prompt",
    "label": "5. AI labels (RLAIF)",
    "pmp": "6a. PM pretraining (Stack Exchange)",
    "reward": "6. preference model",
    "ppo": "7. PPO (RL-CAI)",
    "dpo": "7b. DPO (instead of PM + PPO)",
    "rahf": "7c. RAHF (move the hidden states, instead of PM + PPO)",
    "grpo": "7d. GRPO (trl: group baseline, no value model; instead of PPO)",
    "rloo": "7e. RLOO (trl: leave-one-out baseline, no value model; instead of PPO)",
    "evaluate": "8. evaluate: policy tournament (ratings with intervals)",
    "values-report": "values report: probes, constitution directions, adversarial flag",
    "values-fit": "representation judge fitted from human labels",
    "judges-compare": "judges compared: every judge against your human labels",
    "principles-rank": "principles ranked on your human labels (and a draft of the best)",
    "steer-extract": "steering direction from a constitution or labelled pairs",
}
FORMS: dict[str, type] = {name: COMMANDS[name] for name in TITLES}
PLOT_SLOTS = 8
# Plotted first, in this order; any other number a stage logs follows.
METRIC_ORDER = (
    "loss",
    "reward_mean",
    "reward",  # trl's GRPO and RLOO
    "kl",
    "entropy",
    "clip_fraction",
    "value_loss",
    "policy_loss",
    "approx_kl",
    "accuracy",
    "rewards/margins",
    "rewards/accuracies",
    "answer_length",
    "reward_std",
    "beta",
    "mean_token_accuracy",
    "grad_norm",
    "learning_rate",
)
NOT_PLOTTED = {
    "step",
    "time",
    "epoch",
    "total_flos",
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "num_tokens",
}
# Schedules and settings a run follows, not noisy measurements: plotted raw, never smoothed.
SCHEDULES = {"learning_rate", "beta"}
JOB_HEADERS = ["id", "run", "status", "ran for"]
OUTLIER_HEADERS = ["step", "extreme", "reward", "prompt", "answer"]
NO_PRESET = "(defaults)"


# --- pure helpers (tested) ---------------------------------------------------------------------


def form_values(cls: type, raw: list[Any]) -> dict[str, Any]:
    """Form components' values → typed field values (a number box gives floats)."""
    values = {}
    for f, value in zip(dataclasses.fields(cls), raw):
        if isinstance(f.default, bool):
            values[f.name] = bool(value)
        elif isinstance(f.default, int):
            values[f.name] = (
                int(value) if value is not None and float(value).is_integer() else value
            )
        elif isinstance(f.default, float):
            values[f.name] = float(value) if value is not None else value
        else:
            values[f.name] = "" if value is None else str(value).strip()
    return values


def preset_values(stage: str, name: str) -> dict[str, Any]:
    """Every field's value under a preset (the defaults where the preset is silent)."""
    defaults = {f.name: f.default for f in dataclasses.fields(FORMS[stage])}
    if name == NO_PRESET:
        return defaults
    return {**defaults, **preset(stage, name), **({"preset": name} if stage == "run-all" else {})}


def command_line(stage: str, folder: str | Path) -> str:
    return f"python -m pipeline {stage} --config {Path(folder) / 'job.yaml'} --out {folder}"


def ema(values: list[float], smoothing: float) -> list[float]:
    """Exponential moving average, debiased like TensorBoard's so the start is not pulled to 0."""
    out, avg = [], 0.0
    for n, v in enumerate(values, start=1):
        avg = smoothing * avg + (1 - smoothing) * v
        out.append(avg / (1 - smoothing**n) if smoothing else v)
    return out


LN2 = math.log(2)
# Where a pairwise metric sits when the model has learned nothing: a PM's or DPO's loss starts
# at ln 2 and its accuracy at 0.5, so a flat line there is chance, not a result.
CHANCE = {
    kind: {"loss": LN2, "accuracy": 0.5, "rewards/accuracies": 0.5}
    for kind in ("reward", "pmp", "dpo")
}
CHANCE_NAMES = {LN2: "chance (ln 2)", 0.5: "chance (0.5)"}
MIN_STEP_AXIS = 10  # an x axis at least this long has whole-number step ticks


def metric_frames(
    rows: list[dict], smoothing: float, chance: dict[str, float] | None = None
) -> dict[str, pd.DataFrame]:
    """metric → long DataFrame (step, value, series ∈ raw/smoothed, and a chance line where
    `chance` names the metric's chance level), in plotting order; a schedule (learning rate,
    β) has its raw series only."""
    names = {
        k
        for r in rows
        for k, v in r.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_PLOTTED
    }
    ordered = [m for m in METRIC_ORDER if m in names] + sorted(names - set(METRIC_ORDER))
    frames = {}
    for name in ordered:
        points = [(r["step"], float(r[name])) for r in rows if name in r and "step" in r]
        steps, values = [s for s, _ in points], [v for _, v in points]
        if name in SCHEDULES:
            frames[name] = pd.DataFrame(
                {"step": steps, "value": values, "series": ["raw"] * len(steps)}
            )
            continue
        frame = pd.DataFrame(
            {
                "step": steps * 2,
                "value": values + ema(values, smoothing),
                "series": ["raw"] * len(steps) + ["smoothed"] * len(steps),
            }
        )
        level = (chance or {}).get(name)
        if level is not None and steps:
            frame = pd.concat(
                [
                    frame,
                    pd.DataFrame(
                        {
                            "step": [min(steps), max(steps)],
                            "value": [level, level],
                            "series": [CHANCE_NAMES.get(level, "chance")] * 2,
                        }
                    ),
                ],
                ignore_index=True,
            )
        frames[name] = frame
    return frames


def step_axis(metrics: list[dict]) -> list[float]:
    """The x range of a job's plots: from 0 to its last step, and never shorter than
    MIN_STEP_AXIS, so a short run is not labelled at steps 0.5, 1.5 …"""
    last = max([r["step"] for r in metrics if isinstance(r.get("step"), (int, float))] or [0])
    return [0, max(last, MIN_STEP_AXIS)]


def job_rows(records: list[JobRecord]) -> list[list[Any]]:
    """The job table: readable names (stage · constitution or model · time), not folders;
    a resumed run is one row (its newest job), its time added up over its attempts."""
    return [
        [
            job.id,
            ("  ↳ " if job.parent else "") + run_label(job, len(attempts)),
            job.status,
            run_time(attempts),
        ]
        for job, attempts in by_run(records)
    ]


def artifacts_html(job: JobRecord) -> str:
    """What the job left, with the adapter called out (it can be picked as a model) and a
    tournament's results (a pipeline's closing one, or an evaluate job's)."""
    if job.active:
        return ""
    out = Path(job.out_dir)
    items = "".join(f"<li><code>{html.escape(str(out / a))}</code></li>" for a in job.artifacts)
    parts = [f"<p>Artifacts of job {job.id}:</p><ul>{items or '<li>none</li>'}</ul>"]
    if (out / ADAPTER_DIR / "adapter_config.json").exists():
        parts.append(
            f"<p>The adapter <code>{html.escape(str(out / ADAPTER_DIR))}</code> can be "
            "picked as the model in the Playground, Chains and Preferences tabs.</p>"
        )
    table = next((t for t in (out / "eval" / "eval.md", out / "eval.md") if t.exists()), None)
    if table:
        parts.append(
            "<p>Tournament on the held-out split (open it in the Evaluate tab for the "
            "matrix and the answers):</p><pre class='eval-table'>"
            f"{html.escape(table.read_text())}</pre>"
        )
    return "".join(parts)


# --- the tab -------------------------------------------------------------------------------------


def _field_component(stage: str, f: dataclasses.Field) -> gr.components.Component:
    label, info = f.name, f.metadata.get("help", "")
    elem_id = field_elem_id(stage, f.name)
    if isinstance(f.default, bool):
        return gr.Checkbox(value=f.default, label=label, info=info, elem_id=elem_id)
    if isinstance(f.default, (int, float)):
        return gr.Number(
            value=f.default,
            label=label,
            info=info,
            elem_id=elem_id,
            precision=0 if isinstance(f.default, int) else None,
        )
    return gr.Dropdown(
        value=f.default,
        choices=[f.default] if f.default else [],
        label=label,
        info=info,
        allow_custom_value=True,
        elem_id=elem_id,
    )


# --- handlers: the store and plain values in, plain values and gr.update out (tested) -------


def field_choices(store: Store, name: str) -> dict[str, list[Any]]:
    """Folders from earlier jobs (those of the Chains and Preferences tabs and of pipelines
    included) offered where a stage reads them."""
    records = store.jobs()

    def folders(*kinds: str) -> list[tuple[str, str]]:
        return folder_choices(records, kinds)

    pms = store.trained(("reward", "pmp"), ADAPTER_DIR)
    models = [DEFAULT_MODEL, *adapter_choices(store)]
    return {
        "model": [DEFAULT_MODEL],
        "data": {
            "sft": folders("sft-data", "revise"),
            "reward": folders("label"),
            "dpo": folders("label"),
            "rahf": ["gold", *folders("label")],
            "pmp": [],
        }.get(name, []),
        "chains": folders("revise"),
        "pairs": (
            ["gold", "human", *folders("pairs", "label")]
            if name.startswith(("values", "steer"))
            else ["gold", *folders("pairs")]
        ),
        "read": ["gold", "human", ""],
        "policy": models if name == "pairs" else [],
        "labels": ["human", "gold", *folders("pairs", "label")],
        "human_labels": ["human", "gold", *folders("pairs", "label")],
        "pm": pms,
        "policy_adapter": adapter_choices(store),
        "reward_adapter": pms,
        "reward_probe": probe_choices(store),
        "init_adapter": pms,
        "constitution": constitution_choices(store),
        "prompts": (
            ["red-team,helpful", "red-team", "helpful"]
            if name == "evaluate"
            else ["red-team", "helpful"]
        ),
        "judge": ["logprob", "representation", "pm", "logprob,pm", "logprob,representation,pm"]
        if name == "evaluate"
        else [],
        "judge_from": folders("label"),
        "engine": list(ENGINES if name == "evaluate" else GENERATION_ENGINES),
        "report_to": list(TRACKERS),
        "alignment": list(ALIGNMENTS),
        "precision": list(PRECISIONS),
    }


def filled_values(store: Store, name: str, chosen_preset: str) -> dict[str, Any]:
    """Stage `name`'s field values under a preset, its constitution the one being edited
    where the preset leaves it open."""
    values = preset_values(name, chosen_preset)
    if "constitution" in values and not values["constitution"]:
        values["constitution"] = store.editing_name() or ""
    return values


def on_preset(store: Store, name: str, chosen_preset: str, previewed: str | None) -> dict[str, Any]:
    """Stage `name`'s fields from the preset (with their choices), by field id, and the
    preview of what they now say; the other stages' fields are left alone. `filled` says
    which stage and preset the form now holds."""
    values = filled_values(store, name, chosen_preset)
    choices = field_choices(store, name)
    fields = dataclasses.fields(FORMS[name])
    updates = {
        field_elem_id(name, f.name): gr.update(
            value=values[f.name], **({"choices": choices[f.name]} if f.name in choices else {})
        )
        for f in fields
    }
    return {
        **updates,
        **on_preview(store, name, previewed, *(values[f.name] for f in fields)),
        "filled": [name, chosen_preset],
    }


def on_stage(
    store: Store,
    name: str,
    chosen_preset: str,
    previewed: str | None,
    filled: list[str] | None = None,
) -> dict[str, Any]:
    """Stage `name` shown: its description, its form and Launch button (the others hidden),
    filled from the preset, and its preview. The stage and preset the form holds already
    (`filled`) change nothing: the stage picker fires again when it loses focus, and what
    the user has typed into the form since must not be reset to the preset."""
    if filled is not None and list(filled) == [name, chosen_preset]:
        return {}
    return {
        "description": gr.update(value=FORMS[name].__doc__),
        **{f"form-{s}": gr.update(visible=s == name) for s in FORMS},
        **{f"launch-{s}": gr.update(visible=s == name) for s in FORMS},
        **on_preset(store, name, chosen_preset, previewed),
    }


def run_folder(store: Store, name: str, previewed: str | None) -> Path:
    """The run folder the preview shows and Launch uses: the one shown already while it is
    unused and of this stage, else a fresh one."""
    if previewed and Path(previewed).name.startswith(f"{name}-") and not Path(previewed).exists():
        return Path(previewed)
    return store.new_run_folder(name)


def on_preview(store: Store, name: str, previewed: str | None, *raw: Any) -> dict[str, Any]:
    """The `command` and job file of stage `name`'s form values `raw` as they stand, with
    what still stops them from running; the run folder it names (`previewed`), which is the
    one Launch uses; and the form's `checks` (see `form_checks`)."""
    values = form_values(FORMS[name], list(raw))
    try:
        build_job(FORMS[name], values)
        problem = ""
    except StudioError as exc:
        problem = f"# not ready to launch: {exc}\n"
    folder = run_folder(store, name, previewed)
    return {
        "command": f"{problem}{command_line(name, folder)}\n\n# job.yaml\n" + job_yaml(values),
        "previewed": str(folder),
        "checks": form_checks(store, name, values),
    }


def form_checks(store: Store, name: str, values: dict[str, Any]) -> str:
    """Exactly the fields that are wrong, each with what it allows (and marked on the form:
    a style rule per field's box), or a warning when a number is absurd: a run longer than a
    day at the speed measured here."""
    cls = FORMS[name]
    try:
        job = build_job(cls, values)
    except ConfigError as exc:
        wrong = problem_fields(list(exc.problems), (f.name for f in dataclasses.fields(cls)))
        marks = "".join(
            f"#{field_elem_id(name, f)} input, #{field_elem_id(name, f)} textarea "
            "{box-shadow: 0 0 0 2px var(--bad-line) !important; "
            "background: var(--bad-bg) !important;}"
            for f in sorted(wrong)
        )
        fields = ", ".join(sorted(wrong)) or "the settings"
        return f"<style>{marks}</style>" + notice(
            "error", f"Not ready to launch — check {fields}:", list(exc.problems) or [str(exc)]
        )
    except StudioError as exc:
        return error_notice(exc)
    return run_length_notice(store, name, job)


def run_length_notice(store: Store, name: str, job: Any) -> str:
    """The warning box for a step count longer than a day here, or for bf16 asked of a CPU
    that emulates it ('' when there is none)."""
    warnings = [
        long_run_warning(name, job, store.jobs()),
        slow_warning(getattr(job, "precision", "auto")),
    ]
    return "".join(notice("info", f"Warning: {w}") for w in warnings if w)


def field_elem_id(stage: str, name: str) -> str:
    return f"train-{stage}-{name}".replace("_", "-")


def launch_stage(store: Store, name: str, values: dict[str, Any], out: Path) -> JobRecord:
    """Queue command `name` with these field values into `out`, as its job file; a
    constitution named from the store is frozen into the run folder first (the job reads it
    as it is now). Raises StudioError with what is wrong."""
    values = dict(values)
    refs = [r.strip() for r in str(values.get("constitution") or "").split(",") if r.strip()]
    if refs:  # several only where the command compares constitutions (values-report)
        values["constitution"] = ",".join(
            ref
            if Path(ref).is_file()
            else str(
                jobs.freeze_constitution(
                    resolve_choice(store, ref),
                    out,
                    "constitution-input.yaml" if len(refs) == 1 else f"constitution-input-{n}.yaml",
                )
            )
            for n, ref in enumerate(refs, 1)
        )
    job = build_job(FORMS[name], values)
    text = job_yaml(job)
    write_atomic(out / "job.yaml", text)
    return jobs.launch(
        store,
        name,
        [name, "--config", str(out / "job.yaml"), "--out", str(out)],
        out,
        getattr(job, "processes", 1),
        text,
    )


def launched(record: JobRecord) -> str:
    state = "queued behind the running job" if record.status == "queued" else "launched"
    return notice(
        "ok", f"Job {record.id} ({record.kind}) {state}; it writes into {record.out_dir}."
    )


def on_launch(store: Store, name: str, previewed: str | None, *raw: Any) -> dict[str, Any]:
    """Queue stage `name` with its form values `raw` into the folder the preview showed (a
    fresh one if that is taken); by name: message, the job to watch (`selected`), the job
    table."""
    values = form_values(FORMS[name], list(raw))
    try:
        record = launch_stage(store, name, values, run_folder(store, name, previewed))
    except StudioError as exc:
        return {"message": error_notice(exc)}
    job = build_job(FORMS[name], values)
    return {
        "message": launched(record) + run_length_notice(store, name, job),
        "selected": record.id,
        "jobs_table": gr.update(value=job_rows(jobs.refresh(store))),
    }


def launch_pipeline(store: Store) -> tuple[str, int | None]:
    """The one-click pipeline: every stage at the tiny preset on the constitution being
    edited. (message, the pipeline job)."""
    values = {**preset_values("run-all", "tiny"), "constitution": store.editing_name() or ""}
    try:
        record = launch_stage(store, "run-all", values, store.new_run_folder("run-all"))
    except StudioError as exc:
        return error_notice(exc), None
    return launched(record), record.id


def watched(
    store: Store, job_id: int | None, records: list[JobRecord] | None = None
) -> JobRecord | None:
    """The selected job (else the newest); `records` saves a second refresh per tick."""
    records = jobs.refresh(store) if records is None else records
    if job_id is not None:
        found = [j for j in records if j.id == job_id]
        if found:
            return found[0]
    return records[0] if records else None


PLOTS = tuple(f"plot_{n}" for n in range(PLOT_SLOTS))
JOB_VIEW = ("progress", *PLOTS, "log", "artifacts", "cancel", "health", "outliers")


def job_view(
    store: Store, job_id: int | None, smooth: float, records: list[JobRecord] | None = None
) -> dict[str, Any]:
    """The watched job by name: progress bar, PLOT_SLOTS plots, log tail, artifacts, Cancel's
    label, and for PPO its health and reward outliers."""
    job = watched(store, job_id, records)
    if job is None:
        hidden = gr.update(visible=False)
        return {
            "progress": "",
            **{plot: hidden for plot in PLOTS},
            "log": "",
            "artifacts": "",
            "health": "",
            "outliers": hidden,
        }
    metrics = read_metrics(job.out_dir)
    frames = list(metric_frames(metrics, float(smooth), CHANCE.get(job.kind)).items())
    x_lim = step_axis(metrics)
    plot_updates = {
        plot: gr.update(value=frames[n][1], title=frames[n][0], visible=True, x_lim=x_lim)
        if n < len(frames)
        else gr.update(visible=False)
        for n, plot in enumerate(PLOTS)
    }
    if job.kind == "run-all":
        bar = job_bar(job, "stages") + pipeline_html(job, records or jobs.refresh(store))
    else:
        bar = job_bar(job, STAGE_UNITS.get(job.kind, "steps"))
    health, outliers = rl_view(job, metrics)
    return {
        "progress": bar,
        **plot_updates,
        "log": job_folder.log_tail(job.out_dir, 30),
        "artifacts": artifacts_html(job),
        "cancel": gr.update(value=cancel_label(job)),
        "health": health,
        "outliers": outliers,
    }


def rl_view(job: JobRecord, metrics: list[dict]) -> tuple[str, Any]:
    """A PPO job's health warnings and its reward outliers (hidden for other stages)."""
    if job.kind != "ppo":
        return "", gr.update(visible=False)
    health = "".join(notice("error", w.text) for w in rl_health(metrics)) or (
        notice(
            "ok", "RL health: no warning (reward vs KL, answer length, refusals among the rollouts)"
        )
        if metrics
        else ""
    )
    rows = [
        [s["step"], s["extreme"], round(s["reward"], 4), s["prompt"][:120], s["answer"][:160]]
        for s in reward_outliers(read_jsonl_log(Path(job.out_dir) / "samples.jsonl"))
    ]
    return health, gr.update(value=pd.DataFrame(rows, columns=OUTLIER_HEADERS), visible=bool(rows))


def on_check_pm(store: Store, job_id: int | None) -> str:
    """Does the PM agree with the AI judge it learned from, on the watched PPO run's samples?"""
    job = watched(store, job_id)
    if job is None or job.kind != "ppo":
        return notice("error", "Pick a PPO job in the table first.")
    try:
        result = pm_judge_disagreement(job.out_dir)
    except StudioError as exc:
        return error_notice(exc)
    share = result.disagreeing / result.compared if result.compared else 0.0
    return notice("error" if share > 0.5 else "ok", result.text)


def outlier_html(job: JobRecord | None, step: int, extreme: str) -> str:
    """One reward outlier: its prompt, answer and PM score, and the PM's nearest training
    pairs with their labels (what taught the PM to score it so)."""
    if job is None:
        return ""
    sample = next(
        (
            s
            for s in reward_outliers(read_jsonl_log(Path(job.out_dir) / "samples.jsonl"))
            if s["step"] == step and s["extreme"] == extreme
        ),
        None,
    )
    if sample is None:
        return notice("error", "That sample is no longer in the run.")
    parts = [
        f'<div class="chain-card"><p class="chain-label">step {step} · {extreme} reward '
        f"{sample['reward']:+.4f}</p><p><b>Prompt</b>: {html.escape(sample['prompt'])}</p>"
        f"<p><b>Answer</b>: {html.escape(sample['answer'])}</p></div>"
    ]
    pm, labels = pm_training_labels(job.out_dir)
    if not labels:
        return "".join(parts) + notice(
            "info",
            "The preference model's training labels could not "
            "be traced from this run (its job.yaml files).",
        )
    loaded = load_model(read_job_file(Path(job.out_dir) / "job.yaml").get("model") or DEFAULT_MODEL)
    near = nearest_pairs(loaded, sample["prompt"], sample["answer"], labels)
    items = "".join(
        f"<li>similarity {sim:.2f} · P(A) {pref.p_a:.2f} (the AI preferred "
        f"{'A' if pref.p_a > 0.5 else 'B' if pref.p_a < 0.5 else 'neither'}): "
        f"<i>{html.escape(pref.pair.prompt[:100])}</i>"
        f"<br>A: {html.escape(pref.pair.response_a[:160])}"
        f"<br>B: {html.escape(pref.pair.response_b[:160])}</li>"
        for sim, pref in near
    )
    return "".join(parts) + (
        f"<p>Nearest training pairs of the PM <code>{html.escape(pm)}</code> "
        f"(base model's states, cosine):</p><ol>{items}</ol>"
    )


def on_tick(store: Store, job_id: int | None, smooth: float, shown: list) -> dict[str, Any]:
    """Every timer tick: the job table (only when it changed; `shown_rows` remembers what is
    on screen) and the watched job's view."""
    records = jobs.refresh(store)
    rows = job_rows(records)
    table = {} if rows == shown else {"jobs_table": gr.update(value=rows)}
    return {**table, "shown_rows": rows, **job_view(store, job_id, smooth, records)}


def on_cancel(store: Store, job_id: int | None, confirmed: int | None) -> dict[str, Any]:
    return cancel_notice(
        store,
        watched(store, job_id),
        "The selected job is not running or queued.",
        "it saves a checkpoint and stops; Resume continues from it.",
        confirmed,
    )


def on_resume(store: Store, job_id: int | None) -> dict[str, Any]:
    text, again = resume_notice(
        store, watched(store, job_id), "it continues from the last checkpoint."
    )
    return {"message": text, "selected": again.id if again else job_id}


@dataclass
class TrainView:
    """What other tabs reach in the Train tab: the watched job, and its stage form by name
    (what `on_show_stage` updates) with the run folder its preview names."""

    watched: gr.State
    previewed: gr.State
    form: dict[str, Any]


def on_show_stage(store: Store, name: str, previewed: str | None) -> dict[str, Any]:
    """The form switched to stage `name` at the tiny preset: the picker's value too."""
    return {"stage": gr.update(value=name), **on_stage(store, name, "tiny", previewed)}


def build(store: Store, demo: gr.Blocks, beat: Heartbeat) -> TrainView:
    """Lay out the tab and wire its events; returns what another tab needs to open a job or
    a stage here."""
    gr.Markdown(
        "Train from the same pipeline: SFT on revisions, a preference model on the AI "
        "labels, PPO against it, or DPO or RAHF on the labels — or the whole pipeline in "
        "one click; extract steering directions for the Playground. Every job is also a "
        "command (shown below), queued and run one at a time."
    )
    with gr.Row():
        stage = gr.Dropdown(
            label="Stage",
            choices=[(TITLES[s], s) for s in FORMS],
            value="sft",
            elem_id="train-stage",
            scale=3,
        )
        preset_name = gr.Dropdown(
            label="Preset",
            choices=[NO_PRESET, *PRESETS],
            value="tiny",
            elem_id="train-preset",
            scale=1,
        )
    description = gr.Markdown(FORMS["sft"].__doc__, elem_id="train-description")
    forms: dict[str, list[gr.components.Component]] = {}
    groups = {}
    for name, cls in FORMS.items():
        with gr.Group(visible=name == "sft") as groups[name]:
            with gr.Row(equal_height=False):
                forms[name] = []
                for f in dataclasses.fields(cls):
                    forms[name].append(_field_component(name, f))
    command = gr.Code(
        label="Command (runs the same on any machine)",
        language="shell",
        elem_id="train-command",
        interactive=False,
    )
    with gr.Row():
        launches = {
            name: gr.Button(
                "Launch", variant="primary", visible=name == "sft", elem_id=f"train-launch-{name}"
            )
            for name in FORMS
        }
        cancel, resume = job_buttons("train", "job")
    checks = gr.HTML(elem_id="train-checks")
    message = gr.HTML(elem_id="train-message")
    jobs_table = gr.Dataframe(
        headers=JOB_HEADERS,
        interactive=False,
        elem_id="train-jobs",
        label="Jobs (newest first; click one to watch it)",
    )
    selected = gr.State(None)
    progress = gr.HTML(elem_id="train-progress")
    smoothing = gr.Slider(
        0, 0.95, value=0.6, step=0.05, label="Plot smoothing (EMA)", elem_id="train-smoothing"
    )
    plots = step_plots(PLOT_SLOTS, "train-plot", "series")
    log = gr.Code(label="Log (last lines)", language=None, elem_id="train-log", interactive=False)
    artifacts = gr.HTML(elem_id="train-artifacts")
    health = gr.HTML(elem_id="train-health")
    outliers = gr.Dataframe(
        headers=OUTLIER_HEADERS,
        interactive=False,
        visible=False,
        elem_id="train-outliers",
        label="Reward outliers: each step's highest- and lowest-rewarded answer (click one)",
    )
    outlier = gr.HTML(elem_id="train-outlier")
    check = gr.Button(
        "PPO: check the PM against the AI judge on this run's samples", elem_id="train-check-pm"
    )
    checked = gr.HTML(elem_id="train-check-pm-result")

    shown_rows = gr.State([])
    views = {
        "message": message,
        "selected": selected,
        "jobs_table": jobs_table,
        "shown_rows": shown_rows,
        **dict(zip(JOB_VIEW, (progress, *plots, log, artifacts, cancel, health, outliers))),
    }
    job_views = pick(views, *JOB_VIEW)

    def on_select(evt: gr.SelectData, smooth):
        job_id = int(evt.row_value[0])
        return to_components({"selected": job_id, **job_view(store, job_id, smooth)}, views)

    def on_outlier(job_id: int | None, evt: gr.SelectData) -> str:
        row = evt.row_value or []
        job = watched(store, job_id)
        return outlier_html(job, int(row[0]), str(row[1])) if len(row) > 1 else ""

    previewed = gr.State(None)  # the run folder the command shows: Launch uses it
    filled = gr.State(None)  # [stage, preset] the form was last filled from
    previewed_views = {"command": command, "previewed": previewed, "checks": checks}
    form = {
        "stage": stage,
        "description": description,
        **{f"form-{name}": group for name, group in groups.items()},
        **{f"launch-{name}": button for name, button in launches.items()},
        **{c.elem_id: c for fields in forms.values() for c in fields},
        **previewed_views,
        "filled": filled,
    }
    # Each event reads the fields of one stage only: Gradio's page re-applies the loading
    # status of every component any event has read, on every status change of any event,
    # so one event reading all 235 fields cost the idle page a core. The spinner of a
    # stage switch is on the description alone for the same reason. The form's events run
    # in order: the stage picker sends its `input` twice for one choice, and the second must
    # read the `filled` the first wrote (not reset what the user typed since); and a preview
    # answered late must not land over a newer one.
    form_order = in_order("train-form")
    for event in (stage.input, preset_name.input):
        wire(
            event,
            partial(on_stage, store),
            [stage, preset_name, previewed, filled],
            form,
            show_progress_on=description,
            **form_order,
        )
    wire(demo.load, partial(on_preset, store), [stage, preset_name, previewed], form, **form_order)
    for name, fields in forms.items():
        preview = partial(on_preview, store, name)
        for field in fields:
            wire(
                field.input, preview, [previewed, *fields], previewed_views, **form_order, **NEWEST
            )
        launched = wire(
            launches[name].click,
            partial(on_launch, store, name),
            [previewed, *fields],
            pick(views, "message", "selected", "jobs_table"),
            **form_order,
        )
        wire(launched.then, preview, [previewed, *fields], previewed_views, **form_order)
        beat.kick(launched)
    armed = gr.State(None)  # the pipeline job a first Cancel press asked to confirm
    wire(
        cancel.click,
        partial(on_cancel, store),
        [selected, armed],
        {"message": message, "armed": armed},
    )
    beat.kick(
        wire(
            resume.click,
            partial(on_resume, store),
            selected,
            {"message": message, "selected": selected},
        )
    )
    jobs_table.select(on_select, smoothing, [selected, *job_views.values()])
    outliers.select(on_outlier, selected, outlier)
    check.click(partial(on_check_pm, store), selected, checked)
    wire(smoothing.input, partial(job_view, store), [selected, smoothing], job_views, **NEWEST)
    beat.watch(
        partial(on_tick, store),
        [selected, smoothing, shown_rows],
        {"jobs_table": jobs_table, "shown_rows": shown_rows, **job_views},
    )
    return TrainView(selected, previewed, form)
