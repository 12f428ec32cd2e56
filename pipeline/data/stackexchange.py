"""Preference-model pretraining (PMP) data from Stack Exchange `Posts.xml` dumps: answers to
the same question, ranked by the score of the CAI/Anthropic recipe."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ElementTree
from html import unescape
from pathlib import Path

from pipeline.core.errors import DatasetError
from pipeline.data.preferences import Comparison


def pmp_score(votes: int, accepted: bool) -> int:
    """The PMP answer score of the CAI/Anthropic recipe: round(log2(1 + upvotes)), +1 if the
    answer was accepted, −1 if its vote count is negative."""
    score = round(math.log2(1 + max(votes, 0)))
    return score + (1 if accepted else 0) - (1 if votes < 0 else 0)


def _plain(body: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", unescape(body or ""))).strip()


def _score(row, posts_xml) -> int:
    """An answer's vote score, or a clear refusal of the dump when it is not a whole number."""
    text = row.get("Score", "0")
    try:
        return int(text)
    except ValueError:
        raise DatasetError(
            f"{posts_xml}: answer row Id={row.get('Id')!r} has Score={text!r}, not a whole number."
        ) from None


def pmp_comparisons(posts_xml: str | Path, max_pairs: int = 0) -> list[Comparison]:
    """Answer pairs from a Stack Exchange Posts.xml dump: for every question with at least two
    answers, each pair of its answers with different PMP scores, the higher one preferred."""
    try:
        root = ElementTree.parse(posts_xml).getroot()
    except (OSError, ElementTree.ParseError) as exc:
        raise DatasetError(f"Cannot read the Stack Exchange dump {posts_xml}: {exc}") from None
    questions: dict[str | None, ElementTree.Element] = {}
    answers: dict[str | None, list[ElementTree.Element]] = {}
    for row in root.iter("row"):
        kind = row.get("PostTypeId")
        if kind == "1":
            questions[row.get("Id")] = row
        elif kind == "2" and row.get("ParentId"):
            answers.setdefault(row.get("ParentId"), []).append(row)
    pairs = []
    for qid, rows in sorted(answers.items()):
        question = questions.get(qid)
        if question is None or len(rows) < 2:
            continue
        prompt = (
            _plain(question.get("Title", "")) + "\n\n" + _plain(question.get("Body", ""))
        ).strip()
        scored = [
            (
                pmp_score(_score(r, posts_xml), r.get("Id") == question.get("AcceptedAnswerId")),
                _plain(r.get("Body", "")),
            )
            for r in rows
        ]
        for i in range(len(scored)):
            for j in range(i + 1, len(scored)):
                (s_i, a_i), (s_j, a_j) = scored[i], scored[j]
                if s_i != s_j and a_i and a_j:
                    pairs.append(Comparison(prompt, a_i, a_j, 1.0 if s_i > s_j else 0.0))
    if not pairs:
        raise DatasetError(f"{posts_xml} has no question with two answers of different scores.")
    return pairs[: max_pairs or None]
