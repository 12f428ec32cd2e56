import os
import random
from pathlib import Path

import pytest
import torch

from pipeline.cai.reward_model import (
    HEAD_FILE,
    load_head,
    merged,
    new_head,
    pair_scores,
    reward_scores,
    scores_by_length,
)
from pipeline.config.commands import PMPJob, RewardJob
from pipeline.data.preferences import Comparison
from pipeline.data.stackexchange import pmp_comparisons, pmp_score
from pipeline.train.reward import soft_preference_loss, train_preference_model
from pipeline.train.runtime import read_metrics

POSTS = Path(__file__).resolve().parents[2] / "data" / "stackexchange_posts.xml"


def test_soft_loss_equals_the_hard_loss_at_certain_labels():
    r_a, r_b = torch.tensor([1.5, -0.3]), torch.tensor([0.2, 0.4])
    hard_a = -torch.nn.functional.logsigmoid(r_a - r_b).mean()
    hard_b = -torch.nn.functional.logsigmoid(r_b - r_a).mean()
    assert soft_preference_loss(r_a, r_b, torch.ones(2)).item() == pytest.approx(hard_a.item())
    assert soft_preference_loss(r_a, r_b, torch.zeros(2)).item() == pytest.approx(hard_b.item())
    half = soft_preference_loss(r_a, r_b, torch.full((2,), 0.5)).item()
    assert half == pytest.approx((hard_a.item() + hard_b.item()) / 2)


def test_pmp_scores_and_pairs_from_a_stack_exchange_dump():
    assert pmp_score(15, accepted=True) == round(torch.log2(torch.tensor(16.0)).item()) + 1 == 5
    assert pmp_score(3, accepted=False) == 2
    assert pmp_score(-2, accepted=False) == -1
    assert pmp_score(0, accepted=False) == 0
    pairs = pmp_comparisons(POSTS)
    # question 1: scores 2, 5, −1 → three pairs; question 5: equal scores → none; 7: one answer
    assert len(pairs) == 3
    assert all(c.prompt.startswith("How do I reverse a list in Python?") for c in pairs)
    best = [c for c in pairs if "lst[::-1]" in c.answer_a + c.answer_b]
    assert all((c.p == 1.0) == ("lst[::-1]" in c.answer_a) for c in best)
    assert "<p>" not in pairs[0].answer_a


def test_scores_by_length_are_each_answers_own_score_in_the_given_order():
    from tests.tiny import tiny_model

    loaded = tiny_model()
    head = new_head(loaded)
    torch.nn.init.normal_(head.weight, generator=torch.Generator().manual_seed(0))
    answers = ["Yes." * (1 + 7 * (i % 3)) + f" item {i}" for i in range(7)]  # 3 lengths, mixed
    prompts = [f"Question {i}?" for i in range(7)]
    batched = scores_by_length(loaded.model, head, loaded.tokenizer, prompts, answers, batch_size=3)
    with torch.no_grad():
        alone = [
            reward_scores(loaded.model, head, loaded.tokenizer, [p], [a])
            for p, a in zip(prompts, answers)
        ]
    assert torch.allclose(batched, torch.cat(alone), atol=1e-4)
    assert len(set(batched.tolist())) == 7  # the rows are told apart, so the order is checked
    again = [5, 2, 5]  # answers named again (a tournament's pairs in both orders) are scored once
    repeated = scores_by_length(
        loaded.model,
        head,
        loaded.tokenizer,
        prompts + [prompts[i] for i in again],
        answers + [answers[i] for i in again],
        batch_size=3,
    )
    assert torch.equal(repeated[:7], batched) and torch.equal(repeated[7:], batched[again])


@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # packed, and each row on its own
def test_the_answers_to_one_prompt_score_as_each_would_alone(attention):
    from tests.tiny import fresh_tiny_model

    loaded = fresh_tiny_model()
    loaded.model.config._attn_implementation = attention
    head = new_head(loaded)
    torch.nn.init.normal_(head.weight, generator=torch.Generator().manual_seed(0))
    prompts = ["Is it safe?", "Is it safe?", "Why?", "Is it safe?", "Why?", "Tell me more."]
    answers = ["Yes.", "No, never do that.", "Because.", "Maybe", "No reason at all.", "Sure."]
    with torch.no_grad():
        alone = torch.cat(
            [
                reward_scores(loaded.model, head, loaded.tokenizer, [p], [a])
                for p, a in zip(prompts, answers)
            ]
        )
        grouped = scores_by_length(
            loaded.model, head, loaded.tokenizer, prompts, answers, batch_size=4
        )
        first, second = [0, 2, 1], [3, 4, 0]  # answers to one prompt
        pairs = [Comparison(prompts[i], answers[i], answers[j], 1.0) for i, j in zip(first, second)]
        r_a, r_b = pair_scores(loaded.model, head, loaded.tokenizer, pairs, 512)
    assert torch.allclose(grouped, alone, atol=1e-5)
    assert torch.allclose(r_a, alone[first], atol=1e-5)
    assert torch.allclose(r_b, alone[second], atol=1e-5)


def test_a_merged_adapter_scores_as_the_lora_model_does_and_is_put_back():
    from peft import LoraConfig, get_peft_model

    from tests.tiny import fresh_tiny_model

    loaded = fresh_tiny_model()
    model = get_peft_model(loaded.model, LoraConfig(r=4, target_modules="all-linear"))
    for name, weight in model.named_parameters():
        if "lora_B" in name:  # an adapter that changes the scores
            torch.nn.init.normal_(weight, std=0.5, generator=torch.Generator().manual_seed(1))
    model.eval()
    head = new_head(loaded)
    torch.nn.init.normal_(head.weight, generator=torch.Generator().manual_seed(0))
    prompts, answers = ["Question?", "Another one?"], ["Yes, gladly.", "No."]

    def scores() -> torch.Tensor:
        return scores_by_length(model, head, loaded.tokenizer, prompts, answers)

    before, base = scores(), [p.clone() for p in model.base_model.model.parameters()]
    with model.disable_adapter():
        assert not torch.allclose(scores(), before, atol=1e-3)  # the adapter matters
    with merged(model):
        assert torch.allclose(scores(), before, atol=1e-4)
    assert torch.allclose(scores(), before, atol=1e-5)
    assert all(
        torch.allclose(p, q, atol=1e-6) for p, q in zip(model.base_model.model.parameters(), base)
    )


def synthetic(n: int, seed: int) -> list[Comparison]:
    """The preferred answer says 'gladly'; the other says 'never'."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        good, bad = f"Yes, gladly, here is item {i}.", f"No, never, not item {i}."
        out.append(
            Comparison(f"Question {i}?", good, bad, 1.0)
            if rng.random() < 0.5
            else Comparison(f"Question {i}?", bad, good, 0.0)
        )
    return out


def synthetic_pm(tiny_folder, out, **settings) -> RewardJob:
    """A PM trained 30 steps on the synthetic preference into `out`; its job."""
    job = RewardJob(
        model=str(tiny_folder),
        data="synthetic",
        max_steps=30,
        batch_size=8,
        learning_rate=3e-3,
        max_length=64,
        **settings,
    )
    train_preference_model(job, synthetic(48, 0), {"held_out": synthetic(24, 1)}, out)
    return job


def test_the_pm_learns_a_learnable_preference_and_resumes(tmp_path, tiny_folder):
    job = synthetic_pm(tiny_folder, tmp_path / "pm", save_every=10)
    folder = tmp_path / "pm" / "adapter"
    metrics = read_metrics(tmp_path / "pm")
    assert metrics[-1]["held_out_accuracy"] >= 0.85
    assert (folder / "adapter_config.json").exists() and (folder / "reward_head.pt").exists()
    card = (folder / "README.md").read_text()
    assert "held_out accuracy" in card and "(95% interval " in card
    # every preferred answer here is the longer one: length alone would score 100%, and a
    # length-controlled accuracy is undefined — both are said beside the accuracy
    assert metrics[-1]["held_out_always_longer"] == 1.0
    assert "length-controlled n/a; always-longer 100%" in (folder / "README.md").read_text()
    # a second run into the same folder resumes from the checkpoint at step 30: no new steps
    again = train_preference_model(job, synthetic(48, 0), {}, tmp_path / "pm")
    assert again == folder and max(r["step"] for r in read_metrics(tmp_path / "pm")) == 30
    # the saved PM scores the same way when loaded onto the base again
    from peft import PeftModel

    from pipeline.model.loading import load_model

    base = load_model(str(tiny_folder), device="cpu")
    pm = PeftModel.from_pretrained(base.model, str(folder))
    head = load_head(folder, base)
    with torch.no_grad():
        good, bad = reward_scores(
            pm, head, base.tokenizer, ["Q?", "Q?"], ["Yes, gladly, here it is.", "No, never."], 64
        )
    pm.unload()
    assert good > bad


def test_pmp_job_trains_on_the_dump(tmp_path, tiny_folder):
    job = PMPJob(model=str(tiny_folder), data=str(POSTS), max_steps=3, batch_size=2, max_length=64)
    folder = train_preference_model(job, pmp_comparisons(POSTS), {}, tmp_path / "pmp")
    assert (folder / "reward_head.pt").exists()
    assert len([r for r in read_metrics(tmp_path / "pmp") if "loss" in r]) == 3


def test_a_pm_trained_in_bf16_autocast_learns_as_the_fp32_one_does(tmp_path, tiny_folder):
    """bf16 autocast (what `auto` picks on a CPU with bf16 in hardware) trains the same PM:
    its second loss (the head starts at zero: the first is ln 2 in both) equal to bf16's
    precision but not to the bit, and the preference learnt as in fp32."""
    runs = {}
    for chosen in ("fp32", "bf16"):
        synthetic_pm(tiny_folder, tmp_path / chosen, precision=chosen)
        runs[chosen] = read_metrics(tmp_path / chosen)
    second = [runs[p][1]["loss"] for p in ("fp32", "bf16")]
    assert second[0] != second[1] and second[1] == pytest.approx(second[0], rel=0.02)
    assert all(runs[p][-1]["held_out_accuracy"] >= 0.85 for p in runs)
    cards = {p: (tmp_path / p / "adapter" / "README.md").read_text() for p in runs}
    assert "**arithmetic**: bf16 autocast (precision bf16)" in cards["bf16"]
    assert "**arithmetic**: fp32 (precision fp32)" in cards["fp32"]


def test_pm_scores_score_each_answer_once_per_pm(tmp_path, tiny_folder, monkeypatch):
    """A tournament asks the PM judge, then its policy statistics, for the same answers:
    the second asking reads what the first computed; a retrained PM is asked afresh."""
    from pipeline.evaluation import judges

    synthetic_pm(tiny_folder, tmp_path / "pm")
    folder = tmp_path / "pm" / "adapter"
    scored: list[int] = []
    real = judges.scores_by_length
    monkeypatch.setattr(
        judges,
        "scores_by_length",
        lambda *args, **kw: scored.append(len(args[3])) or real(*args, **kw),
    )
    first = judges.pm_scores(folder, ["Q?", "Q?"], ["Yes, gladly.", "No, never."])
    both = judges.pm_scores(folder, ["Q?"] * 3, ["No, never.", "Sure, gladly.", "Yes, gladly."])
    assert scored == [2, 1]  # only the answer not scored before
    assert both[0] == first[1] and both[2] == first[0] and first[0] > first[1]
    os.utime(folder / HEAD_FILE, ns=(1, 1))  # as a retrained PM's new head would be
    judges.pm_scores(folder, ["Q?"], ["Yes, gladly."])
    assert scored == [2, 1, 1]


def test_a_process_that_finds_every_pm_score_kept_does_not_load_the_pm(tmp_path, tiny_folder):
    """The kept scores are named by the PM's files, not by a loaded model: a later process
    (the tournament's after the PM stage's) reads them without loading the PM."""
    import subprocess
    import sys

    from pipeline.evaluation import judges

    synthetic_pm(tiny_folder, tmp_path / "pm")
    folder = tmp_path / "pm" / "adapter"
    first = judges.pm_scores(folder, ["Q?", "Q?"], ["Yes, gladly.", "No, never."])
    code = (
        "import sys; from pipeline.evaluation import judges; from pipeline.model import loading;"
        "s = judges.pm_scores(sys.argv[1], ['Q?', 'Q?'], ['Yes, gladly.', 'No, never.']);"
        "print(s.tolist(), len(loading._loaded))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [f"[{first[0].item()},", f"{first[1].item()}]", "0"]
