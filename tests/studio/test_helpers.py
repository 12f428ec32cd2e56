from studio.constitution_tab import diff_html
from studio.notices import error_notice, notice
from studio.playground_tab import conversation, message_text
from pipeline.errors import ConstitutionError, Issue, ModelError


def test_notices_escape_user_text():
    box = notice("error", "<script>alert(1)</script>", ["a < b"])
    assert "<script>" not in box and "&lt;script&gt;" in box and "a &lt; b" in box


def test_error_notice_lists_issues():
    exc = ConstitutionError("bad:", (Issue(("principles", 0, "weight"), "must be > 0", 4),))
    box = error_notice(exc)
    assert "line 4: principles[0].weight: must be &gt; 0" in box
    assert "notice-error" in error_notice(ModelError("no model"))


def test_diff_html_marks_lines():
    out = diff_html("--- a\n+++ b\n+ principle z: Z\n- principle c: C\n    +new\n")
    assert out.count('class="diff-add"') == 2 and out.count('class="diff-del"') == 1


def test_chatbot_history_becomes_a_conversation():
    history = [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
               {"role": "assistant", "content": "hello"}]
    assert conversation(history, " be nice ") == [
        {"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}]
    assert conversation(history, "")[0]["role"] == "user"
    assert message_text(None) == ""


# --- Preferences tab ---------------------------------------------------------------------------

from pipeline.feedback import Pair, Preference, PrincipleLabel  # noqa: E402
from studio.preferences_tab import label_bars, next_in_queue, table_rows, view_rows  # noqa: E402


def _pref(prompt: str, p_ab: float, p_ba: float, human: str | None = None) -> Preference:
    label = PrincipleLabel("privacy", p_ab, p_ba, 0.9, 0.9)
    return Preference(Pair(prompt, "a", "b", human=human), label.ordered.p_a, (label,), "m", "h")


def test_label_table_views_and_the_queue():
    sure = _pref("sure", 0.95, 0.9, human="B")  # AI says A, the person said B
    unsure = _pref("unsure", 0.52, 0.49)
    biased = _pref("biased", 0.9, 0.1)
    prefs = [sure, unsure, biased]
    assert view_rows(prefs, {}, "most uncertain")[0] is biased  # 0.5 exactly
    assert view_rows(prefs, {}, "most position-biased")[0] is biased
    assert view_rows(prefs, {}, "AI vs human disagreements") == [sure]
    assert view_rows(prefs, {}, "not yet labelled by a person") == [unsure, biased]
    assert next_in_queue(prefs, {}, current=biased.pair.id) is unsure
    assert next_in_queue(prefs, {unsure.pair.id: "A", biased.pair.id: "tie"}, "") is None
    assert table_rows([sure], {})[0][6] == "B"


def test_label_bars_show_both_orders_pending_principles_and_the_swap():
    label = PrincipleLabel("privacy", 0.8, 0.3, 0.9, 0.95)
    html = label_bars([label], {"privacy": "Respect privacy"}, ["honesty"], previous=0.7)
    assert "Respect privacy" in html and "position decided" in html
    assert "A shown first" in html and "B shown first" in html and "honesty" in html
    assert 'data-p-a="0.550000"' in html and "before the swap P(A) was 0.700" in html
    assert "press Score" in label_bars([], {}, [])
