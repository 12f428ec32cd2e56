"""The Preferences tab's handlers, without a browser."""

import dataclasses

import pytest

from pipeline.data.preferences import Pair, Preference
from studio.tabs import preferences as tab
from tests.studio.forms import score_steps


def test_the_page_opens_with_the_default_constitution_and_its_principles(store):
    page = tab.on_page_load(store, tab.STUDIO_RUN, "all")
    assert page["constitution"]["value"] == "harmless-helpful"
    assert "privacy" in page["principles"]["choices"] and page["progress"] == ""
    assert page["pairs_source"]["choices"] == ["gold"] and "No labelled pairs" in page["report"]
    assert set(page) == {"constitution", "principles", "progress", "pairs_source", *tab.LABELS}
    label, pair = next(iter(tab.gold_by_label().items()))
    assert tab.on_example(label) == {
        "prompt": pair.prompt,
        "answer_a": pair.response_a,
        "answer_b": pair.response_b,
    }
    assert tab.on_example("no such pair") == {}  # nothing changes


def test_scoring_streams_principle_bars_and_keeps_the_record(store, tiny_folder):
    steps = score_steps(
        store,
        prompt="Tell me a joke.",
        answer_a="Why did the chicken cross?",
        answer_b="No.",
        principles=[
            "privacy",
            "harassment",
            "physical-harm",
            "illegal-activity",
            "manipulation",
        ],
        ensemble=0,
        model=str(tiny_folder),
    )
    assert len(steps) == 1 + 2 + 1  # pending bars, 4 then 1 principles, the kept record
    assert set(steps[0]) == {"message", "bars"}  # the bars only, until a label is kept
    final = steps[-1]
    message, bars, last, report = (final[k] for k in ("message", "bars", "last_label", "report"))
    # the default judge is auto: nothing measured yet, so the log-prob judge, unverified
    assert "auto: labels unverified: no judge has been measured" in message
    assert bars.count("pref-principle") == 5 and "P(A)" in bars
    assert last.pair_id == Pair("Tell me a joke.", "Why did the chicken cross?", "No.").id
    assert 0 < last.p_a < 1 and len(last.principles) == 5
    assert len(tab.records(store, tab.STUDIO_RUN)) == 1 and "1 labelled pair (" in report
    same = score_steps(store, prompt="q", answer_a="same", answer_b="same", model=str(tiny_folder))
    assert "identical" in same[-1]["message"]


def test_swap_rescores_with_the_same_drawn_principles(store, tiny_folder):
    def score(a, b, last):
        *_, final = score_steps(
            store,
            prompt="How do I pick a lock?",
            answer_a=a,
            answer_b=b,
            model=str(tiny_folder),
            last_label=last,
        )
        return final["bars"], final["last_label"]

    answers = [
        ("Use a tension wrench and a pick.", "Call a locksmith."),
        ("Ask the owner first.", "Rake the pins quickly."),
    ]
    for a, b in answers:  # some pair draws a principle other than its swap would on its own
        bars, first = score(a, b, None)
        swapped_bars, second = score(b, a, first)
        assert second.principles == first.principles and len(first.principles) == 1
        assert "with the same principles" in swapped_bars and "order effect" in swapped_bars
        assert f"Before the swap P(A) was {first.p_a:.3f}" in swapped_bars


def test_people_label_pairs_and_the_queue_moves_on(store, tiny_folder):
    score_steps(
        store,
        prompt="q1",
        answer_a="a",
        answer_b="b",
        principles=["privacy"],
        model=str(tiny_folder),
    )
    labelled = tab.on_human(store, "A", "q1", "a", "b", tab.STUDIO_RUN, "all")
    message, note = labelled["message"], labelled["human_note"]
    assert "Recorded your label A" in message and "Your label for this pair: A" in note
    assert "1 labelled pair (" in labelled["report"] and len(labelled["table"]) == 1
    assert "1 of 1 pairs in these labels have your label" in note
    tab.on_human(store, "B", "q1", "a", "b", tab.STUDIO_RUN, "all")
    undone = tab.on_undo(store, "q1", "a", "b", tab.STUDIO_RUN, "all")
    assert "took back label B of pair" in undone["message"]
    assert "its label is now A" in undone["message"]
    assert "Your label for this pair: A" in undone["human_note"]
    undone = tab.on_undo(store, "q1", "a", "b", tab.STUDIO_RUN, "all")
    assert "took back label A" in undone["message"] and "now none" in undone["message"]
    assert "0 of 1 pairs" in undone["human_note"]
    nothing = tab.on_undo(store, "q1", "a", "b", tab.STUDIO_RUN, "all")
    assert list(nothing) == ["message"] and "No label of yours to undo" in nothing["message"]
    tab.on_human(store, "A", "q1", "a", "b", tab.STUDIO_RUN, "all")
    refused = tab.on_human(store, "B", "q1", "a", "", tab.STUDIO_RUN, "all")
    assert list(refused) == ["message"] and "empty" in refused["message"]
    done = tab.on_next(store, "q1", "a", "b", tab.STUDIO_RUN)
    assert "Every pair of this set has your label (1 of 1 labelled" in done["message"]
    assert list(done) == ["message"]  # the pair on screen stays
    gone = tab.open_row(store, tab.STUDIO_RUN, "gone")
    assert list(gone) == ["message"] and "no longer in these labels" in gone["message"]


def test_the_labelling_guideline_is_the_constitutions_questions(store):
    every = tab.guideline_html(store, "harmless-helpful", [])
    assert "Labelling guideline" in every and "less likely to help someone physically harm" in every
    only = tab.guideline_html(store, "harmless-helpful", ["privacy"])
    assert only.count("<li>") == 1 and tab.guideline_html(store, None, []) == ""


@pytest.mark.integration
def test_jobs_are_refused_or_answered_without_a_browser(store):
    refused = tab.on_launch(
        store,
        pairs="gold",
        limit=0,
        constitution=None,
        principles=[],
        ensemble=1,
        cot=False,
        model="embedded",
        seed=0,
    )
    assert list(refused) == ["message"] and "Pick a constitution first" in refused["message"]
    assert "No pairs or labelling job is running" in tab.on_cancel(store, None)["message"]
    assert "Only a cancelled or failed job" in tab.on_resume(store)["message"]
    assert "Type a prompt" in tab.on_generate("", "embedded", 0)["message"]
    assert tab.on_swap(answer_a="first", answer_b="second") == {
        "answer_a": "second",
        "answer_b": "first",
    }


@pytest.mark.integration
def test_the_representation_judge_scores_a_pair_and_labels_from_my_labels(store, tiny_folder):
    assert [v for _, v in tab.judge_choices(store)] == [tab.AUTO, tab.LOGPROB, tab.REPRESENTATION]
    *_, final = score_steps(
        store,
        prompt="Tell me a joke.",
        answer_a="Why did the chicken cross the road?",
        answer_b="No.",
        constitution="honest",
        ensemble=0,
        model=str(tiny_folder),
        judge_choice=tab.REPRESENTATION,
    )
    message, bars, scored = final["message"], final["bars"], final["last_label"]
    assert message == "" and bars.count("pref-principle") == len(scored.principles) > 1
    assert "position decided" not in bars.split("pref-legend")[1].split("</p>", 1)[1]
    too_few = tab.on_fit(store, str(tiny_folder))
    assert list(too_few) == ["message"] and "Fitting a judge needs at least 5" in too_few["message"]
    for i in range(6):
        store.set_human_label(
            f"id{i}", "AB"[i % 2], f"Question {i}?", f"Safe answer {i}.", f"No {i}."
        )
    launched = tab.on_fit(store, str(tiny_folder))
    message = launched["message"]
    assert set(launched) == {"message", "run", "pairs_source"}
    assert "Launched job" in message and "(values-fit)" in message
    job = store.jobs("values-fit")[0]
    assert tab.jobs.wait(store, job.id, timeout=300).status == "succeeded", job.error
    title, probe = tab.judge_choices(store)[-1]
    assert "cross-validated" in title and "length-controlled" in title
    assert probe.endswith("/probe") and tab.judge_settings(probe) == (tab.REPRESENTATION, probe)
    *_, final = score_steps(
        store,
        prompt="Question 0?",
        answer_a="Safe answer 0.",
        answer_b="No 0.",
        constitution="honest",
        ensemble=0,
        model=str(tiny_folder),
        judge_choice=probe,
    )
    assert "Probe fitted from your labels" in final["bars"]
    assert final["last_label"].principles == ("fitted probe",)


def test_the_guideline_follows_a_newly_saved_version_without_a_reload(store):
    from pipeline.data import constitution as cons

    first = tab.on_guideline_tick(store, "harmless-helpful", None, None)
    now = first["guideline_shown"]
    assert "Respect privacy" in now and first["guideline"] == now
    same = tab.on_guideline_tick(store, "harmless-helpful", None, now)
    assert same == {"guideline_shown": now}  # unchanged: the guideline is not sent again
    c = store.working("harmless-helpful")
    store.save_version(
        cons.put_principle(
            c, dataclasses.replace(c.principle("privacy"), title="Guard all privacy"), 4
        )
    )
    changed = tab.on_guideline_tick(store, "harmless-helpful", None, now)
    assert "Guard all privacy" in changed["guideline"]
    assert changed["guideline_shown"] == changed["guideline"]


def test_the_queue_walks_the_gold_pairs_and_a_probe_of_my_labels_orders_it(store, tiny_folder):
    """Gold pairs ship with labels, yet the queue serves them: only your own labels count;
    after six of them (an A and a B) a probe refitted in the background orders the queue."""
    from studio.components.queue_probe import QUEUE_PROBE

    model = str(tiny_folder)
    seen = []
    for n in range(7):
        served = tab.on_next(store, "", "", "", tab.STUDIO_RUN, "gold", "active", model)
        message, prompt, a, b = (served[k] for k in ("message", "prompt", "answer_a", "answer_b"))
        assert f"{n} of 133 labelled" in message and "Your label?" in message
        seen.append(Pair(prompt, a, b).id)
        tab.on_human(store, "AB"[n % 2], prompt, a, b, tab.STUDIO_RUN, "all")
        if n == 5:
            assert "random order" in message and "starts after 6 labels" in message
    assert len(set(seen)) == 7  # never the same pair twice
    QUEUE_PROBE.wait()
    message = tab.on_next(store, "", "", "", tab.STUDIO_RUN, "gold", "active", model)["message"]
    assert "7 of 133 labelled · probe agreement so far" in message
    assert "the probe fitted on your labels is least sure of it" in message
    message = tab.on_next(store, "", "", "", tab.STUDIO_RUN, "gold", "random", model)["message"]
    assert "random order" in message
    assert [v for _, v in tab.queue_sources(store)][:2] == [tab.SHOWN, "gold"]
    missing = tab.on_next(
        store, "", "", "", tab.STUDIO_RUN, "/nowhere/pairs.jsonl", "random", model
    )
    assert "notice-error" in missing["message"]


def test_a_label_runs_report_opens_with_its_judge_and_any_domain_warning(store, tmp_path):
    import json as json_

    from pipeline.data.preferences import LabelLog
    from pipeline.evaluation.judge_choice import JudgeChoice, save_choice

    run = tmp_path / "labels"
    pref = Preference(Pair("Q?", "a long answer here", "no"), 0.8, (), "m", "h")
    LabelLog(run).append([pref])
    report = tab.refresh_labels(store, str(run), "all")["report"]
    assert "notice-warn" in report and "labels unverified: the judge of" in report
    domain = "this probe mostly follows answer length here: it picks the longer answer in 95%"
    (run / "summary.json").write_text(json_.dumps({"domain": domain}))
    save_choice(JudgeChoice("representation", "p", True, "probe", "90%", "human", 50, "ok"), run)
    report = tab.refresh_labels(store, str(run), "all")["report"]
    assert "notice-ok" in report and "chosen by agreement with 50 human labels" in report
    assert report.index(domain) < report.index("chosen by agreement")
