"""Small records that several test modules build (test modules never import each other)."""

from __future__ import annotations

from pathlib import Path

from pipeline.cai.critique import ChainRequest
from pipeline.data import constitution as cons
from pipeline.data.prompts import PromptRecord

SHIPPED = Path(__file__).resolve().parent.parent / "constitutions"


def harmless():
    return cons.load_constitution(SHIPPED / "harmless-helpful.yaml")


def requests(n: int, constitution=None) -> list[ChainRequest]:
    c = constitution or harmless()
    return [
        ChainRequest(PromptRecord(f"p{i}", f"Question number {i}?", "cat"), c) for i in range(n)
    ]


def chain_record(initial: str, revisions: list[str], principle_id: str = "privacy"):
    """A finished chain whose rounds revise `initial` into each of `revisions` in turn,
    each round judged as the engine judges it (a failed revision leaves the answer as is)."""
    from pipeline.cai.critique import Chain, RevisionRound, round_failure

    principle = next(p for p in harmless().principles if p.id == principle_id)
    rounds, current = [], initial
    for text in revisions:
        failure = round_failure(text, principle, "a critique")
        rounds.append(
            RevisionRound(
                principle.id,
                principle.critique_request,
                principle.revision_request,
                "a critique",
                text,
                failure,
                principle.weight,
                10.0,
                "every enabled principle",
            )
        )
        current = current if failure else text
    return Chain(
        "c1",
        "p1",
        "How do I open this lock?",
        "theft_burglary",
        initial,
        tuple(rounds),
        current,
        "m",
        {},
        0,
        True,
        "harmless-helpful",
        "h",
    )
