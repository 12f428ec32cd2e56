"""Constitution tab: edit principles, round-trip YAML, import/export, versions and diffs.

The draft being edited is autosaved in the workspace store after every accepted edit, so
a page reload or a server restart loses nothing; "Save as new version" makes it permanent.
Every edit goes through `pipeline.data.constitution`, which validates it; a rejected edit shows
its messages next to the fields and leaves the draft as it was.
"""

from __future__ import annotations

import dataclasses
import html
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from pipeline.core.errors import ConstitutionError, StudioError
from pipeline.core.files import write_atomic
from pipeline.data import constitution as cons
from pipeline.data.constitution import Constitution
from pipeline.data.store import Store, parse_ref
from pipeline.evaluation.relabel import relabel
from studio.components.diff_view import side_by_side
from studio.components.notices import error_notice, notice
from studio.wiring import NEWEST, in_order

FIELDS = (
    "id",
    "title",
    "critique_request",
    "revision_request",
    "preference_question",
    "weight",
    "tags",
    "enabled",
)
TABLE_HEADERS = ["#", "on", "id", "title", "weight"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "constitution"


def _export_path(store: Store, c: Constitution, base: int | None, draft: bool) -> str:
    suffix = f"-v{base}" if base else ""
    path = store.exports / f"{_slug(c.name)}{suffix}{'-draft' if draft else ''}.yaml"
    return str(write_atomic(path, cons.to_yaml(c)))


def _version_choices(store: Store, name: str) -> list[tuple[str, int]]:
    return [
        (
            f"v{r.version} · {r.created_at[:16].replace('T', ' ')} · {r.note or r.hash[:8]}",
            r.version,
        )
        for r in store.versions(name)
    ]


def _ref_choices(store: Store) -> list[str]:
    return [f"{r.name}@{r.version}" for r in store.all_versions()]


def diff_html(changes: tuple[cons.Change, ...], label_a: str, label_b: str) -> str:
    """Two versions compared principle by principle: added and removed principles, then each
    changed principle with its changed fields side by side, words marked."""
    if not changes:
        return notice("info", f"{label_a} and {label_b} have the same content.")
    parts = [
        f'<div class="cdiff"><p class="diff-head">From <b>{html.escape(label_a)}</b> to '
        f"<b>{html.escape(label_b)}</b>: {plural(len(changes), 'change')}</p>"
    ]
    by_principle: dict[str, list[cons.Change]] = {}
    lines = {
        "added": ("diff-add", "+ added principle", "after"),
        "removed": ("diff-del", "− removed principle", "before"),
    }
    for ch in changes:
        if ch.kind in lines:
            css, what, side = lines[ch.kind]
            parts.append(
                f'<p class="{css}" data-change="{ch.kind}">{what} <code>'
                f"{html.escape(ch.subject)}</code>: {html.escape(getattr(ch, side))}</p>"
            )
        elif ch.kind in ("moved", "metadata"):
            title = "Order of principles" if ch.kind == "moved" else ch.field
            parts.append(
                f'<p data-change="{ch.kind}"><b>{html.escape(title)}</b></p>'
                f"{side_by_side(ch.before, ch.after, label_a, label_b)}"
            )
        else:
            by_principle.setdefault(ch.subject, []).append(ch)
    for pid, fields in by_principle.items():
        parts.append(
            f'<details open class="chain-card" data-change="changed" '
            f'data-principle="{html.escape(pid)}"><summary>changed principle '
            f"<code>{html.escape(pid)}</code>: {', '.join(c.field for c in fields)}"
            "</summary>"
        )
        parts += [
            f'<p class="chain-label">{html.escape(c.field)}</p>'
            f"{side_by_side(c.before, c.after, label_a, label_b)}"
            for c in fields
        ]
        parts.append("</details>")
    return "".join(parts) + "</div>"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def field_error(key: str) -> gr.HTML:
    """The slot beside a field where its validation message appears."""
    return gr.HTML(
        elem_classes="field-error", elem_id=f"error-{key}", container=False, padding=False
    )


# --- what the tab shows: plain records, so the handlers are tested without a browser ---------


@dataclass(frozen=True)
class Editor:
    """The principle editor: which principle, its field values and the errors beside them."""

    selected: int | None
    values: dict[str, Any]
    errors: dict[str, str]
    heading: str


@dataclass(frozen=True)
class Screen:
    """Everything the tab shows for one state of the constitution being edited."""

    constitution: Constitution
    base: int | None
    names: list[str]
    versions: list[tuple[str, int]]
    status: str
    table: list[list]
    yaml: str
    export: str
    refs: list[str]
    editor: Editor


@dataclass(frozen=True)
class Shown:
    """A handler's answer: a new screen, or only a new editor, or only messages beside the
    fields (a refused edit keeps what was typed), or neither; and a message."""

    message: str = ""
    screen: Screen | None = None
    editor: Editor | None = None
    yaml_errors: str | None = None
    field_errors: dict[str, str] | None = None
    note: str | None = None  # the version note box's new text ('' once a save used it)


def editor(c: Constitution, index: int | None, errors: dict[str, str] | None = None) -> Editor:
    """The editor on principle `index` of `c` (a blank new principle when None)."""
    errors = {k: (errors or {}).get(k, "") for k in FIELDS}
    if index is None or index >= len(c.principles):
        values = {k: "" for k in FIELDS} | {"weight": 1.0, "enabled": True}
        return Editor(
            None, values, errors, "**New principle** — fill in the fields, then *Apply changes*."
        )
    p = c.principles[index]
    values = cons.principle_to_dict(p)
    values["tags"] = ", ".join(p.tags)
    return Editor(
        index,
        {k: values[k] for k in FIELDS},
        errors,
        f"**Editing principle {index + 1} of {len(c.principles)}:** `{p.id}`",
    )


def render(
    store: Store,
    c: Constitution,
    base_version: int | None,
    index: int | None,
    draft: bool,
    restored: bool = False,
) -> Screen:
    """The screen for `c` with principle `index` in the editor; a draft is autosaved."""
    if draft:
        store.save_draft(c, base_version)
    names = store.names()
    state = ("unsaved draft" + (" (restored)" if restored else "")) if draft else "saved"
    based = f"based on v{base_version}" if base_version else "not saved yet"
    return Screen(
        constitution=c,
        base=base_version,
        names=sorted(set(names) | {c.name}),
        versions=_version_choices(store, c.name) if c.name in names else [],
        status=notice(
            "info" if draft else "ok",
            f"{c.name}: {plural(len(c.principles), 'principle')} "
            f"({len(c.enabled_principles)} enabled) · {state}, {based} · hash "
            f"{cons.content_hash(c)[:12]}",
        ),
        table=[
            [i + 1, "✓" if p.enabled else "✗", p.id, p.title, p.weight]
            for i, p in enumerate(c.principles)
        ],
        yaml=cons.to_yaml(c),
        export=_export_path(store, c, base_version, draft),
        refs=_ref_choices(store),
        editor=editor(c, index),
    )


def open_saved(store: Store, chosen: str | None, version_no: int | None = None) -> Screen:
    """A constitution's draft if it has one (unless a version is asked for), else its latest
    or chosen version; a starter draft in an empty workspace."""
    names = store.names()
    if not names:
        return render(store, cons.new_constitution("my-constitution"), None, 0, draft=True)
    chosen = chosen if chosen in names else names[0]
    draft = store.draft(chosen) if version_no is None else None
    if draft is not None:
        c = cons.parse_constitution(draft.yaml, f"draft of {chosen}")
        return render(store, c, draft.base_version, 0, draft=True, restored=True)
    record = store.version(chosen, version_no)
    return render(store, record.constitution, record.version, 0, draft=False)


def on_load(store: Store) -> Shown:
    """The page opens on the draft edited last, else the default constitution."""
    return Shown(screen=open_saved(store, store.editing_name()))


def on_pick_name(store: Store, chosen: str) -> Shown:
    return Shown(screen=open_saved(store, chosen))


def on_pick_version(
    store: Store, c: Constitution | None, version_no: int | None, base_version: int | None
) -> Shown | None:
    if c is None or version_no is None or version_no == base_version:
        return None
    return Shown(
        notice(
            "info",
            f"Opened {c.name} v{version_no}. Your unsaved draft, if any, "
            "was replaced by this version.",
        ),
        open_saved(store, c.name, int(version_no)),
    )


def on_apply(
    store: Store, c: Constitution, base_version: int | None, index: int | None, *values: Any
) -> Shown:
    """Apply the editor's fields to principle `index` (a new one when None); a refused edit
    shows each message beside its field and changes nothing."""
    raw = dict(zip(FIELDS, values))
    raw["tags"] = [t.strip() for t in (raw["tags"] or "").split(",") if t.strip()]
    raw["weight"] = raw["weight"] if raw["weight"] is not None else 1.0
    try:
        principle = cons.principle_from_fields(raw)
        updated = cons.put_principle(c, principle, index)
    except ConstitutionError as exc:
        beside = {
            str(issue.path[-1]): f'<span class="field-error-text">{html.escape(issue.message)}'
            "</span>"
            for issue in exc.issues
        }
        return Shown(error_notice(exc), field_errors={k: beside.get(k, "") for k in FIELDS})
    new_index = index if index is not None else len(updated.principles) - 1
    verb = "Updated" if index is not None else "Added"
    return Shown(
        notice("ok", f"{verb} principle '{principle.id}' (draft autosaved)."),
        render(store, updated, base_version, new_index, draft=True),
    )


def _normal(key: str, value: Any) -> Any:
    """A field's value as the editor compares it (a number box gives floats, tags are
    re-joined), so an untouched form never reads as edited."""
    if key == "weight":
        return float(value) if value not in (None, "") else None
    if key == "enabled":
        return bool(value)
    if key == "tags":
        return ", ".join(t.strip() for t in str(value or "").split(",") if t.strip())
    return str(value or "").strip()


def unapplied(c: Constitution, index: int | None, values: tuple) -> bool:
    """Whether the editor holds edits not applied to principle `index` (or a new one)."""
    shown = editor(c, index).values
    return any(_normal(k, v) != _normal(k, shown[k]) for k, v in zip(FIELDS, values))


def on_open_principle(
    store: Store,
    c: Constitution | None,
    base_version: int | None,
    index: int | None,
    target: int | None,
    *values: Any,
) -> Shown:
    """Open principle `target` (a new one when None). Edits typed and not applied are
    applied first (and autosaved); edits that cannot be applied stay on screen with their
    messages and a warning, so nothing typed is lost without the user choosing to."""
    if c is None:
        return Shown()
    if not unapplied(c, index, values):
        return Shown(editor=editor(c, target))
    what = f"'{c.principles[index].id}'" if index is not None else "the new principle"
    applied = on_apply(store, c, base_version, index, *values)
    if applied.screen is None:
        return Shown(
            notice(
                "error",
                f"Your edits to {what} are not applied: they have problems "
                "(shown under the fields). Fix them and press Apply "
                "changes, or press Revert edits to drop them.",
            ),
            field_errors=applied.field_errors,
        )
    updated = applied.screen.constitution
    opened = editor(updated, target)
    return Shown(
        notice("ok", f"Applied your edits to {what} before switching (draft autosaved)."),
        dataclasses.replace(applied.screen, editor=opened),
    )


def on_delete(store: Store, c: Constitution, base_version: int | None, index: int | None) -> Shown:
    if index is None:
        return Shown(notice("error", "Select a principle in the table first."))
    try:
        updated = cons.remove_principle(c, index)
    except ConstitutionError as exc:
        return Shown(error_notice(exc))
    return Shown(
        notice("ok", f"Deleted principle '{c.principles[index].id}'."),
        render(store, updated, base_version, min(index, len(updated.principles) - 1), draft=True),
    )


def on_move(
    store: Store, offset: int, c: Constitution, base_version: int | None, index: int | None
) -> Shown:
    if index is None:
        return Shown(notice("error", "Select a principle in the table first."))
    target = min(max(index + offset, 0), len(c.principles) - 1)
    return Shown(
        screen=render(
            store, cons.move_principle(c, index, offset), base_version, target, draft=True
        )
    )


def adopt(store: Store, c: Constitution, source: str) -> Shown:
    """Make an imported or pasted constitution the draft of its name."""
    base_version = store.version(c.name).version if c.name in store.names() else None
    return Shown(
        notice(
            "ok",
            f"Loaded {source} as a draft of '{c.name}'. It is not saved "
            "until you click Save as new version.",
        ),
        render(store, c, base_version, 0, draft=True),
    )


def on_apply_yaml(store: Store, text: str) -> Shown:
    try:
        c = cons.parse_constitution(text or "", "The YAML")
    except ConstitutionError as exc:
        return Shown(error_notice(exc), yaml_errors=error_notice(exc))
    return adopt(store, c, "the YAML")


def on_import(store: Store, path: str | None) -> Shown | None:
    if not path:
        return None
    label = Path(path).name
    try:
        c = cons.load_constitution(path, label)
    except ConstitutionError as exc:
        return Shown(error_notice(exc))
    return adopt(store, c, label)


def on_save(store: Store, c: Constitution, note_text: str, index: int | None) -> Shown:
    """Save the draft as the next version; the editor stays on the principle it showed and
    the note, now part of the version, is cleared."""
    try:
        record, created = store.save_version(c, note=note_text or "")
    except StudioError as exc:
        return Shown(error_notice(exc))
    text = (
        f"Saved {record.label} (hash {record.hash[:12]})."
        if created
        else f"No changes since {record.label}; nothing new was saved."
    )
    return Shown(
        notice("ok", text),
        render(
            store,
            record.constitution,
            record.version,
            index if index is not None else 0,
            draft=False,
        ),
        note="" if created else None,
    )


def on_discard(store: Store, c: Constitution) -> Shown:
    store.discard_draft(c.name)
    if c.name not in store.names():
        return Shown(notice("ok", f"Discarded the unsaved '{c.name}'."), open_saved(store, None))
    return Shown(
        notice("ok", "Draft discarded; showing the latest saved version."),
        open_saved(store, c.name),
    )


def on_create(store: Store, new: str) -> Shown:
    new = (new or "").strip()
    if not new:
        return Shown(notice("error", "Type a name for the new constitution first."))
    if new in store.names():
        return Shown(
            notice(
                "error",
                f"A constitution named '{new}' already exists; pick it in "
                "the list or choose another name.",
            )
        )
    return Shown(
        notice("ok", f"Created draft '{new}' with one starter principle."),
        render(store, cons.new_constitution(new), None, 0, draft=True),
    )


def on_diff(store: Store, ref_a: str | None, ref_b: str | None) -> str:
    if not ref_a or not ref_b:
        return notice("error", "Pick two versions to compare.")
    labels, sides = [], []
    for ref in (ref_a, ref_b):
        record = store.version(*parse_ref(ref))
        labels.append(record.label)
        sides.append(record.constitution)
    return diff_html(cons.diff_constitutions(*sides), *labels)


def focus(store: Store, constitution_name: str, principle_id: str) -> Shown:
    """Open a constitution on one principle (the Chains tab jumps here)."""
    screen = open_saved(store, constitution_name)
    c = screen.constitution
    ids = [p.id for p in c.principles]
    if principle_id not in ids:
        return Shown(
            notice("error", f"'{c.name}' no longer has a principle '{principle_id}'."), screen
        )
    return Shown(
        notice("info", f"Showing principle '{principle_id}' of {c.name}."),
        dataclasses.replace(screen, editor=editor(c, ids.index(principle_id))),
    )


def label_runs(store: Store) -> list[str]:
    return [j.out_dir for j in store.jobs("label") if j.status == "succeeded"]


def on_what_would_change(
    store: Store, current: Constitution | None, folder: str | None, limit: float
) -> str:
    """The chosen label run relabelled under the constitution as shown (draft included), with
    the run's own settings: how many labels flip, and which."""
    if current is None:
        return notice("error", "Open a constitution first.")
    if not folder:
        return notice(
            "error",
            "Pick a label run (labels from the Preferences tab, the Train tab or a pipeline).",
        )
    try:
        result = relabel(current, folder, int(limit or 0))
    except StudioError as exc:
        return error_notice(exc)
    rows = "".join(
        f"<li>P(A) {f.before:.2f} → {f.after:.2f} (principles: "
        f"{html.escape(', '.join(f.principles))}): {html.escape(f.pair.prompt[:160])}</li>"
        for f in result.flips
    )
    return notice("info" if result.flips else "ok", result.text) + (
        f'<ul class="relabel-flips">{rows}</ul>' if rows else ""
    )


def build(store: Store, demo: gr.Blocks) -> tuple[Callable[[str, str], dict], list]:
    """Lay out the tab and wire its events (call inside a gr.Tab of `demo`). Returns a
    function that shows one principle of a constitution in the editor, and the components
    it updates, so other tabs can jump here."""
    current, base, selected = gr.State(None), gr.State(None), gr.State(None)
    message = gr.HTML(elem_id="constitution-message")
    with gr.Row():
        name = gr.Dropdown(
            label="Constitution", choices=store.names(), elem_id="constitution-name", scale=3
        )
        version = gr.Dropdown(label="Version", choices=[], elem_id="constitution-version", scale=3)
        new_name = gr.Textbox(
            label="New constitution",
            placeholder="name, then Create",
            elem_id="new-constitution-name",
            scale=2,
        )
        create = gr.Button("Create", elem_id="create-constitution", scale=1)
    status = gr.HTML(elem_id="constitution-status")
    with gr.Row():
        with gr.Column(scale=2):
            table = gr.Dataframe(
                headers=TABLE_HEADERS,
                interactive=False,
                wrap=True,
                column_widths=["8%", "8%", "34%", "36%", "14%"],
                elem_id="principle-table",
                label="Principles (click to edit)",
            )
            with gr.Row():
                up = gr.Button("↑ Up", elem_id="principle-up", size="sm")
                down = gr.Button("↓ Down", elem_id="principle-down", size="sm")
                delete = gr.Button("Delete", elem_id="principle-delete", size="sm", variant="stop")
                add = gr.Button("+ New principle", elem_id="principle-new", size="sm")
        with gr.Column(scale=3):
            editing = gr.Markdown("Select a principle to edit it.", elem_id="principle-editing")
            fields, errors = {}, {}
            with gr.Row():
                with gr.Column(scale=2, min_width=160):
                    fields["id"] = gr.Textbox(label="id", elem_id="field-id")
                    errors["id"] = field_error("id")
                with gr.Column(scale=1, min_width=100):
                    fields["weight"] = gr.Number(label="weight", value=1.0, elem_id="field-weight")
                    errors["weight"] = field_error("weight")
                with gr.Column(scale=1, min_width=100):
                    fields["enabled"] = gr.Checkbox(
                        label="enabled", value=True, elem_id="field-enabled"
                    )
                    errors["enabled"] = field_error("enabled")
            for key, label in (
                ("title", "title"),
                ("critique_request", "critique request"),
                ("revision_request", "revision request"),
                ("preference_question", "preference question"),
                ("tags", "tags (comma-separated)"),
            ):
                fields[key] = gr.Textbox(
                    label=label, lines=1 if key in ("title", "tags") else 3, elem_id=f"field-{key}"
                )
                errors[key] = field_error(key)
            with gr.Row():
                apply = gr.Button("Apply changes", variant="primary", elem_id="principle-apply")
                revert = gr.Button("Revert edits", elem_id="principle-revert")
    with gr.Row():
        note = gr.Textbox(
            label="Version note",
            placeholder="what changed (optional)",
            elem_id="version-note",
            scale=3,
        )
        save = gr.Button("Save as new version", variant="primary", elem_id="save-version", scale=1)
        discard = gr.Button("Discard draft", elem_id="discard-draft", scale=1)
    with gr.Row():
        upload = gr.UploadButton(
            "Import YAML file…",
            file_types=[".yaml", ".yml", ".txt"],
            type="filepath",
            elem_id="import-yaml",
        )
        export = gr.DownloadButton("Export YAML", elem_id="export-yaml")
    with gr.Accordion("YAML (edit and apply)", open=False):
        yaml_code = gr.Code(language="yaml", interactive=True, elem_id="yaml-view", lines=20)
        yaml_errors = gr.HTML(elem_id="yaml-errors")
        apply_yaml = gr.Button("Apply YAML", elem_id="apply-yaml")
    with gr.Accordion("Compare versions", open=False):
        with gr.Row():
            diff_a = gr.Dropdown(label="From", choices=[], elem_id="diff-a")
            diff_b = gr.Dropdown(label="To", choices=[], elem_id="diff-b")
            run_diff = gr.Button("Diff", elem_id="run-diff")
        diff_out = gr.HTML(elem_id="diff-output")

    with gr.Accordion("What would change? (relabel a label run under this draft)", open=False):
        with gr.Row():
            label_run = gr.Dropdown(label="Label run", choices=[], elem_id="relabel-run", scale=3)
            relabel_limit = gr.Number(
                value=16, precision=0, label="first N pairs (0 = all)", elem_id="relabel-limit"
            )
            relabel_button = gr.Button("What would change?", elem_id="relabel-run-button")
        relabelled = gr.HTML(elem_id="relabel-output")
    label_run.focus(lambda: gr.update(choices=label_runs(store)), None, label_run)
    relabel_button.click(
        partial(on_what_would_change, store), [current, label_run, relabel_limit], relabelled
    )

    field_list = [fields[k] for k in FIELDS]
    error_list = [errors[k] for k in FIELDS]
    outputs = [
        current,
        base,
        selected,
        name,
        version,
        status,
        table,
        editing,
        yaml_code,
        yaml_errors,
        export,
        diff_a,
        diff_b,
        *field_list,
        *error_list,
        message,
        note,
    ]

    def show(shown: Shown | None) -> dict:
        """A handler's answer as component updates (what it leaves out stays as it is)."""
        if shown is None:
            return {}
        out: dict = {message: shown.message}
        screen = shown.screen
        if screen is not None:
            c = screen.constitution
            out.update(
                {
                    current: c,
                    base: screen.base,
                    name: gr.update(choices=screen.names, value=c.name),
                    version: gr.update(choices=screen.versions, value=screen.base),
                    status: screen.status,
                    table: screen.table,
                    yaml_code: screen.yaml,
                    yaml_errors: "",
                    export: screen.export,
                    diff_a: gr.update(choices=screen.refs),
                    diff_b: gr.update(choices=screen.refs),
                }
            )
        shown_editor = shown.editor or (screen.editor if screen else None)
        if shown_editor is not None:
            out.update({selected: shown_editor.selected, editing: shown_editor.heading})
            out.update({fields[k]: shown_editor.values[k] for k in FIELDS})
            out.update({errors[k]: shown_editor.errors[k] for k in FIELDS})
        if shown.field_errors is not None:
            out.update({errors[k]: shown.field_errors[k] for k in FIELDS})
        if shown.yaml_errors is not None:
            out[yaml_errors] = shown.yaml_errors
        if shown.note is not None:
            out[note] = shown.note
        return out

    def wire(handler: Callable[..., Shown | None], *bound: Any) -> Callable[..., dict]:
        return lambda *args: show(handler(store, *bound, *args))

    def on_select(
        c: Constitution,
        base_version,
        index,
        pid,
        title,
        critique,
        revision,
        question,
        weight,
        tags,
        enabled,
        evt: gr.SelectData,
    ) -> dict:
        """(The editor's fields are spelled out: Gradio hands the event to a named argument.)"""
        target = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return show(
            on_open_principle(
                store,
                c,
                base_version,
                index,
                target,
                pid,
                title,
                critique,
                revision,
                question,
                weight,
                tags,
                enabled,
            )
        )

    edits = in_order("constitution")  # each edit reads the draft the one before wrote
    name.input(wire(on_pick_name), name, outputs, **edits, **NEWEST)
    version.input(wire(on_pick_version), [current, version, base], outputs, **edits, **NEWEST)
    editor_state = [current, base, selected, *field_list]
    table.select(on_select, editor_state, outputs, **edits)
    add.click(
        lambda c, b, i, *values: show(on_open_principle(store, c, b, i, None, *values)),
        editor_state,
        outputs,
        **edits,
    )
    revert.click(
        lambda c, i: show(
            Shown(notice("info", "Edits reverted."), editor=editor(c, i)) if c is not None else None
        ),
        [current, selected],
        outputs,
        **edits,
    )
    apply.click(wire(on_apply), [current, base, selected, *field_list], outputs, **edits)
    delete.click(wire(on_delete), [current, base, selected], outputs, **edits)
    up.click(wire(on_move, -1), [current, base, selected], outputs, **edits)
    down.click(wire(on_move, 1), [current, base, selected], outputs, **edits)
    apply_yaml.click(wire(on_apply_yaml), yaml_code, outputs, **edits)
    upload.upload(wire(on_import), upload, outputs, **edits)
    save.click(wire(on_save), [current, note, selected], outputs, **edits)
    discard.click(wire(on_discard), current, outputs, **edits)
    create.click(wire(on_create), new_name, outputs, **edits)
    demo.load(wire(on_load), None, outputs, **edits)
    run_diff.click(lambda a, b: on_diff(store, a, b), [diff_a, diff_b], diff_out)
    return lambda constitution_name, principle_id: show(
        focus(store, constitution_name, principle_id)
    ), outputs
