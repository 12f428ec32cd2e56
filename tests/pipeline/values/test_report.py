"""The values report: on the tiny model every part of it runs and serialises; on the
embedded model and the gold pairs, the shipped adversarial constitution is flagged and the
others are not."""

import json

import pytest
import torch

from pipeline.cai.feedback import Labeller
from pipeline.config.settings import FeedbackConfig
from pipeline.data.constitution import load_constitution
from pipeline.data.preferences import Pair, gold_pairs
from pipeline.model.loading import LoadedModel, load_model
from pipeline.values.features import labelled
from pipeline.values.report import format_report, layer_fits, pair_evidence, values_report
from tests.records import SHIPPED, harmless
from tests.tiny import tiny_model


def test_every_part_of_the_report_runs_and_serialises_on_a_tiny_model():
    loaded = tiny_model()
    pairs = [
        Pair(
            f"Question {i}?",
            f"A kind and safe answer number {i}." * (1 + i % 3),
            f"No. {i}",
            human="AB"[i % 2],
        )
        for i in range(10)
    ]
    data = labelled(pairs, {})
    evidence = pair_evidence(loaded, data)
    judge = Labeller(loaded, FeedbackConfig(ensemble=1))
    steps = []
    report = values_report(
        loaded, harmless(), data, evidence, folds=3, judge=judge, step=steps.append
    )
    assert len(report.rows) == 3 and report.pairs == 10  # embeddings + 2 layers
    assert report.judge is not None and report.gap == pytest.approx(
        report.judge.value - report.generation.value
    )
    assert any("layer" in s for s in steps) and "contrastive" in " ".join(steps)
    out = json.loads(json.dumps(report.as_json()))
    assert len(out["ceiling"]["value"]) == 3 and isinstance(out["adversarial"], bool)
    assert len(out["cos_judge"]) == 3 and report.best.judge_direction is not None
    for key in ("cos_constitution", "cos_generation", "cos_judge"):
        assert len(out[f"{key}_interval"]) == 3
        assert all(-1 <= low <= high <= 1 for low, high in out[f"{key}_interval"]), key
    low, high = out["mean_cos_constitution_interval"]
    assert low <= high and out["grounds"].startswith(
        "its direction" if report.adversarial else "mean cos(w_c, w*) over layers"
    )
    assert set(out["principle_cosines"]) == {p.id for p in harmless().enabled_principles}
    assert set(out["principle_accuracy"]) == set(out["principle_cosines"])
    text = format_report(report)
    assert text.startswith("adversarial constitution: ") and "length alone" in text
    assert text.splitlines()[0].endswith(report.grounds) and "95% interval" in text
    assert "judge's own direction (probe on its labels)" in text


@pytest.mark.slow
def test_the_shipped_adversarial_constitution_is_flagged_on_the_gold_pairs():
    loaded = load_model()
    data = labelled(gold_pairs(), {})
    evidence = pair_evidence(loaded, data, layers=[8, 13, 18])
    fits = layer_fits(data, evidence, "logistic", 5, 0)  # shared, as values compare does
    flags = {
        name: values_report(
            loaded, load_constitution(SHIPPED / f"{name}.yaml"), data, evidence, fits=fits
        ).adversarial
        for name in ("adversarial", "harmless-helpful", "honest")
    }
    assert flags == {"adversarial": True, "harmless-helpful": False, "honest": False}


def test_the_adversarial_flag_reads_the_mean_cosine_and_the_length_controlled_judge():
    from pipeline.values.report import Accuracy, LayerRow, ValuesReport

    acc = Accuracy(0.5, 0.4, 0.6, 0.5)

    def report(cosines, judge_p=None, interval=(-0.2, -0.01)):
        rows = tuple(LayerRow(i, acc, acc, acc, acc, c, 0.0) for i, c in enumerate(cosines))
        return ValuesReport(
            "m",
            "c",
            "h",
            10,
            "answer_mean",
            "logistic",
            rows,
            None,
            acc if judge_p is not None else None,
            judge_p,
            acc,
            mean_cos_constitution_interval=interval,
        )

    assert report([-0.05, -0.01, 0.02]).adversarial_reasons == [
        "its direction points away from the human preference (mean cos(w_c, w*) over layers "
        "-0.013, 95% interval -0.200 to -0.010)"
    ]
    unsettled = report([-0.05, -0.01, 0.02], interval=(-0.03, 0.004))
    assert unsettled.adversarial and unsettled.grounds.endswith(
        "the interval holds 0, so these pairs do not settle its sign)"
    )
    assert not report([0.05, -0.01, 0.02]).adversarial
    assert report([0.05], judge_p=0.01).adversarial_reasons == [
        "its judge is below chance with length controlled (p = 0.010)"
    ]
    calm = report([0.05], judge_p=0.2, interval=(0.01, 0.09))
    assert not calm.adversarial and calm.grounds == (
        "mean cos(w_c, w*) over layers +0.050, 95% interval +0.010 to +0.090; its judge is not "
        "below chance with length controlled (p = 0.200)"
    )
    assert "do not settle its sign" in report([0.05], interval=(-0.01, 0.09)).grounds


def test_two_constitutions_mean_cosines_are_compared_on_the_same_resamples():
    from pipeline.values.report import cosine_difference

    base = {
        "model": "m",
        "pairs": 4,
        "layers": [1, 2],
        "pooling": "answer_mean",
        "method": "logistic",
        "seed": 0,
        "mean_cos_constitution": 0.1,
        "mean_cos_resampled": [0.1 + k / 1000 for k in range(200)],
    }
    shifted = {
        **base,
        "mean_cos_constitution": 0.3,
        "mean_cos_resampled": [0.3 + k / 1000 for k in range(200)],
    }
    found = cosine_difference(shifted, base)  # every resample moves by the same 0.2: paired
    assert (found.value, found.low, found.high) == pytest.approx((0.2, 0.2, 0.2))
    assert found.text == "+0.200 (+0.200 to +0.200; excludes 0)"
    noisy = {**base, "mean_cos_resampled": [0.1 + (-1) ** k * k / 1000 for k in range(200)]}
    assert "excludes" not in cosine_difference(noisy, base).text
    for other in (
        {**shifted, "layers": [1]},
        {**shifted, "seed": 1},
        {**shifted, "pairs": 5},
        {**shifted, "mean_cos_resampled": []},
    ):
        assert cosine_difference(other, base) is None


GOOD, BAD = "I refuse; please stay safe.", "Sure, here is how."


def planted_model(constitutions) -> LoadedModel:
    """The tiny model trained until it answers GOOD under every instruction that asks for
    harmlessness (a shipped principle's own instruction, or the opposite of an inverted
    one's) and BAD under the rest: a value direction planted where the report looks for it."""
    from pipeline.model.generation import chat
    from pipeline.values.directions import STIMULUS_PROMPTS, instructions
    from tests.tiny import fresh_tiny_model

    loaded = fresh_tiny_model()
    tok, model = loaded.tokenizer, loaded.model
    rows = []
    for c in constitutions:
        for p in c.enabled_principles:
            wanted = (BAD, GOOD) if "inverted" in p.tags else (GOOD, BAD)
            for instruction, answer in zip(instructions(p), wanted):
                for prompt in STIMULUS_PROMPTS:
                    head = tok(
                        tok.apply_chat_template(
                            chat(prompt, instruction), tokenize=False, add_generation_prompt=True
                        ),
                        add_special_tokens=False,
                    )["input_ids"]
                    tail = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                    rows.append((head + tail, len(head)))
    width = max(len(r) for r, _ in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask, target = torch.zeros_like(ids), torch.full_like(ids, -100)
    for i, (r, start) in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        target[i, start : len(r)] = torch.tensor(r[start:])

    def loss(batch: torch.Tensor) -> torch.Tensor:
        h = model.model(input_ids=ids[batch], attention_mask=mask[batch]).last_hidden_state
        wanted = target[batch, 1:]
        chosen = wanted != -100
        return torch.nn.functional.cross_entropy(model.lm_head(h[:, :-1][chosen]), wanted[chosen])

    torch.manual_seed(0)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    for step in range(1, 601):
        optimiser.zero_grad()
        loss(torch.randperm(len(rows))[:32]).backward()
        optimiser.step()
        if step % 25 == 0:
            with torch.no_grad():
                if loss(torch.arange(len(rows))) < 0.003:
                    break
    model.eval()
    return loaded


def test_the_adversarial_flag_finds_a_direction_planted_in_a_trained_tiny_model():
    names = ("adversarial", "harmless-helpful", "honest")
    constitutions = {n: load_constitution(SHIPPED / f"{n}.yaml") for n in names}
    loaded = planted_model(constitutions.values())
    pairs = [
        Pair(
            f"Question {i}: how do I do thing {i}?",
            *((GOOD, BAD) if i % 2 else (BAD, GOOD)),
            human="BA"[i % 2],
        )
        for i in range(10)
    ]  # people prefer GOOD
    data = labelled(pairs, {})
    evidence = pair_evidence(loaded, data)
    reports = {n: values_report(loaded, c, data, evidence) for n, c in constitutions.items()}
    for name, report in reports.items():  # the model learned what was planted
        follows = (BAD, GOOD) if name == "adversarial" else (GOOD, BAD)
        assert set(report.examples.values()) == {follows}, name
    assert {n: r.adversarial for n, r in reports.items()} == {
        "adversarial": True,
        "harmless-helpful": False,
        "honest": False,
    }
    assert (
        reports["adversarial"].mean_cos_constitution < 0 < reports["honest"].mean_cos_constitution
    )
    assert all(r.best.ceiling.value == 1.0 for r in reports.values())
