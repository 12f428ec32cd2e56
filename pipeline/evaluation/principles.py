"""Principles that explain the labels: every principle of the user's constitution and of a
catalogue of candidates, each scored alone as a judge on the user's human labels — by the
log-prob A/B question (both orders) and by its own direction in the hidden states — with the
leaderboard's length-controlled agreement and verdict. Principles that decide nearly every
pair alike are named as near-duplicates, and a draft constitution of the best principles is
offered (written beside the results, never saved into the workspace) with its measured
agreement next to the current constitution's, both read from the same per-principle labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from pipeline.data.constitution import Constitution
from pipeline.data.preferences import Preference
from pipeline.evaluation.leaderboard import Judged, JudgeRow, score
from pipeline.values.features import LabelledPairs

CATALOGUE = Path(__file__).resolve().parents[2] / "assets" / "principle_catalogue.yaml"
RANK_METHODS = ("representation", "logprob")
DUPLICATE = 0.95  # principles whose decisions agree on this share of pairs are near-duplicates
DRAFT_SIZE = 6  # at most this many principles in the draft


@dataclass(frozen=True)
class PrincipleRow:
    principle: str
    title: str
    source: str  # "constitution" or "catalogue"
    method: str
    row: JudgeRow

    @property
    def key(self) -> tuple[float, float]:
        return self.row.rank_key


def per_principle(prefs: list[Preference], method: str) -> dict[str, Judged]:
    """Each principle's own P(A) on every pair, from records that labelled every principle
    (both orders for the log-prob judge)."""
    ids = list(dict.fromkeys(x.principle_id for p in prefs for x in p.labels))
    found = {}
    for pid in ids:
        rows = [next((x for x in p.labels if x.principle_id == pid), None) for p in prefs]
        ab = tuple(x.p_a_ab if x else 0.5 for x in rows)
        ba = tuple(x.p_a_ba if x else 0.5 for x in rows)
        found[pid] = Judged(pid, method, tuple((a + b) / 2 for a, b in zip(ab, ba)), ab, ba)
    return found


def ensemble_of(judged: dict[str, Judged], ids: list[str], name: str, method: str) -> Judged:
    """The mean of some principles' labels: what a constitution of them would give."""
    picked = [judged[i] for i in ids]

    def mean(field: str) -> tuple[float, ...]:
        return tuple(sum(vals) / len(vals) for vals in zip(*(getattr(j, field) for j in picked)))

    return Judged(name, method, mean("p_a"), mean("p_a_ab"), mean("p_a_ba"))


def near_duplicates(
    judged: dict[str, Judged], threshold: float = DUPLICATE
) -> list[tuple[str, str, float]]:
    """(a, b, share of pairs both decide alike) for principles that decide nearly every pair
    alike: keeping both adds weight, not a second opinion."""
    ids, out = list(judged), []
    for n, a in enumerate(ids):
        for b in ids[n + 1 :]:
            same = [
                (x > 0.5) == (y > 0.5)
                for x, y in zip(judged[a].p_a, judged[b].p_a)
                if x != 0.5 and y != 0.5
            ]
            if same and sum(same) / len(same) >= threshold:
                out.append((a, b, sum(same) / len(same)))
    return out


@dataclass(frozen=True)
class PrincipleRanking:
    labels: str
    pairs: int
    rows: tuple[PrincipleRow, ...]  # best first
    duplicates: tuple[tuple[str, str, float], ...]
    current: JudgeRow | None  # the current constitution (its enabled principles' mean)
    draft_ids: tuple[str, ...]
    draft_row: JudgeRow | None

    def as_json(self) -> dict:
        return {
            "labels": self.labels,
            "pairs": self.pairs,
            "rows": [
                {
                    "principle": r.principle,
                    "title": r.title,
                    "source": r.source,
                    "method": r.method,
                    **asdict(r.row),
                }
                for r in self.rows
            ],
            "duplicates": [list(d) for d in self.duplicates],
            "current": asdict(self.current) if self.current else None,
            "draft": list(self.draft_ids),
            "draft_agreement": asdict(self.draft_row) if self.draft_row else None,
        }


def rank(
    data: LabelledPairs,
    labels: str,
    constitution: Constitution,
    catalogue: Constitution,
    labelled: dict[str, dict[str, list[Preference]]],
    seed: int = 0,
    size: int = DRAFT_SIZE,
) -> PrincipleRanking:
    """The ranking from per-principle records: `labelled[method][source]` holds the records
    of `constitution` ("constitution") and `catalogue` ("catalogue") on `data`'s pairs."""
    titles = {
        **{p.id: p.title for p in catalogue.principles},
        **{p.id: p.title for p in constitution.principles},
    }
    rows, all_judged = [], {}
    for method, by_source in labelled.items():
        for source, prefs in by_source.items():
            for pid, judged in per_principle(prefs, method).items():
                all_judged[(method, source, pid)] = judged
                rows.append(
                    PrincipleRow(
                        pid, titles.get(pid, pid), source, method, score(judged, data, seed)
                    )
                )
    rows.sort(key=lambda r: r.key, reverse=True)
    method = rows[0].method if rows else ""
    mine = {pid: j for (m, s, pid), j in all_judged.items() if m == method and s == "constitution"}
    candidates = {**{pid: j for (m, s, pid), j in all_judged.items() if m == method}, **mine}
    duplicates = tuple(near_duplicates(candidates))
    best = [r for r in rows if r.method == method and r.row.trusted]
    draft = list(dict.fromkeys(r.principle for r in best))[:size]
    enabled = [p.id for p in constitution.enabled_principles if p.id in mine]
    current = (
        score(ensemble_of(mine, enabled, constitution.name, method), data, seed)
        if enabled
        else None
    )
    draft_row = (
        score(ensemble_of(candidates, draft, "draft", method), data, seed) if draft else None
    )
    return PrincipleRanking(
        labels, len(data.pairs), tuple(rows), duplicates, current, tuple(draft), draft_row
    )


def draft_constitution(
    ranking: PrincipleRanking, constitution: Constitution, catalogue: Constitution
) -> Constitution | None:
    """The draft of the best principles, their texts from wherever they came (yours first)."""
    if not ranking.draft_ids:
        return None
    by_id = {
        **{p.id: p for p in catalogue.principles},
        **{p.id: p for p in constitution.principles},
    }
    return Constitution(
        f"{constitution.name}-ranked",
        tuple(replace(by_id[i], enabled=True) for i in ranking.draft_ids),
        description=f"Draft from `principles rank` on {ranking.pairs} human "
        f"labels ({ranking.labels}): the principles that agree with "
        "people beyond length and chance. Not saved; review it first.",
    )


def label_everything(
    loaded,
    constitution: Constitution,
    catalogue: Constitution,
    data: LabelledPairs,
    methods: list[str],
    batch_size: int,
    step: Callable[[str], None],
) -> dict[str, dict[str, list[Preference]]]:
    """Every principle of both, labelled on every pair by each method."""
    from pipeline.cai.feedback import Labeller
    from pipeline.config.settings import FeedbackConfig
    from pipeline.values.representation_judge import RepresentationJudge

    pairs = list(data.pairs)
    out: dict[str, dict[str, list[Preference]]] = {}
    for method in methods:
        judge = (
            Labeller(loaded, FeedbackConfig(ensemble=0, batch_size=batch_size))
            if method == "logprob"
            else RepresentationJudge(loaded)
        )
        out[method] = {}
        for source, c in (("constitution", constitution), ("catalogue", catalogue)):
            step(
                f"{method}: every principle of {c.name} ({len(c.enabled_principles)}) on "
                f"{len(pairs)} pairs"
            )
            out[method][source] = judge.label(c, pairs)
    return out


def format_ranking(r: PrincipleRanking, top: int = 15) -> str:
    lines = [
        f"Principles as judges on {r.pairs} human-labelled pairs ({r.labels}), best first "
        "(length-controlled lower bound):"
    ]
    for n, row in enumerate(r.rows[:top], 1):
        lines.append(
            f"{n}. {row.principle} [{row.source}, {row.method}] {row.title}: "
            f"{row.row.text} → {row.row.verdict.text.split(':')[0]}"
        )
    against = [
        row
        for row in r.rows
        if row.row.controlled_interval and row.row.controlled_interval[1] < 0.5
    ]
    if against:
        lines.append(
            "Contradict people (length-controlled interval below 50%): "
            + ", ".join(f"{x.principle} [{x.method}]" for x in against)
        )
    if r.duplicates:
        lines.append(
            "Near-duplicates (decide alike): "
            + ", ".join(f"{a} ~ {b} ({share:.0%})" for a, b, share in r.duplicates[:10])
        )
    if r.current:
        lines.append(f"current constitution: {r.current.text} → {r.current.verdict.text}")
    if r.draft_row:
        lines.append(
            f"draft ({', '.join(r.draft_ids)}): {r.draft_row.text} → {r.draft_row.verdict.text}"
        )
    else:
        lines.append("no draft: no principle agrees with people beyond length and chance here")
    return "\n".join(lines)
