"""Two texts side by side, the old with its removals struck and the new with its additions
marked: the one diff view of the studio (chain revisions, constitution versions)."""

from __future__ import annotations

import html

from pipeline.core.textdiff import readable_diff


def side_by_side(before: str, after: str, old: str = "before", new: str = "after") -> str:
    """HTML of the two columns; by sentence when most words changed (said in a caption)."""
    unit, pieces = readable_diff(before, after)

    def marked(op: str, tag: str, css: str) -> str:
        return "".join(
            html.escape(t) if kind == "same" else f'<{tag} class="{css}">{html.escape(t)}</{tag}>'
            for kind, t in pieces
            if kind != op
        )

    left, right = marked("add", "del", "wd-del"), marked("del", "ins", "wd-add")
    caption = (
        "most words changed, so whole sentences are marked"
        if unit == "sentence"
        else "changed words are marked"
    )
    return (
        f'<div class="diff2" data-unit="{unit}"><div class="diff2-col"><p class="diff2-head">'
        f'{html.escape(old)}</p><p>{left}</p></div><div class="diff2-col">'
        f'<p class="diff2-head">{html.escape(new)}</p><p>{right}</p></div>'
        f'<p class="diff2-caption">{caption}</p></div>'
    )
