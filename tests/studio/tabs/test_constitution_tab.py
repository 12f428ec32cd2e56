"""The Constitution tab's handlers, without a browser: each returns what the tab shows."""

import html

from pipeline.data import constitution as cons
from studio.tabs import constitution as tab


def fields_of(editor):
    return [editor.values[k] for k in tab.FIELDS]


def test_the_page_opens_on_the_default_constitution_saved(store):
    screen = tab.on_load(store).screen
    assert screen.constitution.name == "harmless-helpful" and screen.base == 1
    assert "saved, based on v1" in screen.status and screen.editor.selected == 0
    assert screen.export.startswith(str(store.exports)) and "harmless-helpful@1" in screen.refs


def test_an_edit_becomes_a_draft_and_a_refused_one_changes_nothing(store):
    screen = tab.on_load(store).screen
    c, values = screen.constitution, fields_of(screen.editor)
    values[tab.FIELDS.index("title")] = "Guard privacy"
    shown = tab.on_apply(store, c, 1, 0, *values)
    assert "Updated principle" in shown.message and "unsaved draft" in shown.screen.status
    assert store.draft("harmless-helpful") is not None
    values[tab.FIELDS.index("weight")] = -2
    refused = tab.on_apply(store, shown.screen.constitution, 1, 0, *values)
    assert refused.screen is None and "greater than 0" in refused.field_errors["weight"]
    assert "This principle has problems" in refused.message
    assert (
        cons.parse_constitution(store.draft("harmless-helpful").yaml).principles[0].title
        == "Guard privacy"
    )


def test_switching_principles_applies_unapplied_edits_or_keeps_them_with_a_warning(store):
    screen = tab.on_load(store).screen
    c, values = screen.constitution, fields_of(screen.editor)
    assert (
        "1 principle " not in screen.status and f"{len(c.principles)} principles" in screen.status
    )
    untouched = [float(v) if k == "weight" else v for k, v in zip(tab.FIELDS, values)]
    assert tab.on_open_principle(store, c, 1, 0, 2, *untouched).editor.selected == 2
    values[tab.FIELDS.index("title")] = "Guard privacy"
    switched = tab.on_open_principle(store, c, 1, 0, 2, *values)
    assert "Applied your edits" in html.unescape(switched.message)
    assert switched.screen.constitution.principles[0].title == "Guard privacy"
    assert switched.screen.editor.selected == 2 and store.draft("harmless-helpful") is not None
    values[tab.FIELDS.index("weight")] = -1
    kept = tab.on_open_principle(store, switched.screen.constitution, 1, 0, 3, *values)
    assert kept.screen is None and kept.editor is None  # the typed edits stay on screen
    assert "not applied" in kept.message and "greater than 0" in kept.field_errors["weight"]
    blank = tab.editor(c, None)
    assert tab.on_open_principle(store, c, 1, None, 1, *fields_of(blank)).editor.selected == 1


def test_delete_and_move_need_a_selection_and_then_act(store):
    c = tab.on_load(store).screen.constitution
    assert "Select a principle" in tab.on_delete(store, c, 1, None).message
    moved = tab.on_move(store, 1, c, 1, 0).screen
    assert moved.constitution.principles[1] == c.principles[0] and moved.editor.selected == 1
    deleted = tab.on_delete(store, c, 1, 0)
    assert f"Deleted principle '{c.principles[0].id}'" in html.unescape(deleted.message)
    assert len(deleted.screen.constitution.principles) == len(c.principles) - 1


def test_yaml_save_discard_create_and_diff(store):
    c = tab.on_load(store).screen.constitution
    bomb = tab.on_apply_yaml(store, "name: x\na: &a [1]\nprinciples: [*a]\n")
    assert "anchors and aliases" in bomb.yaml_errors and bomb.screen is None
    edited = cons.to_yaml(c).replace("title: Respect privacy", "title: Privacy first")
    adopted = tab.on_apply_yaml(store, edited)
    assert "as a draft of 'harmless-helpful'" in html.unescape(adopted.message)
    saved = tab.on_save(store, adopted.screen.constitution, "privacy", 4)
    assert "Saved harmless-helpful v2" in saved.message and saved.screen.base == 2
    assert saved.note == "" and saved.screen.editor.selected == 4  # note used; editor stays
    assert "No changes since" in tab.on_save(store, saved.screen.constitution, "", None).message
    assert "same content" in tab.on_diff(store, "harmless-helpful@1", "harmless-helpful@1")
    assert "Privacy first" in tab.on_diff(store, "harmless-helpful@1", "harmless-helpful@2")
    assert "Pick two versions" in tab.on_diff(store, None, "harmless-helpful@2")
    assert "Type a name" in tab.on_create(store, " ").message
    assert "already exists" in tab.on_create(store, "honest").message
    created = tab.on_create(store, "mine")
    assert created.screen.constitution.name == "mine" and "not saved yet" in created.screen.status
    discarded = tab.on_discard(store, created.screen.constitution)
    assert "Discarded the unsaved 'mine'" in html.unescape(discarded.message)


def test_another_tab_can_open_one_principle(store):
    shown = tab.focus(store, "harmless-helpful", "privacy")
    assert shown.editor is None and shown.screen.editor.values["id"] == "privacy"
    assert "no longer has a principle" in tab.focus(store, "harmless-helpful", "gone").message


def test_what_would_change_relabels_a_label_run_under_the_draft(tmp_path, tiny_folder):
    from pipeline.cai.feedback import Labeller, run_labelling
    from pipeline.config.commands import LabelJob, job_yaml
    from pipeline.config.settings import FeedbackConfig
    from pipeline.data.preferences import Pair
    from pipeline.data.store import Store
    from pipeline.model.loading import load_model
    from tests.records import harmless

    store = Store(tmp_path / "ws")
    store.seed()
    pairs = [Pair(f"Question {i}?", f"Sure, answer {i}.", f"No {i}.") for i in range(3)]
    labels = tmp_path / "labels"
    run_labelling(
        Labeller(load_model(str(tiny_folder)), FeedbackConfig(ensemble=1)),
        harmless(),
        pairs,
        labels,
    )
    (labels / "job.yaml").write_text(
        job_yaml(LabelJob(pairs="p", constitution="c", model=str(tiny_folder), ensemble=1))
    )
    shown = tab.on_what_would_change(store, harmless(), str(labels), 2)
    assert "0 of 2 labels flip side under the draft; 0 move" in shown  # nothing was edited
    assert "Pick a label run" in tab.on_what_would_change(store, harmless(), None, 3)
    assert "Open a constitution" in tab.on_what_would_change(store, None, "x", 3)
    assert "notice-error" in tab.on_what_would_change(
        store, harmless(), str(tmp_path / "nowhere"), 3
    )
    assert tab.label_runs(store) == []  # succeeded label jobs of the workspace only
