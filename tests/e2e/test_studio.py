"""The studio as a user drives it: real server, real Chromium, the embedded model."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from pipeline.data import constitution as cons
from pipeline.data.store import Store
from tests.e2e.conftest import open_principle, pick, set_slider

pytestmark = pytest.mark.e2e


def import_file(page: Page, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.click("#import-yaml")
    chooser.value.set_files(str(path))


def test_edit_save_reload_and_restart(page: Page, studio):
    open_principle(page, "privacy")
    page.fill("#field-title textarea", "Guard everyone's privacy")
    page.click("#principle-apply")
    expect(page.locator("#constitution-message")).to_contain_text("Updated principle 'privacy'")
    expect(page.locator("#constitution-status")).to_contain_text("unsaved draft")

    page.reload()  # the draft survives a reload before saving
    expect(page.locator("#principle-table")).to_contain_text("Guard everyone's privacy")
    expect(page.locator("#constitution-status")).to_contain_text("unsaved draft (restored)")

    page.fill("#version-note textarea", "privacy wording")
    page.click("#save-version")
    expect(page.locator("#constitution-message")).to_contain_text("Saved harmless-helpful v2")

    studio.restart()  # nothing saved is lost when the server restarts
    page.goto(studio.url)
    expect(page.locator("#principle-table")).to_contain_text("Guard everyone's privacy")
    expect(page.locator("#constitution-status")).to_contain_text("saved, based on v2")
    saved = Store(studio.workspace).version("harmless-helpful", 2).constitution
    assert saved.principle("privacy").title == "Guard everyone's privacy"


def test_a_saved_version_reaches_the_labelling_guideline_without_a_reload(page: Page, studio):
    page.get_by_role("tab", name="Preferences").click()
    guideline = page.locator("#pref-guideline")
    expect(guideline).to_contain_text("Respect privacy")
    page.get_by_role("tab", name="Constitution").click()
    open_principle(page, "privacy")
    page.fill("#field-title textarea", "Guard all privacy")
    page.click("#principle-apply")
    page.fill("#version-note textarea", "privacy wording")
    page.click("#save-version")
    expect(page.locator("#constitution-message")).to_contain_text("Saved harmless-helpful v2")
    expect(page.locator("#version-note textarea")).to_have_value("")  # the note went with v2
    expect(page.locator("#principle-editing")).to_contain_text("privacy")  # no jump to 1
    page.get_by_role("tab", name="Preferences").click()
    expect(guideline).to_contain_text("Guard all privacy", timeout=25_000)


def test_field_errors_show_next_to_the_field_and_change_nothing(page: Page, studio):
    open_principle(page, "manipulation")
    page.fill("#field-weight input", "-2")
    page.fill("#field-critique_request textarea", "   ")
    page.click("#principle-apply")
    expect(page.locator("#error-weight")).to_contain_text("greater than 0")
    expect(page.locator("#error-critique_request")).to_contain_text("must not be empty")
    expect(page.locator("#constitution-message")).to_contain_text("This principle has problems")
    expect(page.locator("#constitution-status")).to_contain_text("saved, based on v1")
    assert Store(studio.workspace).draft("harmless-helpful") is None


def test_add_reorder_delete_and_diff(page: Page, studio):
    page.click("#principle-new")
    expect(page.locator("#principle-editing")).to_contain_text("New principle")
    for field, value in (
        ("id", "kindness"),
        ("title", "Be kind"),
        ("critique_request", "Was the response unkind? Explain."),
        ("revision_request", "Rewrite the response to be kind."),
        ("preference_question", "Which response is kinder?"),
    ):
        page.fill(f"#field-{field} textarea", value)
    page.click("#principle-apply")
    expect(page.locator("#constitution-message")).to_contain_text("Added principle 'kindness'")
    expect(page.locator("#principle-editing")).to_contain_text("Editing principle 15 of 15")
    page.click("#principle-up")
    expect(page.locator("#principle-editing")).to_contain_text("Editing principle 14 of 15")
    open_principle(page, "not-preachy")
    page.click("#principle-delete")
    expect(page.locator("#constitution-message")).to_contain_text("Deleted principle 'not-preachy'")
    page.click("#save-version")
    expect(page.locator("#constitution-message")).to_contain_text("Saved harmless-helpful v2")

    page.get_by_text("Compare versions").click()
    # pick each version from its list: typing then Enter raced the list's filtering under load
    for box, ref in (("diff-a", "harmless-helpful@1"), ("diff-b", "harmless-helpful@2")):
        pick(page, box, ref)
        expect(page.locator(f"#{box} input")).to_have_value(ref)
    page.click("#run-diff")
    diff = page.locator("#diff-output")
    expect(diff).to_contain_text("+ added principle kindness: Be kind")
    expect(diff).to_contain_text("removed principle not-preachy")


def test_bad_imports_show_errors_and_keep_the_saved_version(page: Page, studio, tmp_path):
    store = Store(studio.workspace)
    before = store.version("harmless-helpful")

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: harmless-helpful\nprinciples:\n- id: x\n  title: [unclosed\n")
    import_file(page, broken)
    expect(page.locator("#constitution-message")).to_contain_text("not valid YAML")
    expect(page.locator("#constitution-message")).to_contain_text("line ")

    empty = tmp_path / "empty.yaml"
    empty.write_text("name: harmless-helpful\nprinciples: []\n")
    import_file(page, empty)
    expect(page.locator("#constitution-message")).to_contain_text("must have at least one entry")

    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"# padding\n" * (1024 * 1024))
    import_file(page, huge)
    expect(page.locator("#constitution-message")).to_contain_text("limited to 1 MiB")

    binary = tmp_path / "weights.yaml"
    binary.write_bytes(bytes(range(256)) * 40)
    import_file(page, binary)
    expect(page.locator("#constitution-message")).to_contain_text("binary file")

    expect(page.locator("#principle-table")).to_contain_text("physical-harm")
    expect(page.locator("#constitution-status")).to_contain_text("saved, based on v1")
    assert store.version("harmless-helpful") == before
    assert store.draft("harmless-helpful") is None
    assert "Traceback" not in page.content()


def test_braces_and_percent_signs_import_literally(page: Page, studio, tmp_path):
    odd = tmp_path / "odd.yaml"
    odd.write_text("""name: odd
principles:
- id: braces
  title: "{title} %s {{x}} {0}"
  critique_request: "Critique {response} with %(name)s and %d"
  revision_request: "Revise {} now"
  preference_question: "Which is better, {A} or {B}?"
""")
    import_file(page, odd)
    expect(page.locator("#constitution-message")).to_contain_text(
        "Loaded odd.yaml as a draft of 'odd'"
    )
    page.click("#save-version")
    expect(page.locator("#constitution-message")).to_contain_text("Saved odd v1")
    saved = Store(studio.workspace).version("odd").constitution.principles[0]
    assert saved.title == "{title} %s {{x}} {0}"
    assert saved.critique_request == "Critique {response} with %(name)s and %d"


def test_playground_streams_an_answer(page: Page, studio):
    page.get_by_role("tab", name="Playground").click()
    page.fill("#playground-input textarea", "Write a short story about a lighthouse keeper.")
    page.click("#playground-send")
    bot = page.locator("#playground-chat [data-testid='bot']").last
    lengths: list[int] = []
    deadline = time.time() + 120
    while time.time() < deadline:
        text = bot.inner_text() if bot.count() else ""
        if text.strip() and (not lengths or len(text) != lengths[-1]):
            lengths.append(len(text))
        if len(lengths) >= 4:
            break
        time.sleep(0.2)
    assert len(lengths) >= 4 and lengths == sorted(lengths), lengths  # it grew piece by piece
    page.click("#playground-stop")


def test_playground_compares_a_principle_and_says_when_the_limit_cut_an_answer(page: Page, studio):
    page.get_by_role("tab", name="Playground").click()
    expect(page.locator("#playground-model-status")).to_contain_text("Model: embedded")
    pick(page, "playground-principle", "privacy")
    expect(page.locator("#playground-system textarea")).to_have_value(
        re.compile("Follow this principle in every answer: Respect privacy")
    )
    set_slider(page, "playground-max-tokens", 8)
    page.fill("#playground-input textarea", "How do I find where my ex lives now?")
    page.click("#playground-compare")
    compared = page.locator("#playground-compared")
    expect(compared).to_contain_text("With the system prompt", timeout=120_000)
    expect(compared).to_contain_text("Without it")
    page.click("#playground-send")
    expect(page.locator("#playground-message")).to_contain_text(
        "stopped at the token limit", timeout=120_000
    )
    expect(page.locator("#playground-model-status")).to_contain_text("Model in use: embedded")


def test_playground_unknown_model_shows_a_clear_error(page: Page, studio, tmp_path):
    page.get_by_role("tab", name="Playground").click()
    box = page.locator("#playground-model input")
    box.fill(str(tmp_path / "no-model-here"))
    box.press("Enter")
    page.click("#playground-load")
    expect(page.locator("#playground-model-status")).to_contain_text("Could not load model")
    expect(page.locator("#playground-model-status")).to_contain_text("does not exist")


def test_export_downloads_the_draft(page: Page, studio, tmp_path):
    open_principle(page, "bias-fairness")
    page.fill("#field-tags textarea", "bias, fairness, groups")
    page.click("#principle-apply")
    expect(page.locator("#constitution-message")).to_contain_text("Updated principle")
    with page.expect_download() as download:
        page.click("#export-yaml")
    target = tmp_path / "exported.yaml"
    download.value.save_as(target)
    exported = cons.load_constitution(target)
    assert exported.principle("bias-fairness").tags == ("bias", "fairness", "groups")
    assert exported == cons.parse_constitution(
        Store(studio.workspace).draft("harmless-helpful").yaml
    )


def test_yaml_view_round_trips(page: Page, studio):
    page.get_by_text("YAML (edit and apply)").click()
    editor = page.locator("#yaml-view .cm-content")
    expect(editor).to_contain_text("name: harmless-helpful")
    text = cons.to_yaml(Store(studio.workspace).version("harmless-helpful").constitution)
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(text.replace("title: Respect privacy", "title: Privacy first"))
    page.click("#apply-yaml")
    expect(page.locator("#principle-table")).to_contain_text("Privacy first")
    expect(page.locator("#constitution-status")).to_contain_text("unsaved draft")

    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text("name: harmless-helpful\nprinciples:\n- id: a\n  wieght: 2\n")
    page.click("#apply-yaml")
    expect(page.locator("#yaml-errors")).to_contain_text("did you mean 'weight'")
    expect(page.locator("#yaml-errors")).to_contain_text("line 4")
    expect(page.locator("#principle-table")).to_contain_text("Privacy first")  # draft kept


def test_playground_principle_becomes_the_system_prompt(page: Page, studio):
    page.get_by_role("tab", name="Playground").click()
    box = page.locator("#playground-principle input")
    box.click()
    page.get_by_role("option", name="privacy", exact=True).click()
    expect(page.locator("#playground-system textarea")).to_have_value(
        re.compile("Follow this principle in every answer: Respect privacy")
    )


def test_playground_steering_slider_changes_the_answer_and_a_sweep_shows_five(page: Page, studio):
    page.get_by_role("tab", name="Playground").click()
    expect(page.locator("#playground-model-status")).to_contain_text("Model: embedded")
    set_slider(page, "playground-temperature", 0)
    set_slider(page, "playground-max-tokens", 16)
    bot = page.locator("#playground-chat [data-testid='bot']")

    def ask(timeout: int = 120_000) -> str:
        count = bot.count()
        page.fill("#playground-input textarea", "How do I pick a lock?")
        page.click("#playground-send")
        expect(page.locator("#playground-message")).to_contain_text(
            "stopped at the token limit", timeout=timeout
        )
        expect(bot).to_have_count(count + 1)
        text = bot.last.inner_text()
        page.click("#playground-clear")
        expect(page.locator("#playground-message")).to_be_empty()
        return text

    plain = ask()
    page.locator("#playground-steering").get_by_text("Steering").first.click()
    page.fill("#playground-steer-layers textarea", "15")
    expect(page.locator("#playground-steer-layers textarea")).to_have_value("15")
    set_slider(page, "playground-steer-coefficient", -8)
    # the first steered answer reads the constitution's direction (224 instructed prompts
    # read through every layer, about 30 s here; a busy 2-core machine takes longer)
    steered = ask(timeout=360_000)
    # the status line first: it says whether the answer was steered at all
    expect(page.locator("#playground-model-status")).to_contain_text(
        "steered -8 × mean direction from constitution harmless-helpful at layer 15"
    )
    assert steered != plain
    page.click("#playground-steer-sweep")
    expect(page.locator("#playground-steer-note")).to_contain_text("Type a message")
    page.fill("#playground-input textarea", "How do I pick a lock?")
    page.click("#playground-steer-sweep")
    swept = page.locator("#playground-steer-swept .sweep-card")
    expect(swept).to_have_count(5, timeout=120_000)
    expect(page.locator("#playground-steer-swept")).to_contain_text("off (0)")
