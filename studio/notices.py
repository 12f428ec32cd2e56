"""Visible messages for the studio: errors as readable text, never a traceback."""
from __future__ import annotations

import html

from pipeline.errors import ConstitutionError, StudioError
from pipeline.trust import Verdict


def notice(kind: str, text: str, details: list[str] | None = None) -> str:
    """HTML for a message box; `kind` is "ok", "info" or "error"."""
    items = "".join(f"<li>{html.escape(d)}</li>" for d in details or [])
    body = f"<p>{html.escape(text)}</p>" + (f"<ul>{items}</ul>" if items else "")
    return f'<div class="notice notice-{kind}" role="status">{body}</div>'


def verdict_html(verdict: Verdict, lead: str = "") -> str:
    """A number's verdict, styled by how far it can be trusted; `lead` is the number itself."""
    text = html.escape(f"{lead} — {verdict.text}" if lead else verdict.text)
    return (f'<span class="verdict verdict-{verdict.kind}" data-verdict="{verdict.kind}">'
            f'{text}</span>')


def error_notice(exc: StudioError) -> str:
    """An error box from one of our errors; a constitution's issues are listed one per line."""
    if isinstance(exc, ConstitutionError) and exc.issues:
        headline = str(exc).splitlines()[0]
        return notice("error", headline, [str(i) for i in exc.issues])
    return notice("error", str(exc))


CSS = """
.notice { border-radius: 6px; padding: 8px 12px; margin: 4px 0; }
.notice p { margin: 0; }
.notice ul { margin: 4px 0 0 18px; }
.notice-ok { background: #e8f5e9; border: 1px solid #81c784; color: #1b5e20; }
.notice-info { background: #e3f2fd; border: 1px solid #64b5f6; color: #0d47a1; }
.notice-error { background: #ffebee; border: 1px solid #e57373; color: #b71c1c; }
.field-error, .field-error-text { color: #b71c1c; font-size: 0.85em; }
.field-error:not(:has(.field-error-text)) { display: none; }
.diff-view { font-family: ui-monospace, monospace; font-size: 0.85em; white-space: pre-wrap; }
.chain { display: flex; flex-direction: column; gap: 6px; }
.chain h3 { margin: 0; }
.chain-card { border: 1px solid #ddd; border-radius: 6px; padding: 6px 10px; }
.chain-card p { margin: 2px 0; white-space: pre-wrap; }
.chain-label { color: #666; font-size: 0.8em; margin-top: 6px !important; }
.chain-failed { background: #ffebee; color: #b71c1c; border-radius: 4px; padding: 0 6px; }
.chain-pending { color: #888; font-style: italic; }
.chain-final { border-color: #81c784; }
.chain-signals { color: #555; font-size: 0.85em; }
.wd-del { background: #ffebee; color: #b71c1c; } .wd-add { background: #e8f5e9; text-decoration: none; }
.job-bar { background: #eee; border-radius: 4px; height: 10px; overflow: hidden; }
.job-bar div { background: #5c6bc0; height: 100%; }
.chain-summary table { font-size: 0.85em; }
.pref-bars { display: flex; flex-direction: column; gap: 6px; }
.pref-principle { border: 1px solid #ddd; border-radius: 6px; padding: 6px 10px; }
.pref-pending { color: #888; font-style: italic; }
.pref-bar-row { display: flex; align-items: center; gap: 8px; font-size: 0.85em; }
.pref-bar-label { width: 110px; color: #555; }
.pref-bar { flex: 1; background: #ffe0b2; border-radius: 4px; height: 12px; overflow: hidden; }
.pref-bar-a { background: #5c6bc0; height: 100%; }
.pref-bar-value { width: 48px; text-align: right; font-family: ui-monospace, monospace; }
.pref-mass, .pref-rationale { color: #666; font-size: 0.8em; margin: 2px 0; white-space: pre-wrap; }
.pref-flag { background: #fff3e0; color: #e65100; border-radius: 4px; padding: 0 6px; font-size: 0.8em; }
.pref-overall { font-size: 1.05em; padding: 4px 0; }
.verdict { border-radius: 4px; padding: 1px 6px; }
.verdict-ok { background: #e8f5e9; color: #1b5e20; }
.verdict-warn { background: #fff3e0; color: #8a3c00; }
.verdict-bad { background: #ffebee; color: #b71c1c; font-weight: 600; }
.verdict-unknown { background: #eceff1; color: #37474f; }
.pref-legend { color: #555; font-size: 0.85em; }
.pref-report p { margin: 3px 0; }
.muted { opacity: 0.55; }
.diff-add { background: #e8f5e9; } .diff-del { background: #ffebee; } .diff-head { color: #555; }
"""
