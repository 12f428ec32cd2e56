"""Pair and Preference records and all their I/O: pairs files, label logs, trl export,
HH-RLHF import, gold pairs.

A pairs file is JSONL with `prompt`, `response_a`, `response_b` (optional `category`,
`split`, `id`, `human`), or `prompt`, `chosen`, `rejected` for pairs whose better answer is
known; those are placed as A or B by a stable coin flip (so the better answer is not always
in one position) and carry the matching human label. A labelling run appends one record
per pair to `labels.jsonl`, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.core.errors import DatasetError
from pipeline.core.files import RecordLog, read_jsonl_file, write_jsonl
from pipeline.core.seeds import stable_int

PAIRS_FILE = "pairs.jsonl"
LABELS_FILE = "labels.jsonl"
GOLD_PAIRS = Path(__file__).resolve().parents[2] / "assets" / "gold_pairs.jsonl"


def pairs_path(ref: str) -> Path:
    """`gold` (the shipped gold pairs), or a pairs file or run folder."""
    return GOLD_PAIRS if ref == "gold" else Path(ref)


# --- records ---------------------------------------------------------------------------------

HUMAN_CHOICES = ("A", "B", "tie")


def pair_id(prompt: str, response_a: str, response_b: str) -> str:
    """A stable id for a pair in this order (swapping the answers gives another id)."""
    blob = json.dumps([prompt, response_a, response_b], ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Pair:
    """A prompt and two answers to compare; `human` is a label that came with the pair
    (gold pairs, HH-RLHF imports)."""

    prompt: str
    response_a: str
    response_b: str
    category: str = ""
    split: str = "train"
    source: str = ""
    human: str | None = None
    id: str = ""

    def __post_init__(self) -> None:
        for name in ("prompt", "response_a", "response_b"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise DatasetError(f"The pair's {name.replace('_', ' ')} is empty.")
        if self.human is not None and self.human not in HUMAN_CHOICES:
            raise DatasetError(
                f"A human label is one of {', '.join(HUMAN_CHOICES)} (got {self.human!r})."
            )
        if not self.id:
            object.__setattr__(self, "id", pair_id(self.prompt, self.response_a, self.response_b))

    @property
    def identical(self) -> bool:
        return self.response_a.strip() == self.response_b.strip()

    def swapped(self) -> "Pair":
        """The same pair with the answers the other way round (and its human label flipped)."""
        flip = {"A": "B", "B": "A"}.get(self.human or "", self.human)
        return Pair(
            self.prompt,
            self.response_b,
            self.response_a,
            self.category,
            self.split,
            self.source,
            flip,
        )


@dataclass(frozen=True)
class OrderedLabel:
    """One pair scored in both orders under one principle."""

    p_a_ab: float  # P(first answer wins) when it is shown as (A)
    p_a_ba: float  # P(first answer wins) when it is shown as (B): 1 − P(option A) in that order
    mass_ab: float
    mass_ba: float

    @property
    def p_a(self) -> float:
        """The debiased soft label: the mean of the two orders."""
        return (self.p_a_ab + self.p_a_ba) / 2

    @property
    def same_position_won(self) -> bool:
        """True when the winner flipped with the order, i.e. the position, not the answer,
        decided (the position-bias count of the RLAIF paper)."""
        return (self.p_a_ab > 0.5) != (self.p_a_ba > 0.5)


@dataclass(frozen=True)
class PrincipleLabel:
    """One principle's verdict on one pair, both orders."""

    principle_id: str
    p_a_ab: float
    p_a_ba: float
    mass_ab: float
    mass_ba: float
    rationale_ab: str = ""
    rationale_ba: str = ""

    @property
    def ordered(self) -> OrderedLabel:
        return OrderedLabel(self.p_a_ab, self.p_a_ba, self.mass_ab, self.mass_ba)


@dataclass(frozen=True)
class Preference:
    """A labelled pair (docs/architecture.md, Formats): the soft label `p_a` = P(A is better)."""

    pair: Pair
    p_a: float
    labels: tuple[PrincipleLabel, ...]
    feedback_model: str
    constitution_hash: str
    cot: bool = False
    flags: tuple[str, ...] = ()

    def _mean(self, name: str) -> float:
        return sum(getattr(x, name) for x in self.labels) / len(self.labels) if self.labels else 0.5

    @property
    def p_a_ab(self) -> float:
        return self._mean("p_a_ab")

    @property
    def p_a_ba(self) -> float:
        return self._mean("p_a_ba")

    @property
    def mass(self) -> float:
        """Mean probability the model put on the two options at all (both orders)."""
        if not self.labels:
            return 0.0
        return sum(x.mass_ab + x.mass_ba for x in self.labels) / (2 * len(self.labels))

    @property
    def position_biased(self) -> bool:
        return OrderedLabel(self.p_a_ab, self.p_a_ba, 0, 0).same_position_won


def preference_to_dict(pref: Preference) -> dict:
    """The JSONL row of a preference record."""
    return {
        "id": pref.pair.id,
        "prompt": pref.pair.prompt,
        "response_a": pref.pair.response_a,
        "response_b": pref.pair.response_b,
        "p_a": pref.p_a,
        "p_a_ab": pref.p_a_ab,
        "p_a_ba": pref.p_a_ba,
        "mass": pref.mass,
        "principle_ids": [x.principle_id for x in pref.labels],
        "labels": [asdict(x) for x in pref.labels],
        "feedback_model": pref.feedback_model,
        "constitution_hash": pref.constitution_hash,
        "cot": pref.cot,
        "flags": list(pref.flags),
        "category": pref.pair.category,
        "split": pref.pair.split,
        "source": pref.pair.source,
        "human": pref.pair.human,
    }


def preference_from_dict(row: dict) -> Preference:
    pair = Pair(
        row["prompt"],
        row["response_a"],
        row["response_b"],
        row.get("category", ""),
        row.get("split", "train"),
        row.get("source", ""),
        row.get("human"),
        row["id"],
    )
    return Preference(
        pair,
        row["p_a"],
        tuple(PrincipleLabel(**x) for x in row["labels"]),
        row["feedback_model"],
        row["constitution_hash"],
        row.get("cot", False),
        tuple(row.get("flags", ())),
    )


def placed(prompt: str, better: str, worse: str, **fields) -> Pair:
    """A pair with a known better answer, put in position A or B by a coin flip seeded by
    its content, labelled accordingly."""
    if stable_int("place", prompt, better, worse) % 2:
        return Pair(prompt, worse, better, human="B", **fields)
    return Pair(prompt, better, worse, human="A", **fields)


def _pair_from_row(row: dict) -> Pair:
    """A Pair from one JSONL object; raises DatasetError naming the missing field."""
    if not isinstance(row, dict):
        raise DatasetError("each line must be a JSON object.")
    fields = {
        "category": str(row.get("category", "")),
        "split": str(row.get("split", "train")),
        "source": str(row.get("source", "")),
    }
    if "chosen" in row or "rejected" in row:
        needed = ("prompt", "chosen", "rejected")
    else:
        needed = ("prompt", "response_a", "response_b")
    for name in needed:
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise DatasetError(f"needs a non-empty text field '{name}'.")
    if needed[1] == "chosen":
        return placed(row["prompt"], row["chosen"], row["rejected"], **fields)
    return Pair(
        row["prompt"],
        row["response_a"],
        row["response_b"],
        human=row.get("human"),
        id=str(row.get("id") or ""),
        **fields,
    )


def read_pairs(path: str | Path, on_bad_line: Callable[[str], None] | None = None) -> list[Pair]:
    """Pairs from a JSONL file, or a folder holding `pairs.jsonl` or `labels.jsonl`. A bad
    line stops the read with the file and line number, or is reported and skipped."""
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in (PAIRS_FILE, LABELS_FILE) if (path / name).exists()]
        if not found:
            raise DatasetError(f"{path} holds neither {PAIRS_FILE} nor {LABELS_FILE}.")
        path = found[0]
    numbered = read_jsonl_file(path, "pairs", lambda row, n: (n, _pair_from_row(row)), on_bad_line)
    if not numbered:
        raise DatasetError(f"{path} holds no pairs.")
    return unique_pairs(numbered, path)


def unique_pairs(numbered: list[tuple[int, Pair]], path: Path) -> list[Pair]:
    """The pairs of (line, pair), refusing two with the same id by their lines: a label
    could not say which of them it belongs to."""
    first: dict[str, int] = {}
    for n, pair in numbered:
        if pair.id in first:
            raise DatasetError(
                f"{path}, lines {first[pair.id]} and {n}: two pairs have the id "
                f"'{pair.id}' (the same pair twice, or an id reused). Remove or "
                "rename one."
            )
        first[pair.id] = n
    return [pair for _, pair in numbered]


def pair_to_dict(pair: Pair) -> dict:
    return {
        "id": pair.id,
        "prompt": pair.prompt,
        "response_a": pair.response_a,
        "response_b": pair.response_b,
        "category": pair.category,
        "split": pair.split,
        "source": pair.source,
        "human": pair.human,
    }


def write_pairs(pairs: list[Pair], path: str | Path) -> Path:
    path = Path(path)
    return write_jsonl(path, [pair_to_dict(p) for p in pairs])


class PairLog(RecordLog[Pair]):
    """The pairs a `pairs` run has sampled, appended a chunk of prompts at a time so a
    cancelled run keeps them; `PromptsSampled` says which prompts are behind it."""

    FILE = PAIRS_FILE

    def to_row(self, pair: Pair) -> dict:
        return pair_to_dict(pair)

    def from_row(self, row: Any, n: int) -> Pair:
        try:
            return _pair_from_row(row)
        except DatasetError as exc:
            raise DatasetError(f"{self.path}, line {n}: {exc}") from None


class PromptsSampled(RecordLog[str]):
    """The ids of the prompts a `pairs` run has answered, appended after their pairs: a
    prompt with an empty answer gives no pair, so the pairs alone cannot say where a
    resumed run goes on."""

    FILE = "pairs-sampled.jsonl"

    def to_row(self, prompt_id: str) -> dict:
        return {"id": prompt_id}

    def from_row(self, row: Any, n: int) -> str:
        return str(row["id"])


def gold_pairs() -> list[Pair]:
    """The shipped gold pairs (written and labelled by us)."""
    return read_pairs(GOLD_PAIRS)


def label_record(row: Any, path: Path, n: int) -> Preference:
    """One record of a labels file, or DatasetError naming it: a label file may come from
    anywhere, and a PM trained on a NaN or out-of-range label learns nothing good."""
    try:
        pref = preference_from_dict(row)
        texts = (pref.pair.prompt, pref.pair.response_a, pref.pair.response_b, pref.pair.id)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("prompt, answers and id must be text")
        if (
            isinstance(pref.p_a, bool)
            or not isinstance(pref.p_a, (int, float))
            or not 0 <= pref.p_a <= 1
        ):
            raise ValueError(f"p_a must be a number in [0, 1], not {pref.p_a!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DatasetError(
            f"{path}, record {n}: not a label record written by `label` "
            f"({type(exc).__name__}: {exc})."
        ) from None
    return pref


class LabelLog(RecordLog[Preference]):
    """The labelled pairs of one run folder: a pair labelled again (the studio rescoring it
    under other principles, or with its answers swapped) keeps its place and takes its
    latest label."""

    FILE = LABELS_FILE

    def to_row(self, pref: Preference) -> dict:
        return preference_to_dict(pref)

    def from_row(self, row: Any, n: int) -> Preference:
        return label_record(row, self.path, n)

    def key(self, pref: Preference) -> str:
        return pair_id(pref.pair.prompt, *sorted([pref.pair.response_a, pref.pair.response_b]))


def read_labels(path: str | Path) -> list[Preference]:
    """Preference records from a run folder or a labels JSONL file."""
    path = Path(path)
    prefs = (LabelLog(path) if path.is_dir() else LabelLog.of_file(path)).read()
    if not prefs:
        raise DatasetError(f"No labelled pairs in {path}; run `label` first.")
    return prefs


def human_choice(pair: Pair, labels: dict[str, str]) -> str | None:
    """A person's choice for this pair: from the store (in either order of the answers),
    else the label the pair came with."""
    if pair.id in labels:
        return labels[pair.id]
    swapped = labels.get(pair_id(pair.prompt, pair.response_b, pair.response_a))
    if swapped is not None:
        return {"A": "B", "B": "A"}.get(swapped, swapped)
    return pair.human


def trl_rows(prefs: list[Preference]) -> list[dict]:
    """trl's preference format: prompt/chosen/rejected by the AI label, plus `margin` =
    |2·p_a − 1| (0 for a coin flip, 1 for a certain label; RewardTrainer adds it inside the
    loss). Pairs flagged identical carry no preference and are left out."""
    rows = []
    for pref in prefs:
        if "identical" in pref.flags:
            continue
        a_wins = pref.p_a >= 0.5
        rows.append(
            {
                "id": pref.pair.id,
                "prompt": pref.pair.prompt,
                "chosen": pref.pair.response_a if a_wins else pref.pair.response_b,
                "rejected": pref.pair.response_b if a_wins else pref.pair.response_a,
                "margin": abs(2 * pref.p_a - 1),
                "p_chosen": max(pref.p_a, 1 - pref.p_a),
            }
        )
    return rows


def export_preferences(prefs: list[Preference], out: str | Path, fmt: str = "trl") -> Path:
    """Write records as trl rows (JSONL + a Hugging Face dataset folder beside it) or as
    full preference records (`jsonl`)."""
    from pipeline.core.files import save_dataset

    out = Path(out)
    if fmt == "jsonl":
        rows = [preference_to_dict(p) for p in prefs]
    elif fmt == "trl":
        rows = trl_rows(prefs)
    else:
        raise DatasetError(f"Unknown export format {fmt!r}; use trl or jsonl.")
    write_jsonl(out, rows)
    if fmt == "trl" and rows:
        save_dataset(rows, out.with_suffix(""))
    return out


# --- Anthropic HH-RLHF ---------------------------------------------------------------------

ASSISTANT_TURN = "\n\nAssistant:"


def split_transcript(text: str) -> tuple[str, str]:
    """(conversation up to the last assistant turn, that turn's text) of an HH transcript."""
    head, marker, last = text.rpartition(ASSISTANT_TURN)
    if not marker or "Human:" not in head:
        raise DatasetError("is not a Human:/Assistant: transcript ending in an assistant turn.")
    turns = head.strip()
    if turns.startswith("Human:") and turns.count("Human:") == 1 and "Assistant:" not in turns:
        turns = turns[len("Human:") :].strip()  # one human turn: just its text
    return turns, last.strip()


def import_hh(path: str | Path) -> list[Pair]:
    """Pairs from Anthropic HH-RLHF style JSONL (`chosen`/`rejected` full transcripts),
    human-labelled by which transcript was chosen."""
    path = Path(path)

    def pair(row: Any, n: int) -> Pair:
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("chosen", "rejected")
        ):
            raise DatasetError("needs text fields 'chosen' and 'rejected'.")
        prompt, chosen = split_transcript(row["chosen"])
        other, rejected = split_transcript(row["rejected"])
        if other != prompt:
            raise DatasetError("'chosen' and 'rejected' differ before the last assistant turn.")
        if not chosen or not rejected:
            raise DatasetError("an answer is empty.")
        return placed(prompt, chosen, rejected, source=f"hh:{path.name}")

    pairs = unique_pairs(
        read_jsonl_file(path, "HH-RLHF pairs", lambda row, n: (n, pair(row, n))), path
    )
    if not pairs:
        raise DatasetError(f"{path} holds no pairs.")
    return pairs


@dataclass(frozen=True)
class Comparison:
    """One training example: P(answer_a is better) = p."""

    prompt: str
    answer_a: str
    answer_b: str
    p: float
