"""Preferences tab: watch the AI feedback model choose between two answers, swap them to see
its position bias, label pairs yourself, and batch-label in the background with the trust
metrics (agreement, calibration, position bias) updating as you label."""

from __future__ import annotations

import functools
import html
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import pandas as pd

from pipeline.cai.feedback import Labeller, ensemble, feedback_principles, make_pairs
from pipeline.cai.trust import (
    CALIBRATION_BINS,
    ENTROPY_BINS,
    TrustReport,
    Verdict,
    label_verdict,
    trust_report,
)
from pipeline.config.commands import LabelJob, PairsJob, ValuesFitJob, build_job, to_argv
from pipeline.config.settings import COT_CLAMP, DEFAULT_MODEL, FeedbackConfig, SamplingConfig
from pipeline.core.errors import StudioError
from pipeline.data.constitution import Constitution
from pipeline.data.preferences import (
    HUMAN_CHOICES,
    LabelLog,
    Pair,
    Preference,
    PrincipleLabel,
    gold_pairs,
    human_choice,
    read_labels,
)
from pipeline.data.prompts import PromptRecord
from pipeline.data.store import JobRecord, Store
from pipeline.evaluation.judge_choice import labels_note
from pipeline.evaluation.labelling_queue import ORDERS, VIEWS, next_pair, progress_text, view_rows
from pipeline.model.engines import backend_for
from pipeline.model.loading import load_model
from pipeline.runner import jobs
from pipeline.runner.run_list import counted
from pipeline.values.features import pair_source
from pipeline.values.representation_judge import (
    FITTED,
    RepresentationJudge,
    load_probe,
    probe_quality,
    read_lineage,
)
from studio.components import judges_panel
from studio.components.choices import (
    constitution_choices,
    default_choice,
    folder_choices,
    offer_models,
    probe_choices,
    resolve_choice,
)
from studio.components.heartbeat import Heartbeat
from studio.components.job_panel import (
    cancel_notice,
    job_bar,
    job_buttons,
    latest_job,
    resume_notice,
    writing_now,
)
from studio.components.judges_panel import auto_choice, human_count
from studio.components.notices import error_notice, notice, verdict_html
from studio.components.queue_probe import QUEUE_PROBE
from studio.wiring import NEWEST, in_order, pick, to_components, wire

STUDIO_RUN = "studio (pairs scored here)"
LIVE_CHUNK = 4  # principles scored per step, so bars appear as they are ready
PAIR_TOKENS = 128  # longest sampled answer of a pair made here (short: a pair is read whole)
TABLE_HEADERS = [
    "id",
    "category",
    "P(A)",
    "verdict",
    "A first",
    "B first",
    "mass",
    "human",
    "flags",
]
JOB_KINDS = ("pairs", "label", "values-fit")

# Keyboard shortcuts while the Preferences tab is shown and no text field has the focus.
SHORTCUTS = """
<script>
document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(target && target.tagName);
  if (typing || (target && target.isContentEditable)) return;
  const ids = {"1": "pref-human-a", "a": "pref-human-a", "2": "pref-human-b", "b": "pref-human-b",
               "3": "pref-human-tie", "t": "pref-human-tie", "s": "pref-swap", "n": "pref-next",
               "u": "pref-undo"};
  const button = document.getElementById(ids[event.key.toLowerCase()]);
  if (!button || button.offsetParent === null) return;
  event.preventDefault();
  window.cstudioPress(button);  // after the key before it has reached the server's queue
});
</script>
"""


def _bar(p: float, label: str) -> str:
    return (
        f'<div class="pref-bar-row"><span class="pref-bar-label">{label}</span>'
        f'<div class="pref-bar"><div class="pref-bar-a" style="width:{p:.1%}"></div></div>'
        f'<span class="pref-bar-value">{p:.3f}</span></div>'
    )


@dataclass(frozen=True)
class Previous:
    """The last score on screen: a swap re-scores with its principles and compares."""

    pair_id: str
    p_a: float
    principles: tuple[str, ...]


LEGEND = (
    "<b>How to read the bars:</b> each bar is P(A), the judge's probability that answer A "
    "is better — the blue part is A's share, the orange part B's; 0.5 means no preference. "
    "The question is asked with A shown first and with B shown first; the <i>average</i> "
    "cancels the order. <b>position decided</b>: the winner flips when the order flips, so "
    "the position, not the answer, decided. <b>mass on the options</b>: how much of the "
    "model's next-token probability went to “(A” or “(B” at all (A first / B first); low "
    "mass means the model was hardly answering the question."
)


def overall_html(labels: list[PrincipleLabel], p_a: float, previous: Previous | None) -> str:
    """The pair's label with its verdict, and — after a swap with the same principles — the
    order effect left after averaging."""
    mean = lambda name: sum(getattr(x, name) for x in labels) / len(labels)  # noqa: E731
    verdict = label_verdict(p_a, mean("p_a_ab"), mean("p_a_ba"))
    parts = [
        f'<div class="pref-overall" data-p-a="{p_a:.6f}" data-verdict="{verdict.kind}">'
        f"<b>Label P(A) = {p_a:.3f}</b> ({counted(len(labels), 'principle')}): "
        f"{verdict_html(verdict)}"
    ]
    if previous is not None and previous.principles == tuple(x.principle_id for x in labels):
        parts.append(
            f'<p class="pref-swap-note">Before the swap P(A) was {previous.p_a:.3f} with '
            f"the same principles, so a position-free judge would now give "
            f"{1 - previous.p_a:.3f}; the difference {abs(p_a - (1 - previous.p_a)):.3f} "
            "is the order effect left after averaging.</p>"
        )
    elif previous is not None:
        parts.append(
            '<p class="pref-swap-note">The principles differ from the score before the '
            "swap, so the two labels cannot show the order effect.</p>"
        )
    return "".join(parts) + "</div>"


def label_bars(
    labels: list[PrincipleLabel],
    titles: dict[str, str],
    pending: list[str],
    previous: Previous | None = None,
    p_a: float | None = None,
) -> str:
    """P(A) per principle as bars — A shown first, B shown first, and their average — then
    the label `p_a` (default: the principles' mean) with its verdict. `previous` is the
    score before the answers were swapped."""
    if not labels and not pending:
        return notice("info", "Enter a prompt and two answers, then press Score.")
    parts = [f'<div class="pref-bars"><p class="pref-legend">{LEGEND}</p>']
    for x in labels:
        biased = (
            ' <span class="pref-flag">position decided</span>'
            if x.ordered.same_position_won
            else ""
        )
        rationale = "".join(
            f'<p class="pref-rationale"><b>{order}:</b> {html.escape(text)}</p>'
            for order, text in (
                ("rationale, A first", x.rationale_ab),
                ("rationale, B first", x.rationale_ba),
            )
            if text
        )
        parts.append(
            f'<div class="pref-principle" data-principle="{html.escape(x.principle_id)}">'
            f"<b>{html.escape(titles.get(x.principle_id, x.principle_id))}</b>{biased}"
            f"{_bar(x.p_a_ab, 'A shown first')}{_bar(x.p_a_ba, 'B shown first')}"
            f"{_bar(x.ordered.p_a, 'average')}"
            f'<p class="pref-mass">mass on the options: {x.mass_ab:.2f} / {x.mass_ba:.2f}</p>'
            f"{rationale}</div>"
        )
    parts += [
        f'<div class="pref-principle pref-pending"><b>{html.escape(titles.get(p, p))}</b> '
        f"scoring…</div>"
        for p in pending
    ]
    if labels:
        parts.append(
            overall_html(
                labels, ensemble([x.ordered for x in labels]) if p_a is None else p_a, previous
            )
        )
    return "".join(parts) + "</div>"


def pref_verdict(p: Preference) -> Verdict:
    return label_verdict(p.p_a, p.p_a_ab, p.p_a_ba, identical="identical" in p.flags)


def table_rows(prefs: list[Preference], humans: dict[str, str]) -> list[list]:
    return [
        [
            p.pair.id,
            p.pair.category,
            round(p.p_a, 3),
            pref_verdict(p).text.split(":")[0],
            round(p.p_a_ab, 3),
            round(p.p_a_ba, 3),
            round(p.mass, 3),
            human_choice(p.pair, humans) or "",
            ", ".join(p.flags),
        ]
        for p in prefs
    ]


def report_html(report: TrustReport | None) -> str:
    """The trust report, each number beside its verdict; the calibration error only where it
    means something."""
    if report is None or not report.labels:
        return notice("info", "No labelled pairs here yet.")
    lines = [
        f"{counted(report.labels, 'labelled pair')} ({report.identical} identical, "
        f"{report.truncated} truncated)",
        verdict_html(
            report.position_verdict,
            f"position bias {report.position_bias:.0%} (labels whose winner flips with the order)",
        ),
        verdict_html(report.mass_verdict, f"mean option mass {report.mean_mass:.2f}"),
    ]
    a = report.agreement
    if a is None:
        lines.append("Human agreement: no human labels yet — label some pairs (keys 1 / 2 / 3).")
    else:
        lines.append(verdict_html(a.verdict, f"Human agreement ({a.ties} ties left out)"))
        muted = "" if a.calibration_meaningful else ' class="muted" data-muted="1"'
        lines.append(f"<span{muted}>{html.escape(a.calibration_note)}</span>")
    if report.length:
        lines.append(f'<span class="pref-length">{html.escape(report.length.text)}</span>')
    body = "".join(f"<p>{line}</p>" for line in lines)
    return f'<div class="pref-report" id="pref-report-text">{body}</div>'


def entropy_frame(report: TrustReport | None) -> pd.DataFrame:
    counts = report.entropy_histogram if report else (0,) * ENTROPY_BINS
    return pd.DataFrame(
        {
            "entropy (bits)": [
                f"{k / ENTROPY_BINS:.1f}–{(k + 1) / ENTROPY_BINS:.1f}" for k in range(ENTROPY_BINS)
            ],
            "pairs": list(counts),
        }
    )


def calibration_frame(report: TrustReport | None) -> pd.DataFrame:
    """The reliability diagram: per bin of AI P(A), how often the person chose A; with the
    diagonal a perfectly calibrated judge would follow."""
    rows = [
        {
            "AI P(A)": k / CALIBRATION_BINS,
            "human chose A": k / CALIBRATION_BINS,
            "series": "perfect calibration",
        }
        for k in range(CALIBRATION_BINS + 1)
    ]
    if report and report.agreement and report.agreement.calibration_meaningful:
        rows += [
            {"AI P(A)": b.mean_p_a, "human chose A": b.human_a, "series": "this judge"}
            for b in report.agreement.bins
        ]
    return pd.DataFrame(rows)


# --- helpers and handlers: the store and plain values in, plain values out (tested) ---------


def studio_log(store: Store) -> LabelLog:
    """The pairs scored in this tab, kept like any labelling run's."""
    return LabelLog(store.runs / "studio-labels")


def records(store: Store, run_choice: str) -> list[Preference]:
    if run_choice == STUDIO_RUN:
        return studio_log(store).read()
    return read_labels(run_choice) if Path(run_choice, "labels.jsonl").exists() else []


def current_pair(text: str, a: str, b: str) -> Pair:
    if not (text or "").strip():
        raise StudioError("Type a prompt or pick a gold pair first.")
    for name, value in (("A", a), ("B", b)):
        if not (value or "").strip():
            raise StudioError(f"Answer {name} is empty; write it or press Generate.")
    return Pair(text, a, b, source="studio")


LABELS = ("report", "calibration", "entropy", "table")  # what refresh_labels fills


def refresh_labels(store: Store, run_choice: str, view_choice: str) -> dict[str, Any]:
    """A labels run's trust report, calibration and entropy plots and table rows, by name."""
    try:
        prefs = records(store, run_choice)
    except StudioError as exc:
        return {"report": error_notice(exc), "table": []}
    humans = store.human_labels()
    result = trust_report(prefs, humans) if prefs else None
    return {
        "report": judge_note_html(run_choice, prefs) + report_html(result),
        "calibration": calibration_frame(result),
        "entropy": entropy_frame(result),
        "table": table_rows(view_rows(prefs, humans, view_choice), humans),
    }


def judge_note_html(run_choice: str, prefs: list[Preference]) -> str:
    """Over a label run's report: which judge wrote its labels and its measured agreement,
    or that they are unverified (with what to do: label pairs here, then compare judges)."""
    if run_choice == STUDIO_RUN or not prefs:
        return ""
    text = labels_note(run_choice)
    domain = run_domain(run_choice)
    warning = notice("warn", domain) if domain and domain not in text else ""
    if text.startswith("labels unverified"):
        return warning + notice(
            "warn", text + " — the queue: Next in queue (n), keys 1 / 2; then Compare judges below."
        )
    return warning + notice("ok", text)


def run_domain(run_choice: str) -> str:
    """The domain check a label run recorded (a probe that follows answer length on the
    pairs it labelled), '' when none."""
    try:
        found = json.loads(Path(run_choice, "summary.json").read_text()).get("domain")
    except (OSError, ValueError, AttributeError):
        return ""
    return found if isinstance(found, str) else ""


def human_state_html(store: Store, text: str, a: str, b: str, run_choice: str) -> str:
    """How far the person's labelling has come in these labels, and their label for the
    pair on screen."""
    humans = store.human_labels()
    try:
        prefs = records(store, run_choice)
    except StudioError:
        prefs = []
    parts = []
    if prefs:
        done = sum(human_choice(p.pair, humans) is not None for p in prefs)
        parts.append(
            f'<span class="pref-progress">{done} of {len(prefs)} pairs in these labels '
            "have your label</span>"
        )
    try:
        choice = human_choice(current_pair(text, a, b), humans)
    except StudioError:
        choice = None
    parts.append(
        f"Your label for this pair: {choice}" if choice else "You have not labelled this pair."
    )
    return f'<div class="pref-human-state">{" · ".join(parts)}</div>'


def guideline_html(store: Store, choice: str | None, chosen: list[str] | None) -> str:
    """What a person labelling should judge by: the constitution's own questions (the chosen
    principles', or every enabled one's), so human and AI labels answer the same thing."""
    try:
        c = resolve_choice(store, choice) if choice else None
    except StudioError:
        c = None
    if c is None:
        return ""
    principles = [p for p in c.enabled_principles if not chosen or p.id in chosen]
    items = "".join(
        f"<li><b>{html.escape(p.title)}</b>: {html.escape(p.preference_question)}</li>"
        for p in principles
    )
    return (
        f'<div class="pref-guideline"><b>Labelling guideline</b> ({html.escape(c.name)}): '
        f"pick the answer that better meets these questions.<ul>{items}</ul></div>"
    )


def on_guideline_tick(
    store: Store, choice: str | None, chosen: list[str] | None, shown: str | None
) -> dict[str, Any]:
    """The guideline follows the constitution as saved or edited in its own tab, without a
    reload: updated only when it changed; what is shown now, remembered."""
    now = guideline_html(store, choice, chosen)
    return {"guideline_shown": now} | ({} if now == shown else {"guideline": now})


def run_choices(store: Store, selected: str | None = None) -> Any:
    return gr.update(
        choices=[STUDIO_RUN, *folder_choices(store.jobs(), ("label",), False)],
        value=selected or STUDIO_RUN,
    )


def source_choices(store: Store) -> Any:
    return gr.update(choices=["gold", *folder_choices(store.jobs(), ("pairs",))])


def on_page_load(store: Store, run_choice: str, view_choice: str) -> dict[str, Any]:
    choice = default_choice(store)
    return {
        "constitution": gr.update(choices=constitution_choices(store), value=choice),
        "principles": on_constitution(store, choice),
        "progress": bar(latest(store)),
        "pairs_source": source_choices(store),
        **refresh_labels(store, run_choice, view_choice),
    }


def on_constitution(store: Store, choice: str | None) -> Any:
    try:
        c = resolve_choice(store, choice) if choice else None
    except StudioError:
        c = None
    ids = [p.id for p in c.enabled_principles] if c else []
    return gr.update(choices=ids, value=[])


@functools.lru_cache(maxsize=1)
def gold_by_label() -> dict[str, Pair]:
    return {f"[{p.category}] {p.prompt}": p for p in gold_pairs()}


def on_example(choice: str | None) -> dict[str, str]:
    pair = gold_by_label().get(choice or "")
    return {} if pair is None else shown(pair)


LOGPROB, REPRESENTATION, AUTO = "logprob", "representation", "auto"


def judge_choices(store: Store) -> list[tuple[str, str]]:
    """The judges a pair can be scored and labelled with: auto (the one measured to agree
    best with your labels), the log-prob question, the constitution's direction in the
    hidden states, and every probe fitted from labels."""
    probes = probe_choices(store)
    return [
        ("auto: the judge that agrees best with your labels (else log-prob, unverified)", AUTO),
        ("log-prob: asks the A/B question", LOGPROB),
        ("representation: the constitution's direction in the hidden states", REPRESENTATION),
    ] + [
        (
            f"representation: probe fitted from your labels ({Path(p).parent.name}; "
            f"cross-validated {fitted_quality(p)})",
            p,
        )
        for p in probes
    ]


def fitted_quality(folder: str) -> str:
    """A fitted probe's cross-validated accuracy with its interval and length control, read
    from its lineage; what went wrong, when it cannot be read."""
    try:
        return probe_quality(read_lineage(folder))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"accuracy unreadable: {exc}"


@functools.lru_cache(maxsize=4)
def representation_reader(model_name: str, probe: str) -> RepresentationJudge:
    """One representation judge per model and probe for the session: it keeps each
    constitution's directions, which take the model writing its contrastive answers."""
    loaded = load_model(model_name)
    return RepresentationJudge(loaded, load_probe(probe, loaded) if probe else None)


def offer_queue_sources(store: Store) -> Any:
    return gr.update(choices=queue_sources(store))


def offer_judges(store: Store) -> Any:
    return gr.update(choices=judge_choices(store))


def judge_settings(judge_choice: str | None) -> tuple[str, str]:
    """(judge, probe folder) of a judge choice."""
    if judge_choice in (None, "", LOGPROB, AUTO):
        return judge_choice or LOGPROB, ""
    return REPRESENTATION, "" if judge_choice == REPRESENTATION else judge_choice


def on_score(
    store: Store,
    prompt: str,
    answer_a: str,
    answer_b: str,
    constitution: str | None,
    principles: list[str] | None,
    ensemble: float,
    cot: bool,
    model: str,
    seed: float,
    last_label: Previous | None,
    run: str,
    view: str,
    judge_choice: str = AUTO,
) -> Iterator[dict[str, Any]]:
    """The AI label of the pair on screen under the constitution, streamed principle by
    principle as bars (by name: message, bars, last_label, and the labels' report once the
    record is kept)."""
    try:
        pair = current_pair(prompt, answer_a, answer_b)
        c: Constitution = resolve_choice(store, constitution) if constitution else None
        if c is None:
            raise StudioError("Pick a constitution first.")
        swapped = isinstance(last_label, Previous) and last_label.pair_id == pair.swapped().id
        previous = last_label if swapped else None
        # after a swap, the same principles judge again (a fresh draw would compare two juries)
        same = ",".join(previous.principles) if previous else ""
        config = FeedbackConfig(
            ensemble=int(ensemble),
            principles=",".join(principles or []) or same,
            cot=bool(cot),
            seed=int(seed or 0),
        )
        titles = {p.id: p.title for p in c.principles}
        judge, probe = judge_settings(judge_choice)
        chosen_by = ""
        if judge == AUTO:  # the judge the newest comparison chose, or log-prob unverified
            auto = auto_choice(store)
            judge, probe, chosen_by = auto.method, auto.probe, auto.text
        if judge == LOGPROB:
            labeller = Labeller(load_model(model), config)
            judges = [] if pair.identical else [p.id for p in feedback_principles(c, pair, config)]
            steps = labeller.label_stepwise(c, pair, LIVE_CHUNK)
        else:  # one read of both answers, every principle's direction at once
            reader = representation_reader(model, probe)
            judges = ["the answers' hidden states"]
            steps = map(lambda pairs: reader.label(c, pairs)[0], [[pair]])  # read after the bars
            titles[FITTED] = "Probe fitted from your labels"
        yield {"message": "", "bars": label_bars([], titles, judges)}
        for record in steps:
            if "identical" in record.flags:
                yield {
                    "message": notice(
                        "info",
                        "A and B are identical, so the label is 0.5 (flagged); "
                        "nothing to ask the model.",
                    ),
                    "bars": label_bars([], titles, []),
                    **refresh_labels(store, run, view),
                }
                return
            done = list(record.labels)
            pending = judges[len(done) :] if judge == LOGPROB else []
            yield {"message": "", "bars": label_bars(done, titles, pending, previous)}
        studio_log(store).append([record])
        notes = (
            ["The answers were cut to fit the question (flagged)."]
            if "truncated" in record.flags
            else []
        )
        if chosen_by:
            notes.append(f"auto: {chosen_by}")
        note = (
            notice("warn" if chosen_by.startswith("labels unverified") else "info", " ".join(notes))
            if notes
            else ""
        )
        scored = Previous(pair.id, record.p_a, tuple(x.principle_id for x in done))
        yield {
            "message": note,
            "bars": label_bars(done, titles, [], previous, record.p_a),
            "last_label": scored,
            **refresh_labels(store, run, view),
        }
    except StudioError as exc:
        yield {"message": error_notice(exc)}


def on_swap(answer_a: str, answer_b: str) -> dict[str, str]:
    """The two answers trade places (scoring again then shows position bias, if any)."""
    return {"answer_a": answer_b, "answer_b": answer_a}


def on_generate(text, model_name, seed_value) -> dict[str, Any]:
    if not (text or "").strip():
        return {"message": notice("error", "Type a prompt or pick a gold pair first.")}
    try:
        backend = backend_for(model_name)
        sampling = SamplingConfig(
            max_new_tokens=PAIR_TOKENS, temperature=1.0, seed=int(seed_value or 0)
        )
        pairs = make_pairs(backend, [PromptRecord("studio", text)], sampling)
    except StudioError as exc:
        return {"message": error_notice(exc)}
    if not pairs:
        return {
            "message": notice(
                "error", "The model gave an empty answer; press Generate again with another seed."
            )
        }
    return {"message": "", "answer_a": pairs[0].response_a, "answer_b": pairs[0].response_b}


def on_human(store: Store, choice: str, text, a, b, run_choice, view_choice) -> dict[str, Any]:
    """A person's label for the pair on screen (A, B or tie), stored, and the report updated."""
    try:
        pair = current_pair(text, a, b)
        store.set_human_label(pair.id, choice, pair.prompt, pair.response_a, pair.response_b)
    except StudioError as exc:
        return {"message": error_notice(exc)}
    return {
        "message": notice("ok", f"Recorded your label {choice} for pair {pair.id}."),
        "human_note": human_state_html(store, text, a, b, run_choice),
        **refresh_labels(store, run_choice, view_choice),
    }


def on_undo(store: Store, text, a, b, run_choice, view_choice) -> dict[str, Any]:
    """Take back the last human label (the one before it comes back)."""
    try:
        undone = store.undo_human_label()
    except StudioError as exc:
        return {"message": error_notice(exc)}
    if undone is None:
        return {"message": notice("info", "No label of yours to undo.")}
    return {
        "message": notice("ok", f"Undid your last label: {undone.sentence()}."),
        "human_note": human_state_html(store, text, a, b, run_choice),
        **refresh_labels(store, run_choice, view_choice),
    }


SHOWN = "shown"  # the queue walks the labels picked under "Labels, trust and agreement"


def queue_sources(store: Store) -> list[tuple[str, str]]:
    """The pair sets the queue can walk: the labels shown below, the gold pairs, and every
    finished pairs or label run."""
    return [("the labels shown below", SHOWN), ("gold pairs", "gold")] + folder_choices(
        store.jobs(), ("pairs", "label")
    )


def queue_pairs(store: Store, source: str, run_choice: str) -> tuple[list[Pair], dict[str, float]]:
    """(the pairs of a queue source, the AI label's P(A) per pair where it has one: what
    orders the active queue before a probe of yours can)."""
    ref = run_choice if source in (None, "", SHOWN) else source
    if ref == STUDIO_RUN or Path(ref, "labels.jsonl").exists():
        prefs = records(store, ref)
        return [p.pair for p in prefs], {p.pair.id: p.p_a for p in prefs}
    return pair_source(ref, store.human_pairs()), {}


def on_next(
    store: Store,
    text,
    a,
    b,
    run_choice,
    source: str = SHOWN,
    order: str = "active",
    model_name: str = DEFAULT_MODEL,
) -> dict[str, Any]:
    """The next pair to label from the queue's set, in its order, with how far it has come."""
    try:
        pairs, ai = queue_pairs(store, source, run_choice)
    except StudioError as exc:
        return {"message": error_notice(exc)}
    humans = store.human_labels()
    fit = QUEUE_PROBE.current(model_name, pairs, humans) if order == "active" and pairs else None
    current = Pair(text, a, b).id if all((x or "").strip() for x in (text, a, b)) else ""
    pair = next_pair(pairs, humans, order, fit.scores if fit else ai, current)
    progress = progress_text(pairs, humans, fit)
    problem = QUEUE_PROBE.error(model_name, pairs) if pairs else ""
    if pair is None:
        return {"message": notice("ok", f"Every pair of this set has your label ({progress}).")}
    why = (
        "the probe fitted on your labels is least sure of it"
        if fit
        else "the AI label is least sure of it"
        if ai and order == "active"
        else "random order"
    )
    message = notice(
        "warn" if problem else "info",
        f"{progress} · pair {pair.id} ({why}). Your label?" + (f" ({problem})" if problem else ""),
    )
    return {"message": message, **shown(pair)}


def shown(pair: Pair) -> dict[str, str]:
    """The pair in the tab's prompt and answer boxes."""
    return {"prompt": pair.prompt, "answer_a": pair.response_a, "answer_b": pair.response_b}


def open_row(store: Store, run_choice: str, pair_id: str | None) -> dict[str, Any]:
    by_id = {p.pair.id: p for p in records(store, run_choice)}
    pref = by_id.get(pair_id) if pair_id else None
    if pref is None:
        return {"message": notice("error", "That pair is no longer in these labels.")}
    return {
        "message": notice(
            "info", f"Pair {pref.pair.id}: AI P(A) = {pref.p_a:.3f}, {pref_verdict(pref).text}."
        ),
        **shown(pref.pair),
    }


def latest(store: Store) -> JobRecord | None:
    return latest_job(store, JOB_KINDS)


def bar(job: JobRecord | None) -> str:
    return job_bar(job, "prompts" if job and job.kind == "pairs" else "pairs")


def on_timer(store: Store, run_choice, view_choice) -> dict[str, Any]:
    """Progress every tick; the labels while the job writing them runs, and once more
    just after it ends."""
    job = latest(store)
    if writing_now(job) and job.out_dir == run_choice:
        return {"progress": bar(job), **refresh_labels(store, run_choice, view_choice)}
    return {"progress": bar(job)}


def launch_job(store: Store, kind: str, args: list[str], out: Path) -> dict[str, Any]:
    try:
        job = jobs.launch(store, kind, args, out)
    except StudioError as exc:
        return {"message": error_notice(exc)}
    selected = str(out) if kind == "label" else None
    return {
        "message": notice("ok", f"Launched job {job.id} ({kind}) into {out}."),
        "run": run_choices(store, selected),
        "pairs_source": source_choices(store),
    }


def on_make(store: Store, chosen_set, n, model_name, seed_value) -> dict[str, Any]:
    out = store.new_run_folder("pairs")
    job = build_job(
        PairsJob,
        {
            "policy": model_name,
            "prompts": chosen_set,
            "limit": int(n or 0),
            "seed": int(seed_value or 0),
            "max_new_tokens": PAIR_TOKENS,
        },
    )
    return launch_job(store, "pairs", to_argv("pairs", job, out), out)


def on_launch(
    store: Store,
    pairs: str,
    limit: float,
    constitution: str | None,
    principles: list[str] | None,
    ensemble: float,
    cot: bool,
    model: str,
    seed: float,
    judge_choice: str = AUTO,
) -> dict[str, Any]:
    """Label a pair set in the background under the constitution as it is now."""
    if not constitution:
        return {"message": notice("error", "Pick a constitution first.")}
    out = store.new_run_folder("labels")
    try:  # the job reads the constitution as it is now, frozen into its run folder
        path = jobs.freeze_constitution(resolve_choice(store, constitution), out)
        job = build_job(
            LabelJob,
            {
                "pairs": pairs,
                "constitution": str(path),
                "model": model,
                "limit": int(limit or 0),
                "ensemble": int(ensemble),
                "seed": int(seed or 0),
                "cot": bool(cot),
                "principles": ",".join(principles or []),
                **dict(zip(("judge_method", "probe"), judge_settings(judge_choice))),
            },
        )
    except StudioError as exc:
        return {"message": error_notice(exc)}
    return launch_job(store, "label", to_argv("label", job, out), out)


MIN_FIT = 5  # pairs a judge can be fitted from at all (30–60 make a useful one)


def on_fit(store: Store, model_name: str) -> dict[str, Any]:
    """Fit a representation judge from the pairs people labelled here, in the background."""
    count = human_count(store)
    if count < MIN_FIT:
        return {
            "message": notice(
                "error",
                f"Fitting a judge needs at least {MIN_FIT} pairs you labelled A "
                f"or B (30–60 make a useful one); you have {count}. Label more "
                "with keys 1 / 2 (Next in queue: n).",
            )
        }
    out = store.new_run_folder("judge")
    job = build_job(ValuesFitJob, {"pairs": "human", "model": model_name})
    return launch_job(store, "values-fit", to_argv("values-fit", job, out), out)


def on_cancel(store: Store, confirmed: int | None) -> dict[str, Any]:
    idle = "No pairs or labelling job is running."
    return cancel_notice(store, latest(store), idle, confirmed=confirmed)


def on_resume(store: Store) -> dict[str, Any]:
    text, again = resume_notice(store, latest(store), "finished work is kept.")
    if again is None:
        return {"message": text}
    return {
        "message": text,
        "run": run_choices(store, again.out_dir if again.kind == "label" else None),
        "pairs_source": source_choices(store),
    }


def build(
    store: Store, demo: gr.Blocks, beat: Heartbeat, default_model: str = DEFAULT_MODEL
) -> tuple[gr.Dropdown, gr.Dropdown]:
    """Lay out the tab and wire its events; returns the labels-run and pairs pickers, so
    another tab can open a run here."""
    message = gr.HTML(elem_id="pref-message")
    with gr.Row():
        with gr.Column(scale=2):
            example = gr.Dropdown(
                label="Pick a gold pair",
                choices=list(gold_by_label()),
                value=None,
                elem_id="pref-example",
            )
            prompt = gr.Textbox(label="Prompt", lines=2, elem_id="pref-prompt")
            with gr.Row():
                answer_a = gr.Textbox(label="Answer A", lines=5, elem_id="pref-a")
                answer_b = gr.Textbox(label="Answer B", lines=5, elem_id="pref-b")
            with gr.Row():
                score = gr.Button("Score", variant="primary", elem_id="pref-score")
                swap = gr.Button("Swap A and B (s)", elem_id="pref-swap")
                generate = gr.Button("Generate two answers", elem_id="pref-generate")
            with gr.Row():
                human_a = gr.Button("A is better (1)", elem_id="pref-human-a")
                human_b = gr.Button("B is better (2)", elem_id="pref-human-b")
                human_tie = gr.Button("Tie (3)", elem_id="pref-human-tie")
                undo = gr.Button("Undo last label (u)", elem_id="pref-undo")
                next_button = gr.Button("Next in queue (n)", elem_id="pref-next")
                fit = gr.Button("Fit a judge from my labels", elem_id="pref-fit")
            with gr.Row():
                queue = gr.Dropdown(
                    label="Queue (n): pairs to label",
                    choices=queue_sources(store),
                    value=SHOWN,
                    elem_id="pref-queue",
                    scale=3,
                )
                queue_order = gr.Dropdown(
                    label="Order", choices=list(ORDERS), value=ORDERS[0], elem_id="pref-queue-order"
                )
            human_note = gr.HTML(elem_id="pref-human-state")
            guideline = gr.HTML(elem_id="pref-guideline")
        with gr.Column(scale=1):
            constitution = gr.Dropdown(
                label="Constitution", choices=[], elem_id="pref-constitution"
            )
            principles = gr.Dropdown(
                label="Principles (empty = sample an ensemble)",
                choices=[],
                multiselect=True,
                elem_id="pref-principles",
            )
            ensemble_k = gr.Slider(
                0,
                8,
                value=FeedbackConfig.ensemble,
                step=1,
                label="ensemble size when sampling (0 = all principles)",
                elem_id="pref-ensemble",
            )
            cot = gr.Checkbox(
                label="chain-of-thought (rationale first, label clamped to "
                f"[{COT_CLAMP[0]}, {COT_CLAMP[1]}])",
                elem_id="pref-cot",
            )
            model = gr.Dropdown(
                label="Feedback / answer model",
                choices=[default_model],
                value=default_model,
                allow_custom_value=True,
                elem_id="pref-model",
            )
            offer_models(store, model, default_model)
            judge = gr.Dropdown(
                label="Judge", choices=judge_choices(store), value=AUTO, elem_id="pref-judge"
            )
            judge.focus(partial(offer_judges, store), None, judge)
            seed = gr.Number(value=0, precision=0, label="seed")
    bars = gr.HTML(elem_id="pref-bars")
    last_label = gr.State(None)  # Previous: the last score, to show the swap's order effect

    with gr.Accordion("Batch: make pairs and label them in the background", open=True):
        with gr.Row():
            prompt_set = gr.Dropdown(
                label="Prompt set (for new pairs)",
                choices=["red-team", "helpful"],
                value="red-team",
                elem_id="pref-batch-set",
            )
            pair_limit = gr.Number(value=8, precision=0, label="prompts (0 = all)")
            make = gr.Button("Make pairs with the model", elem_id="pref-batch-pairs")
        with gr.Row():
            pairs_source = gr.Dropdown(
                label="Pairs to label",
                choices=["gold"],
                value="gold",
                elem_id="pref-batch-source",
                scale=3,
            )
            label_limit = gr.Number(
                value=0, precision=0, label="pairs (0 = all)", elem_id="pref-batch-limit"
            )
            launch = gr.Button(
                "Launch labelling job", variant="primary", elem_id="pref-batch-launch"
            )
            cancel, resume = job_buttons("pref-batch")
        progress = gr.HTML(elem_id="pref-batch-progress")

    with gr.Accordion("Labels, trust and agreement", open=True):
        with gr.Row():
            run = gr.Dropdown(
                label="Labels", choices=[STUDIO_RUN], value=STUDIO_RUN, elem_id="pref-run", scale=3
            )
            view = gr.Dropdown(label="Show", choices=VIEWS, value=VIEWS[0], elem_id="pref-view")
        report = gr.HTML(elem_id="pref-report")
        with gr.Row():
            calibration = gr.LinePlot(
                calibration_frame(None),
                x="AI P(A)",
                y="human chose A",
                color="series",
                x_lim=[0, 1],
                y_lim=[0, 1],
                label="Calibration (reliability diagram)",
                elem_id="pref-calibration",
            )
            entropy = gr.BarPlot(
                entropy_frame(None),
                x="entropy (bits)",
                y="pairs",
                label="Label entropy (0 = certain, 1 = coin flip)",
                elem_id="pref-entropy",
            )
        table = gr.Dataframe(
            headers=TABLE_HEADERS,
            interactive=False,
            wrap=True,
            elem_id="pref-table",
            label="Labelled pairs (click to open)",
        )
    judges_panel.build(store, demo, beat, constitution, model, message)

    # --- wiring --------------------------------------------------------------------------

    guideline_shown = gr.State(None)
    views = {
        "message": message,
        "bars": bars,
        "last_label": last_label,
        "prompt": prompt,
        "answer_a": answer_a,
        "answer_b": answer_b,
        "human_note": human_note,
        "report": report,
        "calibration": calibration,
        "entropy": entropy,
        "table": table,
        "progress": progress,
        "constitution": constitution,
        "principles": principles,
        "pairs_source": pairs_source,
        "run": run,
        "guideline": guideline,
        "guideline_shown": guideline_shown,
    }

    to = partial(pick, views)

    def on_open_row(run_choice, evt: gr.SelectData):
        found = open_row(store, run_choice, evt.row_value[0] if evt.row_value else None)
        return to_components(found, views)

    human_state = partial(human_state_html, store)
    pair_fields = [prompt, answer_a, answer_b]
    state_inputs = [*pair_fields, run]
    show_guideline = partial(guideline_html, store)
    shown_pair = to("prompt", "answer_a", "answer_b")
    scored = to("message", "bars", "last_label", *LABELS)
    labelled = to("message", "human_note", *LABELS)
    launched = to("message", "run", "pairs_source")
    wire(example.input, on_example, example, shown_pair, **NEWEST).then(
        human_state, state_inputs, human_note
    )
    constitution.input(partial(on_constitution, store), constitution, principles, **NEWEST).then(
        show_guideline, [constitution, principles], guideline
    )
    principles.input(show_guideline, [constitution, principles], guideline, **NEWEST)
    score_inputs = {
        "prompt": prompt,
        "answer_a": answer_a,
        "answer_b": answer_b,
        "constitution": constitution,
        "principles": principles,
        "ensemble": ensemble_k,
        "cot": cot,
        "model": model,
        "seed": seed,
        "last_label": last_label,
        "run": run,
        "view": view,
        "judge_choice": judge,
    }
    wire(score.click, partial(on_score, store), score_inputs, scored)
    answers = {"answer_a": answer_a, "answer_b": answer_b}
    swapped = wire(swap.click, on_swap, answers, answers)
    wire(swapped.then, partial(on_score, store), score_inputs, scored).then(
        human_state, state_inputs, human_note
    )
    wire(generate.click, on_generate, [prompt, model, seed], to("message", "answer_a", "answer_b"))
    # keys pressed in a row (2 for B, then u to undo it, then n) act in that order: an undo
    # run before the label it meant would take back the one before
    labelling = in_order("labelling")
    for button, choice in zip((human_a, human_b, human_tie), HUMAN_CHOICES):
        wire(
            button.click,
            partial(on_human, store, choice),
            [*pair_fields, run, view],
            labelled,
            **labelling,
        )
    wire(undo.click, partial(on_undo, store), [*pair_fields, run, view], labelled, **labelling)
    wire(
        next_button.click,
        partial(on_next, store),
        [*pair_fields, run, queue, queue_order, model],
        to("message", *shown_pair),
        **labelling,
    ).then(human_state, state_inputs, human_note)
    queue.focus(partial(offer_queue_sources, store), None, queue)
    # .change: also when the Runs tab opens a labels run here
    wire(run.change, partial(refresh_labels, store), [run, view], to(*LABELS)).then(
        human_state, state_inputs, human_note
    )
    wire(view.input, partial(refresh_labels, store), [run, view], to(*LABELS), **NEWEST)
    table.select(on_open_row, run, list(to("message", *shown_pair).values())).then(
        human_state, state_inputs, human_note
    )
    beat.kick(
        wire(make.click, partial(on_make, store), [prompt_set, pair_limit, model, seed], launched)
    )
    beat.kick(
        wire(
            launch.click,
            partial(on_launch, store),
            {
                "pairs": pairs_source,
                "limit": label_limit,
                **pick(
                    score_inputs,
                    "constitution",
                    "principles",
                    "ensemble",
                    "cot",
                    "model",
                    "seed",
                    "judge_choice",
                ),
            },
            launched,
        )
    )
    beat.kick(wire(fit.click, partial(on_fit, store), model, launched))
    armed = gr.State(None)  # the pipeline job a first Cancel press asked to confirm
    wire(cancel.click, partial(on_cancel, store), armed, {"message": message, "armed": armed})
    beat.kick(wire(resume.click, partial(on_resume, store), None, launched))
    beat.watch(partial(on_timer, store), [run, view], to("progress", *LABELS))
    beat.watch(
        partial(on_guideline_tick, store),
        [constitution, principles, guideline_shown],
        to("guideline", "guideline_shown"),
    )
    wire(
        demo.load(partial(run_choices, store), None, run).then,
        partial(on_page_load, store),
        [run, view],
        to("constitution", "principles", "progress", "pairs_source", *LABELS),
    ).then(show_guideline, [constitution, principles], guideline)
    return run, pairs_source
