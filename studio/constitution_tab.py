"""Constitution tab: edit principles, round-trip YAML, import/export, versions and diffs.

The draft being edited is autosaved in the workspace store after every accepted edit, so
a page reload or a server restart loses nothing; "Save as new version" makes it permanent.
Every edit goes through `pipeline.constitution`, which validates it; a rejected edit shows
its messages next to the fields and leaves the draft as it was.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Callable

import gradio as gr

from pipeline import constitution as cons
from pipeline.constitution import Constitution
from pipeline.errors import ConstitutionError, StudioError
from pipeline.files import write_atomic
from pipeline.store import Store, parse_ref
from studio.notices import error_notice, notice

FIELDS = ("id", "title", "critique_request", "revision_request", "preference_question",
          "weight", "tags", "enabled")
TABLE_HEADERS = ["#", "on", "id", "title", "weight"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "constitution"


def _export_path(store: Store, c: Constitution, base: int | None, draft: bool) -> str:
    suffix = f"-v{base}" if base else ""
    path = store.exports / f"{_slug(c.name)}{suffix}{'-draft' if draft else ''}.yaml"
    return str(write_atomic(path, cons.to_yaml(c)))


def _version_choices(store: Store, name: str) -> list[tuple[str, int]]:
    return [(f"v{r.version} · {r.created_at[:16].replace('T', ' ')} · {r.note or r.hash[:8]}",
             r.version) for r in store.versions(name)]


def _ref_choices(store: Store) -> list[str]:
    return [f"{r.name}@{r.version}" for r in store.all_versions()]


def diff_html(text: str) -> str:
    """Colour a `format_diff` text: additions green, removals red."""
    rows = []
    for line in text.splitlines():
        stripped = line.lstrip()
        kind = ("diff-head" if line.startswith(("---", "+++", "~")) or stripped.startswith("@@")
                else "diff-add" if stripped.startswith("+")
                else "diff-del" if stripped.startswith("-") else "")
        rows.append(f'<div class="{kind}">{html.escape(line) or "&nbsp;"}</div>')
    return f'<div class="diff-view">{"".join(rows)}</div>'


def field_error(key: str) -> gr.HTML:
    """The slot beside a field where its validation message appears."""
    return gr.HTML(elem_classes="field-error", elem_id=f"error-{key}", container=False,
                   padding=False)


def build(store: Store, demo: gr.Blocks) -> tuple[Callable[[str, str], dict], list]:
    """Lay out the tab and wire its events (call inside a gr.Tab of `demo`). Returns a
    function that shows one principle of a constitution in the editor, and the components
    it updates, so other tabs can jump here."""
    current, base, selected = gr.State(None), gr.State(None), gr.State(None)
    message = gr.HTML(elem_id="constitution-message")
    with gr.Row():
        name = gr.Dropdown(label="Constitution", choices=store.names(), elem_id="constitution-name",
                           scale=3)
        version = gr.Dropdown(label="Version", choices=[], elem_id="constitution-version", scale=3)
        new_name = gr.Textbox(label="New constitution", placeholder="name, then Create",
                              elem_id="new-constitution-name", scale=2)
        create = gr.Button("Create", elem_id="create-constitution", scale=1)
    status = gr.HTML(elem_id="constitution-status")
    with gr.Row():
        with gr.Column(scale=2):
            table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, wrap=True,
                                 column_widths=["8%", "8%", "34%", "36%", "14%"],
                                 elem_id="principle-table", label="Principles (click to edit)")
            with gr.Row():
                up = gr.Button("↑ Up", elem_id="principle-up", size="sm")
                down = gr.Button("↓ Down", elem_id="principle-down", size="sm")
                delete = gr.Button("Delete", elem_id="principle-delete", size="sm", variant="stop")
                add = gr.Button("+ New principle", elem_id="principle-new", size="sm")
        with gr.Column(scale=3):
            editing = gr.Markdown("Select a principle to edit it.", elem_id="principle-editing")
            fields, errors = {}, {}
            with gr.Row():
                fields["id"] = gr.Textbox(label="id", elem_id="field-id", scale=2)
                fields["weight"] = gr.Number(label="weight", value=1.0, elem_id="field-weight",
                                             scale=1)
                fields["enabled"] = gr.Checkbox(label="enabled", value=True,
                                                elem_id="field-enabled", scale=1)
            with gr.Row():
                for key in ("id", "weight", "enabled"):
                    errors[key] = field_error(key)
            for key, label in (("title", "title"), ("critique_request", "critique request"),
                               ("revision_request", "revision request"),
                               ("preference_question", "preference question"),
                               ("tags", "tags (comma-separated)")):
                fields[key] = gr.Textbox(label=label, lines=1 if key in ("title", "tags") else 3,
                                         elem_id=f"field-{key}")
                errors[key] = field_error(key)
            apply = gr.Button("Apply changes", variant="primary", elem_id="principle-apply")
    with gr.Row():
        note = gr.Textbox(label="Version note", placeholder="what changed (optional)",
                          elem_id="version-note", scale=3)
        save = gr.Button("Save as new version", variant="primary", elem_id="save-version", scale=1)
        discard = gr.Button("Discard draft", elem_id="discard-draft", scale=1)
    with gr.Row():
        upload = gr.UploadButton("Import YAML file…", file_types=[".yaml", ".yml", ".txt"],
                                 type="filepath", elem_id="import-yaml")
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

    field_list = [fields[k] for k in FIELDS]
    error_list = [errors[k] for k in FIELDS]
    view = [current, base, selected, name, version, status, table, editing, yaml_code,
            yaml_errors, export, diff_a, diff_b, *field_list, *error_list]

    def render(c: Constitution, base_version: int | None, index: int | None, draft: bool,
               restored: bool = False) -> dict:
        """Every component's value for draft `c` with principle `index` in the editor."""
        if draft:
            store.save_draft(c, base_version)
        names = store.names()
        state = ("unsaved draft" + (" (restored)" if restored else "")) if draft else "saved"
        based = f"based on v{base_version}" if base_version else "not saved yet"
        out = {
            current: c, base: base_version, selected: index,
            name: gr.update(choices=sorted(set(names) | {c.name}), value=c.name),
            version: gr.update(choices=_version_choices(store, c.name) if c.name in names else [],
                               value=base_version),
            status: notice("info" if draft else "ok",
                           f"{c.name}: {len(c.principles)} principles "
                           f"({len(c.enabled_principles)} enabled) · {state}, {based} · "
                           f"hash {cons.content_hash(c)[:12]}"),
            table: [[i + 1, "✓" if p.enabled else "✗", p.id, p.title, p.weight]
                    for i, p in enumerate(c.principles)],
            yaml_code: cons.to_yaml(c), yaml_errors: "",
            export: _export_path(store, c, base_version, draft),
            diff_a: gr.update(choices=_ref_choices(store)),
            diff_b: gr.update(choices=_ref_choices(store)),
        }
        out.update(fill_editor(c, index))
        return out

    def fill_editor(c: Constitution, index: int | None) -> dict:
        out = {errors[k]: "" for k in FIELDS}
        if index is None or index >= len(c.principles):
            out.update({fields[k]: "" for k in FIELDS if k not in ("weight", "enabled")})
            out.update({fields["weight"]: 1.0, fields["enabled"]: True,
                        editing: "**New principle** — fill in the fields, then *Apply changes*."})
            return out
        p = c.principles[index]
        values = cons.principle_to_dict(p)
        values["tags"] = ", ".join(p.tags)
        out.update({fields[k]: values[k] for k in FIELDS})
        out[editing] = f"**Editing principle {index + 1} of {len(c.principles)}:** `{p.id}`"
        return out

    def open_saved(chosen: str | None, version_no: int | None = None) -> dict:
        names = store.names()
        if not names:
            return render(cons.new_constitution("my-constitution"), None, 0, draft=True)
        chosen = chosen if chosen in names else names[0]
        draft = store.draft(chosen) if version_no is None else None
        if draft is not None:
            c = cons.parse_constitution(draft.yaml, f"draft of {chosen}")
            return render(c, draft.base_version, 0, draft=True, restored=True)
        record = store.version(chosen, version_no)
        return render(record.constitution, record.version, 0, draft=False)

    def on_load() -> dict:
        drafts = [d for d in (store.draft(n) for n in store.names()) if d]
        latest_draft = max(drafts, key=lambda d: d.updated_at).name if drafts else None
        return {**open_saved(latest_draft or store.default_name()), message: ""}

    def on_pick_name(chosen: str) -> dict:
        return {**open_saved(chosen), message: ""}

    def on_pick_version(c: Constitution | None, version_no: int | None, base_version) -> dict:
        if c is None or version_no is None or version_no == base_version:
            return {}
        out = open_saved(c.name, int(version_no))
        return {**out, message: notice("info", f"Opened {c.name} v{version_no}. Your unsaved "
                                                "draft, if any, was replaced by this version.")}

    def on_select(c: Constitution, evt: gr.SelectData) -> dict:
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return {selected: index, **fill_editor(c, index), message: ""}

    def on_new_principle(c: Constitution) -> dict:
        return {selected: None, **fill_editor(c, None), message: ""}

    def on_apply(c: Constitution, base_version, index, *values) -> dict:
        raw = dict(zip(FIELDS, values))
        raw["tags"] = [t.strip() for t in (raw["tags"] or "").split(",") if t.strip()]
        raw["weight"] = raw["weight"] if raw["weight"] is not None else 1.0
        try:
            principle = cons.principle_from_fields(raw)
            updated = cons.put_principle(c, principle, index)
        except ConstitutionError as exc:
            out = {errors[k]: "" for k in FIELDS}
            for issue in exc.issues:
                out[errors[str(issue.path[-1])]] = (
                    f'<span class="field-error-text">{html.escape(issue.message)}</span>')
            return {**out, message: error_notice(exc)}
        new_index = index if index is not None else len(updated.principles) - 1
        verb = "Updated" if index is not None else "Added"
        return {**render(updated, base_version, new_index, draft=True),
                message: notice("ok", f"{verb} principle '{principle.id}' (draft autosaved).")}

    def on_delete(c: Constitution, base_version, index) -> dict:
        if index is None:
            return {message: notice("error", "Select a principle in the table first.")}
        try:
            updated = cons.remove_principle(c, index)
        except ConstitutionError as exc:
            return {message: error_notice(exc)}
        return {**render(updated, base_version, min(index, len(updated.principles) - 1),
                         draft=True),
                message: notice("ok", f"Deleted principle '{c.principles[index].id}'.")}

    def on_move(offset: int):
        def move(c: Constitution, base_version, index) -> dict:
            if index is None:
                return {message: notice("error", "Select a principle in the table first.")}
            updated = cons.move_principle(c, index, offset)
            target = min(max(index + offset, 0), len(c.principles) - 1)
            return {**render(updated, base_version, target, draft=True), message: ""}
        return move

    def adopt(c: Constitution, source: str) -> dict:
        """Make an imported or pasted constitution the draft of its name."""
        names = store.names()
        base_version = store.version(c.name).version if c.name in names else None
        return {**render(c, base_version, 0, draft=True),
                message: notice("ok", f"Loaded {source} as a draft of '{c.name}'. It is not "
                                      "saved until you click Save as new version.")}

    def on_apply_yaml(text: str) -> dict:
        try:
            c = cons.parse_constitution(text or "", "The YAML")
        except ConstitutionError as exc:
            return {yaml_errors: error_notice(exc), message: error_notice(exc)}
        return adopt(c, "the YAML")

    def on_import(path: str | None) -> dict:
        if not path:
            return {}
        label = Path(path).name
        try:
            c = cons.load_constitution(path, label)
        except ConstitutionError as exc:
            return {message: error_notice(exc)}
        return adopt(c, label)

    def on_save(c: Constitution, note_text: str) -> dict:
        try:
            record, created = store.save_version(c, note=note_text or "")
        except StudioError as exc:
            return {message: error_notice(exc)}
        text = (f"Saved {record.label} (hash {record.hash[:12]})." if created else
                f"No changes since {record.label}; nothing new was saved.")
        return {**render(record.constitution, record.version, 0, draft=False),
                message: notice("ok", text)}

    def on_discard(c: Constitution) -> dict:
        store.discard_draft(c.name)
        if c.name not in store.names():
            return {**open_saved(None), message: notice("ok", f"Discarded the unsaved '{c.name}'.")}
        return {**open_saved(c.name), message: notice("ok", "Draft discarded; showing the latest "
                                                             "saved version.")}

    def on_create(new: str) -> dict:
        new = (new or "").strip()
        if not new:
            return {message: notice("error", "Type a name for the new constitution first.")}
        if new in store.names():
            return {message: notice("error", f"A constitution named '{new}' already exists; "
                                             "pick it in the list or choose another name.")}
        return {**render(cons.new_constitution(new), None, 0, draft=True),
                message: notice("ok", f"Created draft '{new}' with one starter principle.")}

    def on_diff(ref_a: str | None, ref_b: str | None) -> str:
        if not ref_a or not ref_b:
            return notice("error", "Pick two versions to compare.")
        labels, sides = [], []
        for ref in (ref_a, ref_b):
            record = store.version(*parse_ref(ref))
            labels.append(record.label)
            sides.append(record.constitution)
        return diff_html(cons.format_diff(cons.diff_constitutions(*sides), *labels))

    outputs = view + [message]
    name.input(on_pick_name, name, outputs)
    version.input(on_pick_version, [current, version, base], outputs)
    table.select(on_select, current, outputs)
    add.click(on_new_principle, current, outputs)
    apply.click(on_apply, [current, base, selected, *field_list], outputs)
    delete.click(on_delete, [current, base, selected], outputs)
    up.click(on_move(-1), [current, base, selected], outputs)
    down.click(on_move(1), [current, base, selected], outputs)
    apply_yaml.click(on_apply_yaml, yaml_code, outputs)
    upload.upload(on_import, upload, outputs)
    save.click(on_save, [current, note], outputs)
    discard.click(on_discard, current, outputs)
    create.click(on_create, new_name, outputs)
    run_diff.click(on_diff, [diff_a, diff_b], diff_out)
    def focus(constitution_name: str, principle_id: str) -> dict:
        out = open_saved(constitution_name)
        c = out[current]
        ids = [p.id for p in c.principles]
        if principle_id not in ids:
            return {**out, message: notice("error", f"'{c.name}' no longer has a principle "
                                                    f"'{principle_id}'.")}
        index = ids.index(principle_id)
        return {**out, selected: index, **fill_editor(c, index),
                message: notice("info", f"Showing principle '{principle_id}' of {c.name}.")}

    demo.load(on_load, None, outputs)
    return focus, outputs
