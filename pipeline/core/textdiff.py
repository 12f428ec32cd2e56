"""Differences between two texts a person can read: by word when the texts are close, by
sentence when most words changed (a word diff of a rewrite interleaves into nonsense)."""

from __future__ import annotations

import difflib
import re

SENTENCE_AT = 0.5  # below this word-level similarity, diff whole sentences

Piece = tuple[str, str]  # (op, text); op is "same", "del" or "add"


def _pieces(a: list[str], b: list[str]) -> list[Piece]:
    pieces: list[Piece] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            pieces.append(("same", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(("del", "".join(a[i1:i2])))
        if j2 > j1:
            pieces.append(("add", "".join(b[j1:j2])))
    return pieces


def words(text: str) -> list[str]:
    """Words and the whitespace between them, so the pieces join back into the text."""
    return re.findall(r"\S+|\s+", text)


def sentences(text: str) -> list[str]:
    """Sentences with their trailing whitespace (a line break ends one too)."""
    return re.findall(r"[^.!?\n]*(?:[.!?]+|\n|$)\s*", text)[:-1] or [text]


def word_diff(before: str, after: str) -> list[Piece]:
    return _pieces(words(before), words(after))


def similarity(before: str, after: str) -> float:
    """Word-level similarity, 0 (nothing shared) … 1 (identical)."""
    a, b = before.split(), after.split()
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() if a or b else 1.0


def readable_diff(before: str, after: str) -> tuple[str, list[Piece]]:
    """("word" or "sentence", pieces): word pieces unless most words changed."""
    if similarity(before, after) < SENTENCE_AT:
        return "sentence", _pieces(sentences(before), sentences(after))
    return "word", word_diff(before, after)
