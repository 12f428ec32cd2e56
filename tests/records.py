"""Small records that several test modules build (test modules never import each other)."""
from __future__ import annotations

from pathlib import Path

from pipeline import constitution as cons
from pipeline.critique import ChainRequest
from pipeline.prompts import PromptRecord

SHIPPED = Path(__file__).resolve().parent.parent / "constitutions"


def harmless():
    return cons.load_constitution(SHIPPED / "harmless-helpful.yaml")


def requests(n: int, constitution=None) -> list[ChainRequest]:
    c = constitution or harmless()
    return [ChainRequest(PromptRecord(f"p{i}", f"Question number {i}?", "cat"), c) for i in range(n)]
