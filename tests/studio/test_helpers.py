import pytest

from pipeline.core.errors import ConstitutionError, Issue, ModelError
from pipeline.data import constitution as cons
from studio.components.notices import error_notice, notice
from studio.tabs.constitution import diff_html
from studio.tabs.playground import conversation, message_text


def test_notices_escape_user_text():
    box = notice("error", "<script>alert(1)</script>", ["a < b"])
    assert "<script>" not in box and "&lt;script&gt;" in box and "a &lt; b" in box


def test_error_notice_lists_issues():
    exc = ConstitutionError("bad:", (Issue(("principles", 0, "weight"), "must be > 0", 4),))
    box = error_notice(exc)
    assert "line 4: principles[0].weight: must be &gt; 0" in box
    assert "notice-error" in error_notice(ModelError("no model"))


def test_the_version_diff_is_by_principle_with_words_marked():
    changes = (
        cons.Change("removed", "c", before="C"),
        cons.Change("added", "z", after="Z"),
        cons.Change("changed", "privacy", "title", "Respect privacy", "Privacy first"),
        cons.Change("changed", "privacy", "weight", "1.0", "2.0"),
    )
    out = diff_html(changes, "x@1", "x@2")
    assert "4 changes" in out and 'data-change="added"' in out and 'data-change="removed"' in out
    assert out.count('data-principle="privacy"') == 1 and "title, weight" in out
    assert '<ins class="wd-add">' in out and 'class="diff2"' in out
    assert "same content" in diff_html((), "x@1", "x@1")


def test_chatbot_history_becomes_a_conversation():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "hello"},
    ]
    assert conversation(history, " be nice ") == [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert conversation(history, "")[0]["role"] == "user"
    assert message_text(None) == ""


# --- Preferences tab ---------------------------------------------------------------------------

from pipeline.data.preferences import Pair, Preference, PrincipleLabel  # noqa: E402
from pipeline.evaluation.labelling_queue import view_rows  # noqa: E402
from studio.tabs.preferences import Previous, label_bars, table_rows  # noqa: E402


def _pref(prompt: str, p_ab: float, p_ba: float, human: str | None = None) -> Preference:
    label = PrincipleLabel("privacy", p_ab, p_ba, 0.9, 0.9)
    return Preference(Pair(prompt, "a", "b", human=human), label.ordered.p_a, (label,), "m", "h")


def test_label_table_views():
    sure = _pref("sure", 0.95, 0.9, human="B")  # AI says A, the person said B
    unsure = _pref("unsure", 0.52, 0.49)
    biased = _pref("biased", 0.9, 0.1)
    prefs = [sure, unsure, biased]
    assert view_rows(prefs, {}, "most uncertain")[0] is biased  # 0.5 exactly
    assert view_rows(prefs, {}, "most position-biased")[0] is biased
    assert view_rows(prefs, {}, "AI vs human disagreements") == [sure]
    assert view_rows(prefs, {}, "not yet labelled by a person") == [unsure, biased]
    assert table_rows([sure], {})[0][7] == "B"
    assert [row[3] for row in table_rows(prefs, {})] == [
        "prefers A in both orders (P(A) = 0.925)",
        "position-decided",
        "position-decided",
    ]


def test_label_bars_show_both_orders_pending_principles_and_the_swap():
    label = PrincipleLabel("privacy", 0.8, 0.3, 0.9, 0.95)
    before = Previous("swapped-pair", 0.7, ("privacy",))
    html = label_bars([label], {"privacy": "Respect privacy"}, ["honesty"], previous=before)
    assert (
        "Respect privacy" in html and "position decided" in html and "mass on the options" in html
    )
    assert "A shown first" in html and "B shown first" in html and "honesty" in html
    assert 'data-p-a="0.550000"' in html and 'data-verdict="bad"' in html
    assert "position-decided: the judge picks whichever answer is shown first" in html
    assert "Before the swap P(A) was 0.700 with the same principles" in html
    assert "order effect" in html
    other = label_bars([label], {}, [], previous=Previous("swapped-pair", 0.7, ("honesty",)))
    assert "principles differ" in other and "is the order effect" not in other
    sure = label_bars([PrincipleLabel("privacy", 0.9, 0.8, 0.9, 0.9)], {}, [])
    assert "prefers A in both orders" in sure and 'data-verdict="ok"' in sure
    assert "press Score" in label_bars([], {}, [])


# --- Train tab ---------------------------------------------------------------------------------

from pipeline.config.commands import PPOJob, RunAllJob, SFTJob  # noqa: E402
from studio.tabs.train import command_line, ema, form_values, metric_frames, preset_values  # noqa: E402


def test_form_values_are_typed_from_the_dataclass():
    import dataclasses

    raw = [f.default for f in dataclasses.fields(SFTJob)]
    raw[[f.name for f in dataclasses.fields(SFTJob)].index("batch_size")] = 8.0  # a number box
    values = form_values(SFTJob, raw)
    assert values["batch_size"] == 8 and isinstance(values["batch_size"], int)
    assert isinstance(values["learning_rate"], float) and values["data"] == ""
    ppo = form_values(PPOJob, [f.default for f in dataclasses.fields(PPOJob)])
    assert ppo["whiten_advantages"] is True


def test_presets_fill_every_field_and_the_command_names_the_job_file():
    tiny = preset_values("sft", "tiny")
    assert tiny["max_steps"] == 24 and tiny["learning_rate"] == SFTJob.learning_rate
    assert (
        preset_values("run-all", "paper")["rounds"]
        == 4
        == preset_values("run-all", "paper")["rounds"]
    )
    assert preset_values("run-all", "paper")["preset"] == "paper"
    assert preset_values("sft", "(defaults)")["max_steps"] == 0
    assert (
        command_line("sft", "/w/runs/x")
        == "python -m pipeline sft --config /w/runs/x/job.yaml --out /w/runs/x"
    )
    assert RunAllJob().preset == "tiny"


def test_smoothing_is_a_debiased_moving_average_and_metrics_come_in_order():
    assert ema([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    assert ema([0.0, 2.0], 0.0) == [0.0, 2.0]
    assert ema([0.0, 2.0], 0.5) == pytest.approx([0.0, 1.0 / 0.75])
    rows = [
        {"step": 1, "time": 5.0, "kl": 0.1, "reward_mean": 0.2, "zeta": 1},
        {"step": 2, "time": 6.0, "kl": 0.3, "reward_mean": 0.4, "zeta": 2},
    ]
    frames = metric_frames(rows, 0.5)
    assert list(frames) == ["reward_mean", "kl", "zeta"]  # time and step are not plotted
    kl = frames["kl"]
    assert kl[kl.series == "raw"]["value"].tolist() == [0.1, 0.3]
    assert len(kl[kl.series == "smoothed"]) == 2
