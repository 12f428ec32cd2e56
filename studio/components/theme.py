"""How the studio looks, in a light and a dark theme: the Gradio theme, our CSS (every
colour a variable with a value per theme, so banners stay readable in both) and the theme
toggle, which remembers the choice in the browser."""

from __future__ import annotations

import gradio as gr

# System fonts only: the studio must render the same with no internet access.
THEME = gr.themes.Soft(
    font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
)

STORAGE_KEY = "constitution-studio-theme"

# Runs before the page is drawn: a theme picked with the toggle wins over the system's.
HEAD = f"""
<script>
(() => {{
  const apply = () => {{
    const saved = localStorage.getItem("{STORAGE_KEY}");
    if (saved && document.body) document.body.classList.toggle("dark", saved === "dark");
  }};
  new MutationObserver(apply).observe(document.documentElement, {{subtree: true, childList: true,
    attributes: true, attributeFilter: ["class"]}});
  document.addEventListener("DOMContentLoaded", apply);
}})();
</script>
"""

# The toggle button's client-side handler: flip the theme, remember it.
TOGGLE_JS = f"""() => {{
  const dark = !document.body.classList.contains("dark");
  localStorage.setItem("{STORAGE_KEY}", dark ? "dark" : "light");
  document.body.classList.toggle("dark", dark);
}}"""

CSS = """
:root {
  --ok-bg: #e8f5e9; --ok-fg: #1b5e20; --ok-line: #81c784;
  --info-bg: #e3f2fd; --info-fg: #0d47a1; --info-line: #64b5f6;
  --bad-bg: #ffebee; --bad-fg: #b71c1c; --bad-line: #e57373;
  --warn-bg: #fff3e0; --warn-fg: #8a3c00; --unknown-bg: #eceff1; --unknown-fg: #37474f;
  --bar-a: #5c6bc0; --bar-b: #ffe0b2; --line: #dddddd; --subdued: #555555; --track: #eeeeee;
}
.dark {
  --ok-bg: #15341b; --ok-fg: #c8f7d0; --ok-line: #2e7d32;
  --info-bg: #0b2740; --info-fg: #cfe6fb; --info-line: #1e88e5;
  --bad-bg: #3d1114; --bad-fg: #ffd3d6; --bad-line: #c62828;
  --warn-bg: #3a2606; --warn-fg: #ffe3bf; --unknown-bg: #263238; --unknown-fg: #d7e0e4;
  --bar-a: #8c9eff; --bar-b: #6d4c1f; --line: #3a3f4b; --subdued: #b0b6c0; --track: #2a2e36;
}
[id$="-message"], #workspace-notice { min-height: 2.6em; }
.notice { border-radius: 6px; padding: 8px 12px; margin: 4px 0; }
.notice p { margin: 0; }
.notice ul { margin: 4px 0 0 18px; }
.notice-ok { background: var(--ok-bg); border: 1px solid var(--ok-line); color: var(--ok-fg); }
.notice-info { background: var(--info-bg); border: 1px solid var(--info-line); color: var(--info-fg); }
.notice-error { background: var(--bad-bg); border: 1px solid var(--bad-line); color: var(--bad-fg); }
.field-error, .field-error-text { color: var(--bad-fg); font-size: 0.95em; }
.field-error:not(:has(.field-error-text)) { display: none; }
.diff-view { font-family: ui-monospace, monospace; font-size: 0.85em; white-space: pre-wrap; }
.chain { display: flex; flex-direction: column; gap: 6px; }
.chain h3 { margin: 0; }
.chain-body { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
.chain-main { flex: 3 1 420px; min-width: 0; display: flex; flex-direction: column; gap: 6px; }
.chain-side { flex: 1 1 200px; border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px;
  font-size: 0.9em; position: sticky; top: 8px; }
.chain-side ul { margin: 2px 0 8px 16px; padding: 0; }
.chain-card { border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; }
.chain-card p { margin: 2px 0; white-space: pre-wrap; }
.chain-card summary { cursor: pointer; }
.chain-draw { color: var(--subdued); font-size: 0.85em; }
.chain-label { color: var(--subdued); font-size: 0.8em; margin-top: 6px !important; }
.chain-failed { background: var(--bad-bg); color: var(--bad-fg); border-radius: 4px; padding: 0 6px; }
.chain-pending { color: var(--subdued); font-style: italic; }
.chain-final { border-color: var(--ok-line); }
.chain-signals { color: var(--subdued); font-size: 0.9em; }
.run-compare table { border-collapse: collapse; font-size: 0.9em; }
.run-compare th, .run-compare td { border: 1px solid var(--line); padding: 2px 8px; text-align: left; vertical-align: top; }
.run-compare tr.differs th, .run-compare tr.differs td { background: var(--warn-bg); color: var(--warn-fg); font-weight: 600; }
.run-compare tr.same { color: var(--subdued); }
.rating-row { display: grid; grid-template-columns: 9em 1fr 18em; gap: 8px; align-items: center; margin: 3px 0; }
.rating-track { position: relative; height: 12px; border-left: 1px solid var(--line); border-right: 1px solid var(--line); background: linear-gradient(var(--line), var(--line)) center / 1px 100% no-repeat; }
.rating-interval { position: absolute; top: 4px; height: 4px; background: var(--info-line); }
.rating-point { position: absolute; top: 1px; width: 10px; height: 10px; margin-left: -5px; border-radius: 50%; background: var(--info-fg); }
.sweep-row { display: grid; grid-template-columns: repeat(5, minmax(0, 1fr)); gap: 6px; }
.diff2 { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 8px; }
.diff2-col { border-left: 3px solid var(--line); padding-left: 8px; }
.diff2-head, .diff2-caption { color: var(--subdued); font-size: 0.8em; margin: 0; }
.diff2-caption { grid-column: 1 / span 2; }
.wd-del { background: var(--bad-bg); color: var(--bad-fg); }
.wd-add { background: var(--ok-bg); color: var(--ok-fg); text-decoration: none; }
.job-bar { background: var(--track); border-radius: 4px; height: 10px; overflow: hidden; }
.job-bar div { background: var(--bar-a); height: 100%; }
.chain-summary table { font-size: 0.85em; }
.pref-bars { display: flex; flex-direction: column; gap: 6px; }
.pref-principle { border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; }
.pref-pending { color: var(--subdued); font-style: italic; }
.pref-bar-row { display: flex; align-items: center; gap: 8px; font-size: 0.85em; }
.pref-bar-label { width: 110px; color: var(--subdued); }
.pref-bar { flex: 1; background: var(--bar-b); border-radius: 4px; height: 12px; overflow: hidden; }
.pref-bar-a { background: var(--bar-a); height: 100%; }
.pref-bar-value { width: 48px; text-align: right; font-family: ui-monospace, monospace; }
.pref-mass, .pref-rationale { color: var(--subdued); font-size: 0.8em; margin: 2px 0; white-space: pre-wrap; }
.pref-flag { background: var(--warn-bg); color: var(--warn-fg); border-radius: 4px; padding: 0 6px; font-size: 0.8em; }
.pref-overall { font-size: 1.05em; padding: 4px 0; }
.pref-legend, .pref-guideline { color: var(--subdued); font-size: 0.85em; }
.pref-guideline ul { margin: 2px 0 0 16px; }
.pref-report p { margin: 3px 0; }
.verdict { border-radius: 4px; padding: 1px 6px; }
.verdict-ok { background: var(--ok-bg); color: var(--ok-fg); }
.verdict-warn { background: var(--warn-bg); color: var(--warn-fg); }
.verdict-bad { background: var(--bad-bg); color: var(--bad-fg); font-weight: 600; }
.verdict-unknown { background: var(--unknown-bg); color: var(--unknown-fg); }
.muted { opacity: 0.55; }
.diff-add { background: var(--ok-bg); color: var(--ok-fg); }
.diff-del { background: var(--bad-bg); color: var(--bad-fg); }
.diff-head { color: var(--subdued); }
.header-button { max-width: 11em; }
#start-here-open { margin-left: auto; }
.start-here { border: 1px solid var(--info-line); border-radius: 8px; padding: 10px 14px;
  background: var(--info-bg); color: var(--info-fg); }
.start-here p { color: var(--info-fg); }
.start-flow { display: flex; flex-wrap: wrap; align-items: center; gap: 4px; margin: 6px 0; }
.flow-box { border: 1px solid var(--info-line); border-radius: 6px; padding: 4px 8px;
  background: var(--body-background-fill, transparent); color: var(--body-text-color, inherit);
  font-size: 0.85em; max-width: 12em; }
.flow-arrow { color: var(--info-fg); font-weight: 600; }
.pipeline-stages { font-size: 0.85em; margin: 4px 0; }
"""
