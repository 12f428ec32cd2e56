"""Visible messages for the studio: errors as readable text, never a traceback."""

from __future__ import annotations

import html

from pipeline.cai.trust import Verdict
from pipeline.core.errors import ConstitutionError, StudioError


def notice(kind: str, text: str, details: list[str] | None = None) -> str:
    """HTML for a message box; `kind` is "ok", "info" or "error"."""
    items = "".join(f"<li>{html.escape(d)}</li>" for d in details or [])
    body = f"<p>{html.escape(text)}</p>" + (f"<ul>{items}</ul>" if items else "")
    return f'<div class="notice notice-{kind}" role="status">{body}</div>'


def verdict_html(verdict: Verdict, lead: str = "") -> str:
    """A number's verdict, styled by how far it can be trusted; `lead` is the number itself."""
    text = html.escape(f"{lead} — {verdict.text}" if lead else verdict.text)
    return (
        f'<span class="verdict verdict-{verdict.kind}" data-verdict="{verdict.kind}">{text}</span>'
    )


def error_notice(exc: StudioError) -> str:
    """An error box from one of our errors; a constitution's issues are listed one per line."""
    if isinstance(exc, ConstitutionError) and exc.issues:
        headline = str(exc).splitlines()[0]
        return notice("error", headline, [str(i) for i in exc.issues])
    return notice("error", str(exc))
