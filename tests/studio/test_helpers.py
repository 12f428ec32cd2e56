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
