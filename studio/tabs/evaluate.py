"""Evaluate tab: a policy tournament a researcher can believe. Pick policies (the base and any
trained adapter), prompt sets, judges and a number of prompts → a background `evaluate` job;
then the ratings with their intervals, the win matrix (click a cell: the prompts and both
answers behind it, with the judge's label and its per-principle breakdown), the
harmless–helpful scatter, per-category tables, evasiveness and length drift. *Blind A/B*
lets a person judge the same comparisons (answers shuffled, policy names hidden until
labelled); their labels join the ratings as their own judge."""

from __future__ import annotations

import html
import random
from functools import partial
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import pandas as pd

from pipeline.cai.trust import label_verdict
from pipeline.config.commands import TOURNAMENT_JUDGES, EvaluateJob, build_job, to_argv
from pipeline.config.settings import DEFAULT_MODEL, ENGINES
from pipeline.core.errors import StudioError
from pipeline.core.seeds import stable_int
from pipeline.data.store import JobRecord, Store
from pipeline.evaluation.judges import PEOPLE
from pipeline.evaluation.tournament import (
    EVAL_FILE,
    AxisResult,
    JudgeResult,
    MatchLog,
    TournamentResult,
    comparisons_between,
    comparisons_with,
    read_results,
    rerated,
    split_policy,
)
from pipeline.runner import jobs
from pipeline.train.runtime import ADAPTER_DIR
from studio.components.choices import (
    adapter_choices,
    constitution_choices,
    default_choice,
    resolve_choice,
)
from studio.components.heartbeat import Heartbeat
from studio.components.job_panel import cancel_notice, job_bar, latest_job, writing_now
from studio.components.judges_panel import latest_board
from studio.components.notices import error_notice, notice, verdict_html
from studio.wiring import NEWEST, in_order, named, wire

KIND = "evaluate"
PROMPT_SETS = ("red-team", "helpful")
KEYS_JS = """
() => {
  if (window.blindKeys) return;
  window.blindKeys = true;
  document.addEventListener('keydown', (e) => {
    const box = document.querySelector('#evaluate-blind');
    if (!box || box.offsetParent === null) return;
    if (['INPUT', 'TEXTAREA'].includes(document.activeElement?.tagName)) return;
    const ids = {a: 'evaluate-blind-a', b: 'evaluate-blind-b', t: 'evaluate-blind-tie'};
    const id = ids[e.key.toLowerCase()];
    const button = id && document.getElementById(id);
    if (button) { window.cstudioPress(button); e.preventDefault(); }
  });
}
"""


def run_folders(store: Store) -> list[str]:
    """Finished tournaments: evaluate jobs, and the closing tournament of each pipeline."""
    found = [j.out_dir for j in store.jobs(KIND) if j.status == "succeeded"]
    return [f for f in dict.fromkeys(found) if (Path(f) / EVAL_FILE).exists()]


def policy_name(spec: str, taken: set[str]) -> str:
    """A short unique name for a policy: an adapter's stage run folder (sft-…, ppo-…), a
    model's last path part, or 'steered' for a steered setting."""
    model, steer = split_policy(spec)
    path = Path(model)
    base = (
        "steered"
        if steer
        else (path.parent.name if path.name == ADAPTER_DIR else path.name) or "policy"
    )
    name, n = base, 2
    while name in taken or name == "base":
        name, n = f"{base}-{n}", n + 1
    return name


def typed_policies(text: str | None) -> list[str]:
    """Policies typed one per line (or separated by commas): models, adapter folders, or
    steered settings."""
    return [x.strip() for line in (text or "").splitlines() for x in line.split(",") if x.strip()]


def launch_values(
    store: Store,
    base: str,
    adapters: list[str],
    typed: str | None,
    sets: list[str],
    judges: list[str],
    constitution: str | None,
    pm: str | None,
    limit: float,
    new_tokens: float,
    processes: float,
    engine: str | None = None,
) -> dict[str, Any]:
    taken: set[str] = set()
    specs = []
    for folder in [*(adapters or []), *typed_policies(typed)]:
        name = policy_name(folder, taken)
        taken.add(name)
        specs.append(f"{name}={folder}")
    return {
        "base": base or DEFAULT_MODEL,
        "policy": ",".join(specs),
        "prompts": ",".join(sets or []),
        "judge": ",".join(judges or []),
        "constitution": constitution or "",
        "reward_adapter": pm or "",
        "limit": int(limit or 0),
        "max_new_tokens": int(new_tokens),
        "processes": 1 if processes is None else int(processes),
        "engine": engine or "auto",
        "judge_from": auto_source(store) if "auto" in (judges or []) else "",
    }


def auto_source(store: Store) -> str:
    """What the auto judge stands for here: the newest judges comparison's choice ('' when
    none ran yet: the job's check then says auto needs one)."""
    job = latest_board(store)
    return job.out_dir if job else ""


def on_launch(
    store: Store,
    base: str,
    adapters: list[str],
    typed: str | None,
    sets: list[str],
    judges: list[str],
    constitution: str | None,
    pm: str | None,
    limit: float,
    new_tokens: float,
    processes: float = 1,
    engine: str | None = None,
) -> dict[str, Any]:
    """The tournament as a background job: its message (the run is picked when it ends)."""
    values = launch_values(
        store,
        base,
        adapters,
        typed,
        sets,
        judges,
        constitution,
        pm,
        limit,
        new_tokens,
        processes,
        engine,
    )
    try:
        build_job(EvaluateJob, values)  # every problem named before anything is written
        out = store.new_run_folder("tournament")
        if constitution:
            values["constitution"] = str(
                jobs.freeze_constitution(
                    resolve_choice(store, constitution), out, "constitution-input.yaml"
                )
            )
        job = build_job(EvaluateJob, values)
        record = jobs.launch(store, KIND, to_argv(KIND, job, out), out, processes=job.processes)
    except StudioError as exc:
        return {"message": error_notice(exc)}
    return {
        "message": notice(
            "ok",
            f"Launched job {record.id}: a tournament of {len(job.policies)} policies into {out}.",
        )
    }


# --- what the results look like -----------------------------------------------------------


def judged(
    result: TournamentResult, judge: str | None, axis: str | None
) -> tuple[JudgeResult | None, AxisResult | None]:
    """One judge's results and, of those, one axis's (None where absent)."""
    j = next((x for x in result.judges if x.judge == judge), None)
    return j, next((x for x in j.axes if x.axis == axis), None) if j else None


def ratings_html(result: TournamentResult, judge: str, axis: str) -> str:
    """Each policy's Elo as a bar with its interval, the judge's warning first."""
    j, a = judged(result, judge, axis)
    if a is None:
        return notice("info", f"No comparisons by {judge} on {axis}.")
    span = max([abs(v) for r in a.ratings for v in (r["low"], r["high"]) if v == v] + [100.0])
    rows = []
    for r in a.ratings:

        def at(v: float) -> float:
            return 50 + 50 * v / span

        low, high = sorted((at(r["low"]), at(r["high"])))
        rows.append(
            f'<div class="rating-row" data-policy="{html.escape(r["name"])}">'
            f'<span class="rating-name">{html.escape(r["name"])}</span>'
            f'<span class="rating-track"><span class="rating-interval" style="left:{low:.1f}%;'
            f'width:{max(high - low, 0.5):.1f}%"></span><span class="rating-point" '
            f'style="left:{at(r["elo"]):.1f}%"></span></span>'
            f"<span>{r['elo']:+.0f} ({r['low']:+.0f} … {r['high']:+.0f}), "
            f"{r['comparisons']} comparisons</span></div>"
        )
    warn = notice("error", j.warning) if j.warning else ""
    return (
        warn + f'<p class="chain-label">Elo relative to {html.escape(result.policies[0])} '
        f"(0), 95% bootstrap interval over prompts; {a.comparisons} comparisons, both orders, "
        f"{j.position_decided:.0%} position-decided.</p>" + "".join(rows)
    )


def matrix_frame(result: TournamentResult, judge: str, axis: str):
    """The win matrix as a heatmap: blue where the row wins, red where it loses."""
    j, a = judged(result, judge, axis)
    rows = a.matrix if a else [[None] * len(result.policies) for _ in result.policies]
    frame = pd.DataFrame(
        [
            [name, *["—" if x is None else f"{x:.0%}" for x in row]]
            for name, row in zip(result.policies, rows)
        ],
        columns=["row beats column", *result.policies],
    )

    def colour(column: pd.Series) -> list[str]:
        if column.name == "row beats column":
            return [""] * len(column)
        out = []
        for value in column:
            if value == "—":
                out.append("")
                continue
            x = int(value[:-1]) / 100
            hue = 210 if x >= 0.5 else 0  # blue wins, red losses
            out.append(f"background-color: hsla({hue}, 80%, 50%, {abs(x - 0.5) * 1.2:.2f})")
        return out

    return frame.style.apply(colour)


def scatter_frame(result: TournamentResult, judge: str) -> pd.DataFrame:
    """Harmlessness against helpfulness Elo per policy (the CAI paper's Pareto view)."""
    j, _ = judged(result, judge, None)
    by_axis = {a.axis: {r["name"]: r["elo"] for r in a.ratings} for a in (j.axes if j else [])}
    harmless, helpful = by_axis.get("harmlessness", {}), by_axis.get("helpfulness", {})
    return pd.DataFrame(
        [
            {"helpfulness Elo": helpful[p], "harmlessness Elo": harmless[p], "policy": p}
            for p in result.policies
            if p in harmless and p in helpful
        ],
        columns=["helpfulness Elo", "harmlessness Elo", "policy"],
    )


def padded_limits(values: list[float], share: float = 0.15) -> list[float]:
    """An axis range with room around the points (a point on the frame's edge cannot be
    reached by a drag), at least ±10 Elo."""
    low, high = min(values + [0.0]), max(values + [0.0])
    pad = max((high - low) * share, 10.0)
    return [low - pad, high + pad]


def scatter_update(result: TournamentResult, judge: str) -> dict:
    frame = scatter_frame(result, judge)
    return gr.update(
        value=frame,
        x_lim=padded_limits(frame["helpfulness Elo"].tolist()),
        y_lim=padded_limits(frame["harmlessness Elo"].tolist()),
    )


def categories_frame(result: TournamentResult, judge: str, axis: str) -> pd.DataFrame:
    j, a = judged(result, judge, axis)
    rows = [
        [category, *[f"{scores[p]:.0%}" if p in scores else "—" for p in result.policies]]
        for category, scores in (a.categories.items() if a else [])
    ]
    return pd.DataFrame(
        rows, columns=["category (mean score in its comparisons)", *result.policies]
    )


def stats_frame(result: TournamentResult) -> pd.DataFrame:
    return pd.DataFrame(
        [
            [
                s.name,
                f"{s.mean_words:.1f}",
                "—" if s.refusal_rate is None else f"{s.refusal_rate:.0%}",
                f"{s.limit_rate:.0%}",
                "—" if s.pm_mean is None else f"{s.pm_mean:+.3f} ± {s.pm_std:.3f}",
                s.answered_by,
            ]
            for s in result.stats
        ],
        columns=[
            "policy",
            "mean words (length drift)",
            "refusals on helpful prompts (evasiveness)",
            "cut at the token limit",
            "PM score",
            "answered by",
        ],
    )


def agreement_html(result: TournamentResult) -> str:
    if not result.agreement:
        return ""
    items = []
    for a in result.agreement:
        share = "" if a["rate"] is None else f" ({a['rate']:.0%})"
        items.append(
            f"<li>{html.escape(a['judges'][0])} and {html.escape(a['judges'][1])}: same "
            f"winner on {a['agreeing']} of {a['compared']} comparisons{share}</li>"
        )
    return f"<p>Judges' agreement (ties left out):</p><ul>{''.join(items)}</ul>"


def judge_choices(result: TournamentResult) -> list[str]:
    return [j.judge for j in result.judges]


def axis_choices(result: TournamentResult, judge: str | None) -> list[str]:
    j, _ = judged(result, judge, None)
    return [a.axis for a in j.axes] if j else []


SHOWN = ("judge", "axis", "ratings", "matrix", "scatter", "categories", "stats", "agreement")
TABLES = ("matrix", "scatter", "categories", "stats")  # hidden while no tournament is shown


def nothing_shown(ratings: str) -> dict[str, Any]:
    """The results area with no tournament: a line where the ratings go, its tables hidden."""
    hidden = {name: gr.update(value=None, visible=False) for name in TABLES}
    return {"ratings": ratings, **hidden, "agreement": ""}


def show(store: Store, folder: str | None, judge: str | None, axis: str | None) -> dict[str, Any]:
    """A tournament's judge and axis pickers, ratings, matrix, scatter, categories, stats and
    judges' agreement, by name."""
    if not folder:
        return nothing_shown(NO_TOURNAMENT)
    try:
        result = rerated(folder, store.human_labels())
    except (StudioError, OSError, KeyError) as exc:
        return nothing_shown(notice("error", f"Cannot read the tournament in {folder}: {exc}"))
    judges = judge_choices(result)
    judge = judge if judge in judges else (judges[0] if judges else None)
    axes = axis_choices(result, judge)
    axis = axis if axis in axes else (axes[0] if axes else None)
    return {
        "judge": gr.update(choices=judges, value=judge),
        "axis": gr.update(choices=axes, value=axis),
        "ratings": ratings_html(result, judge, axis),
        "matrix": gr.update(value=matrix_frame(result, judge, axis), visible=True),
        "scatter": {**scatter_update(result, judge), "visible": True},
        "categories": gr.update(value=categories_frame(result, judge, axis), visible=True),
        "stats": gr.update(value=stats_frame(result), visible=True),
        "agreement": agreement_html(result),
    }


# What the results area says before any tournament is picked (its tables stay hidden till then).
NO_TOURNAMENT = notice(
    "info",
    "No tournament shown yet: pick the policies, prompt sets and judges "
    "above and press Run the tournament; a finished one appears in the "
    "Tournament picker and its ratings, win rates and per-category "
    "tables here.",
)


def comparison_cards(found: list, a: str, b: str) -> str:
    """Each comparison of `a` with `b`: the prompt, both answers, P(a better) with its
    verdict, and the per-principle labels in both orders."""
    parts = []
    for prompt, c, answer_a, answer_b in found:
        p_a = c.preference.p_a if c.a == a else 1 - c.preference.p_a
        pref = c.preference
        verdict = (
            label_verdict(pref.p_a, pref.p_a_ab, pref.p_a_ba, pref.pair.identical)
            if pref.labels
            else None
        )
        principles = "".join(
            f"<li>{html.escape(x.principle_id)}: P(A) {x.p_a_ab:.2f} with A first, "
            f"{x.p_a_ba:.2f} with B first</li>"
            for x in pref.labels
        )
        parts.append(
            f'<div class="chain-card evaluate-cell"><p class="chain-label">'
            f"{html.escape(prompt.category or '')} · {html.escape(prompt.prompt)}</p>"
            f'<div class="diff2"><div><b>{html.escape(a)}</b><p>{html.escape(answer_a)}</p></div>'
            f"<div><b>{html.escape(b)}</b><p>{html.escape(answer_b)}</p></div></div>"
            f"<p>P({html.escape(a)} better) = {p_a:.3f}"
            f"{' — ' + verdict_html(verdict) if verdict else ''}</p>"
            f"{'<ul>' + principles + '</ul>' if principles else ''}</div>"
        )
    return "".join(parts)


def cell_html(
    store: Store, folder: str | None, judge: str | None, axis: str | None, row: int, column: int
) -> str:
    """The comparisons behind one cell of the win matrix (row policy vs column policy)."""
    if not folder or not judge or not axis:
        return ""
    policies = read_results(folder).policies
    if column < 1 or row == column - 1 or row >= len(policies) or column > len(policies):
        return notice("info", "Click a cell off the diagonal: row policy against column policy.")
    a, b = policies[row], policies[column - 1]
    found = comparisons_between(folder, judge, a, b, axis, store.human_labels())
    if not found:
        return notice("info", f"{judge} did not compare {a} with {b} on {axis}.")
    return (
        f"<h4>{html.escape(a)} against {html.escape(b)} — {html.escape(axis)}, judged by "
        f"{html.escape(judge)}</h4>" + comparison_cards(found, a, b)
    )


def axis_ratings(result: TournamentResult, judge: str) -> dict[str, dict[str, dict]]:
    """axis → policy → its rating (Elo and interval) by one judge."""
    j, _ = judged(result, judge, None)
    return {a.axis: {r["name"]: r for r in a.ratings} for a in (j.axes if j else [])}


def points_in(result: TournamentResult, judge: str, low: float, high: float) -> list[str]:
    """The policies drawn on the scatter (rated on both axes) whose helpfulness Elo lies in
    [low, high]."""
    ratings = axis_ratings(result, judge)
    helpful, harmless = ratings.get("helpfulness", {}), ratings.get("harmlessness", {})
    return [
        p
        for p in result.policies
        if p in helpful and p in harmless and low <= helpful[p]["elo"] <= high
    ]


def points_html(
    store: Store, folder: str | None, judge: str | None, helpfulness: tuple[float, float]
) -> str:
    """The scatter's points whose helpfulness Elo lies in the selected range: each policy's
    place on both axes with its intervals, and every comparison behind it (against each
    other policy, per axis, folded)."""
    if not folder or not judge:
        return ""
    humans = store.human_labels()
    result = rerated(folder, humans)
    low, high = sorted(helpfulness)
    ratings = axis_ratings(result, judge)
    chosen = points_in(result, judge, low, high)
    if not chosen:
        return notice(
            "info",
            f"No policy has a helpfulness Elo between {low:+.0f} and {high:+.0f}; "
            "drag across the points to select them.",
        )
    parts = []
    for p in chosen:
        place = "; ".join(
            f"{axis} Elo {r[p]['elo']:+.0f} (95% interval {r[p]['low']:+.0f} … {r[p]['high']:+.0f})"
            for axis, r in ratings.items()
            if p in r
        )
        parts.append(
            f'<h4 class="evaluate-point">{html.escape(p)} — {html.escape(place)}, '
            f"relative to {html.escape(result.policies[0])}, judged by "
            f"{html.escape(judge)}</h4>"
        )
        every = comparisons_with(folder, judge, p, humans)
        for other in result.policies:
            for axis in ratings:
                found = [
                    (prompt, c, x, y)
                    for prompt, c, x, y, them in every
                    if them == other and prompt.axis == axis
                ]
                if found:
                    parts.append(
                        f"<details><summary>against {html.escape(other)} on "
                        f"{html.escape(axis)} ({len(found)} comparisons)</summary>"
                        f"{comparison_cards(found, p, other)}</details>"
                    )
    return "".join(parts)


# --- blind A/B ----------------------------------------------------------------------------


def blind_queue(store: Store, folder: str) -> list:
    """The tournament's comparisons (one per prompt and pair of policies) people have not
    labelled yet, in a seeded shuffled order."""
    humans = store.human_labels()
    seen, queue = set(), []
    for c in MatchLog(folder).read():
        key = (c.prompt_id, c.a, c.b)
        if key in seen or c.preference.pair.identical:
            continue
        seen.add(key)
        if c.preference.pair.id not in humans:
            queue.append(c)
    random.Random(stable_int("blind", folder)).shuffle(queue)
    return queue


def blind_view(store: Store, folder: str | None) -> dict[str, Any]:
    """The next comparison shown `blind`, and its `blind_state`: (pair id, swapped)."""
    if not folder:
        return {"blind": notice("error", "Pick a tournament first."), "blind_state": None}
    queue = blind_queue(store, folder)
    if not queue:
        done = notice("ok", "Every comparison of this tournament has a person's label.")
        return {"blind": done, "blind_state": None}
    c = queue[0]
    swapped = stable_int("blind-order", c.preference.pair.id) % 2 == 1
    first, second = (
        (c.preference.pair.response_b, c.preference.pair.response_a)
        if swapped
        else (c.preference.pair.response_a, c.preference.pair.response_b)
    )
    return {
        "blind": f'<div class="chain-card" data-left="{len(queue)}"><p class="chain-label">'
        f"{len(queue)} left · press A, B or T (tie)</p>"
        f"<p><b>Prompt</b>: {html.escape(c.preference.pair.prompt)}</p>"
        f'<div class="diff2"><div><b>Answer A</b><p>{html.escape(first)}</p></div>'
        f"<div><b>Answer B</b><p>{html.escape(second)}</p></div></div></div>",
        "blind_state": (c.preference.pair.id, swapped),
    }


def on_blind_label(store: Store, folder: str | None, state: Any, choice: str) -> dict[str, Any]:
    """Record a person's choice (in the pair's own orientation), reveal who wrote what
    (`blind_message`), and show the next comparison (`blind_view`'s outputs)."""
    if not folder or not state:
        return {"blind_message": "", **blind_view(store, folder)}
    pair_id, swapped = state
    found = next((c for c in MatchLog(folder).read() if c.preference.pair.id == pair_id), None)
    if found is None:
        gone = notice("error", "That comparison is no longer in the tournament.")
        return {"blind_message": gone, **blind_view(store, folder)}
    pair = found.preference.pair
    own = {"A": "B", "B": "A"}.get(choice, choice) if swapped else choice
    store.set_human_label(pair.id, own, pair.prompt, pair.response_a, pair.response_b, "blind")
    shown = (found.b, found.a) if swapped else (found.a, found.b)
    said = {"A": f"A ({shown[0]})", "B": f"B ({shown[1]})", "tie": "a tie"}[choice]
    message = notice("ok", f"Recorded {said}: answer A was {shown[0]}, answer B was {shown[1]}.")
    return {"blind_message": message, **blind_view(store, folder)}


# --- the job ------------------------------------------------------------------------------


def latest(store: Store) -> JobRecord | None:
    return latest_job(store, (KIND,))


def on_page_load(store: Store) -> dict[str, Any]:
    folders = run_folders(store)
    return {
        "adapters": gr.update(choices=adapter_choices(store)),
        "constitution": gr.update(choices=constitution_choices(store), value=default_choice(store)),
        "pm": gr.update(choices=store.trained(("reward",), ADAPTER_DIR)),
        "progress": job_bar(latest(store), "comparisons"),
        "run": gr.update(choices=folders, value=folders[0] if folders else None),
    }


def on_timer(store: Store, shown: str | None) -> dict[str, Any]:
    job = latest(store)
    bar = job_bar(job, "comparisons")
    if job is not None and job.status == "succeeded" and writing_now(job) and shown != job.out_dir:
        folders = run_folders(store)
        return {"progress": bar, "run": gr.update(choices=folders, value=job.out_dir)}
    return {"progress": bar}


def on_cancel(store: Store, confirmed: int | None) -> dict[str, Any]:
    return cancel_notice(
        store,
        latest(store),
        "No tournament is running.",
        "its answers and comparisons are kept; launching it again resumes.",
        confirmed,
    )


def build(store: Store, demo: gr.Blocks, beat: Heartbeat) -> gr.Dropdown:
    """Lay out the tab and wire its events; returns the tournament picker."""
    gr.Markdown(
        "Which policy is better, on which axis, and can the judge say? Each policy "
        "answers held-out prompts once; judges compare every two policies on the same "
        "prompt in both orders; ratings are Bradley–Terry strengths on the Elo scale "
        "with 95% bootstrap intervals over prompts — harmlessness (red-team prompts) "
        "and helpfulness (helpful prompts) apart."
    )
    message = gr.HTML(elem_id="evaluate-message")
    with gr.Row():
        base = gr.Dropdown(
            label="Base model (Elo 0)",
            choices=[DEFAULT_MODEL],
            value=DEFAULT_MODEL,
            allow_custom_value=True,
            elem_id="evaluate-base",
        )
        adapters = gr.CheckboxGroup(
            label="Policies: trained adapters from the job table",
            choices=[],
            elem_id="evaluate-policies",
            scale=2,
        )
        typed = gr.Textbox(
            label="More policies, one per line: a model, an adapter folder, or "
            "MODEL@steer:DIR:COEFFICIENT[:LAYER] (a steered setting)",
            lines=2,
            elem_id="evaluate-typed",
            scale=2,
        )
    with gr.Row():
        sets = gr.CheckboxGroup(
            list(PROMPT_SETS),
            value=list(PROMPT_SETS),
            label="Prompt sets (test split)",
            elem_id="evaluate-sets",
        )
        judges = gr.CheckboxGroup(
            list(TOURNAMENT_JUDGES), value=["logprob"], label="Judges", elem_id="evaluate-judges"
        )
        constitution = gr.Dropdown(
            label="Constitution (logprob, representation)",
            choices=[],
            elem_id="evaluate-constitution",
        )
        pm = gr.Dropdown(
            label="Preference model (pm judge, PM scores)",
            choices=[],
            allow_custom_value=True,
            elem_id="evaluate-pm",
        )
    with gr.Row():
        limit = gr.Number(value=8, precision=0, label="prompts per set", elem_id="evaluate-limit")
        new_tokens = gr.Slider(
            16, 512, value=64, step=16, label="max new tokens", elem_id="evaluate-max-tokens"
        )
        processes = gr.Number(
            value=1,
            precision=0,
            minimum=1,
            elem_id="evaluate-processes",
            label="processes (>1: accelerate launch, one per GPU)",
        )
        engine = gr.Dropdown(
            list(ENGINES),
            value="auto",
            elem_id="evaluate-engine",
            label="answers by (auto: vLLM where installed with a GPU)",
        )
        launch = gr.Button("Run the tournament", variant="primary", elem_id="evaluate-launch")
        cancel = gr.Button("Cancel", variant="stop", elem_id="evaluate-cancel")
    progress = gr.HTML(elem_id="evaluate-progress")
    with gr.Row():
        run = gr.Dropdown(label="Tournament", choices=[], elem_id="evaluate-run", scale=3)
        # a redraw may carry a judge or axis from the list before the last redraw (show()
        # falls back to the first one offered), so the pickers accept it instead of failing
        judge = gr.Dropdown(
            label="Judge", choices=[], elem_id="evaluate-judge", allow_custom_value=True
        )
        axis = gr.Dropdown(
            label="Axis", choices=[], elem_id="evaluate-axis", allow_custom_value=True
        )
    ratings = gr.HTML(NO_TOURNAMENT, elem_id="evaluate-ratings")
    with gr.Row():
        matrix = gr.Dataframe(
            interactive=False,
            elem_id="evaluate-matrix",
            visible=False,
            label="Win rate, row against column (click a cell for its prompts)",
        )
        scatter = gr.ScatterPlot(
            x="helpfulness Elo",
            y="harmlessness Elo",
            color="policy",
            label="Harmless–helpful (Elo on each axis; drag across points "
            "to open their comparisons)",
            elem_id="evaluate-scatter",
            visible=False,
        )
    cell = gr.HTML(elem_id="evaluate-cell")
    categories = gr.Dataframe(
        interactive=False, elem_id="evaluate-categories", visible=False, label="Per category"
    )
    stats = gr.Dataframe(
        interactive=False,
        elem_id="evaluate-stats",
        visible=False,
        label="Per policy: length drift, evasiveness, PM score",
    )
    agreement = gr.HTML(elem_id="evaluate-agreement")
    with gr.Accordion("Blind A/B: judge the same comparisons yourself", open=False):
        gr.Markdown(
            "Answers are shuffled and the policies' names hidden until you label; your "
            f"labels join the ratings as the judge '{PEOPLE}'. Keys: A, B, T (tie)."
        )
        start = gr.Button("Show the next comparison", elem_id="evaluate-blind-start")
        blind = gr.HTML(elem_id="evaluate-blind")
        with gr.Row():
            choose_a = gr.Button("A is better", elem_id="evaluate-blind-a")
            choose_b = gr.Button("B is better", elem_id="evaluate-blind-b")
            choose_tie = gr.Button("Tie", elem_id="evaluate-blind-tie")
        blind_message = gr.HTML(elem_id="evaluate-blind-message")
    blind_state = gr.State(None)
    armed = gr.State(None)

    shown = dict(zip(SHOWN, (judge, axis, ratings, matrix, scatter, categories, stats, agreement)))
    show_here = named(partial(show, store), shown)

    def redraw_on(event: Callable, **options: Any) -> Any:
        """Redraw the results on `event`; every redraw runs in one queue, in the order the
        page asked for them, so the last one wins."""
        return event(
            show_here,
            [run, judge, axis],
            list(shown.values()),
            **in_order("evaluate-show"),
            **options,
        )

    beat.kick(
        wire(
            launch.click,
            partial(on_launch, store),
            {
                "base": base,
                "adapters": adapters,
                "typed": typed,
                "sets": sets,
                "judges": judges,
                "constitution": constitution,
                "pm": pm,
                "limit": limit,
                "new_tokens": new_tokens,
                "processes": processes,
                "engine": engine,
            },
            {"message": message},
        )
    )
    wire(cancel.click, partial(on_cancel, store), armed, {"message": message, "armed": armed})
    for event in (run.input, judge.input, axis.input, run.change):
        redraw_on(event, **NEWEST)  # a second pick while the first is drawn is drawn too

    def on_cell(
        folder: str | None, chosen_judge: str | None, chosen_axis: str | None, evt: gr.SelectData
    ) -> str:
        row, column = evt.index if isinstance(evt.index, (list, tuple)) else (evt.index, 0)
        return cell_html(store, folder, chosen_judge, chosen_axis, int(row), int(column))

    matrix.select(on_cell, [run, judge, axis], cell)

    def on_points(folder: str | None, chosen_judge: str | None, evt: gr.SelectData) -> str:
        low, high = evt.index if isinstance(evt.index, (list, tuple)) else (evt.index, evt.index)
        return points_html(store, folder, chosen_judge, (float(low), float(high)))

    scatter.select(on_points, [run, judge], cell)
    blinded = {"blind": blind, "blind_state": blind_state}
    wire(start.click, partial(blind_view, store), run, blinded)
    for button, choice in ((choose_a, "A"), (choose_b, "B"), (choose_tie, "tie")):
        labelled = wire(
            button.click,
            partial(on_blind_label, store, choice=choice),
            [run, blind_state],
            {"blind_message": blind_message, **blinded},
        )
        redraw_on(labelled.then)
    beat.watch(partial(on_timer, store), run, {"progress": progress, "run": run})
    page = {"adapters": adapters, "constitution": constitution, "pm": pm, "progress": progress}
    wire(demo.load, partial(on_page_load, store), None, {**page, "run": run}, js=KEYS_JS)
    return run
