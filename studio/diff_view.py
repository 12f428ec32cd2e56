"""Two texts side by side, the old with its removals struck and the new with its additions
marked: the one diff view of the studio (chain revisions, constitution versions)."""
from __future__ import annotations

import html

from pipeline.textdiff import readable_diff


def side_by_side(before: str, after: str, old: str = "before", new: str = "after") -> str:
    """HTML of the two columns; by sentence when most words changed (said in a caption)."""
    unit, pieces = readable_diff(before, after)
    left = "".join(html.escape(t) if op == "same" else f'<del class="wd-del">{html.escape(t)}</del>'
                   for op, t in pieces if op != "add")
    right = "".join(html.escape(t) if op == "same" else f'<ins class="wd-add">{html.escape(t)}</ins>'
                    for op, t in pieces if op != "del")
    caption = ("most words changed, so whole sentences are marked" if unit == "sentence"
               else "changed words are marked")
    return (f'<div class="diff2" data-unit="{unit}"><div class="diff2-col"><p class="diff2-head">'
            f'{html.escape(old)}</p><p>{left}</p></div><div class="diff2-col">'
            f'<p class="diff2-head">{html.escape(new)}</p><p>{right}</p></div>'
            f'<p class="diff2-caption">{caption}</p></div>')
