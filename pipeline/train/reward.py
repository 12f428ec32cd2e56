"""The preference model (PM): the base model's hidden state at the end of an answer, through
a LoRA adapter and a scalar head, trained on soft AI labels — and optionally pretrained
(PMP) on Stack Exchange answers ranked by votes.

The PM lives on the same causal-LM base as the policy (not a separate sequence-classification
model), so PPO can hold one base model with the PM as one named adapter among others.
"""
from __future__ import annotations

import json
import math
import pickle
import random
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.critique import stable_int
from pipeline.errors import DatasetError
from pipeline.files import recover_folder, replace_folder
from pipeline.jobs import JobCancelled
from pipeline.models import check_adapter_base, LoadedModel, load_model
from pipeline.preferences import gold_pairs, read_labels
from pipeline.train.configs import PMPJob, RewardJob
from pipeline.train.runtime import (ADAPTER_DIR, CHECKPOINT_DIR, CancelFlag, MetricsLog,
                                    check_gradients, check_loss, lora_config, write_model_card)

HEAD_FILE = "reward_head.pt"
PM_FILE = "preference_model.json"


@dataclass(frozen=True)
class Comparison:
    """One training example: P(answer_a is better) = p."""

    prompt: str
    answer_a: str
    answer_b: str
    p: float


def soft_preference_loss(r_a: torch.Tensor, r_b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """−[p·log σ(r_A − r_B) + (1 − p)·log σ(r_B − r_A)]: the Bradley–Terry loss on a soft
    label; at p = 1 it is the usual −log σ(r_good − r_bad)."""
    return -(p * F.logsigmoid(r_a - r_b) + (1 - p) * F.logsigmoid(r_b - r_a)).mean()


# --- scoring -----------------------------------------------------------------------------------

def backbone(model):
    """The transformer under the LM head (whatever adapter is active on it)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(inner, inner.base_model_prefix)


def encode_answers(tokenizer, prompts: list[str], answers: list[str],
                   max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Chat-rendered (prompt, answer) conversations, left-padded, each cut from the left to
    `max_length` tokens so the answer's end — where the PM reads — is always kept."""
    rows = []
    for prompt, answer in zip(prompts, answers):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": answer}],
                                             tokenize=False)
        rows.append(tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:])
    width = max(len(r) for r in rows)
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def scores_from_ids(model, head: torch.nn.Linear, ids: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
    """The PM score of each left-padded row: the head on the last position's hidden state."""
    device = head.weight.device
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    hidden = backbone(model)(input_ids=ids.to(device), attention_mask=mask.to(device),
                             position_ids=positions.to(device)).last_hidden_state
    return apply_head(head, hidden[:, -1])


def apply_head(head: torch.nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """A scalar head on hidden states; the head stays fp32 while a GPU base runs in bf16."""
    return head(hidden.to(head.weight.dtype)).squeeze(-1).float()


def reward_scores(model, head, tokenizer, prompts: list[str], answers: list[str],
                  max_length: int = 512) -> torch.Tensor:
    return scores_from_ids(model, head, *encode_answers(tokenizer, prompts, answers, max_length))


# --- data --------------------------------------------------------------------------------------

def ai_comparisons(data: str | Path) -> list[Comparison]:
    """Soft-labelled comparisons from a labelling run (identical pairs carry no preference)."""
    return [Comparison(p.pair.prompt, p.pair.response_a, p.pair.response_b, p.p_a)
            for p in read_labels(data) if "identical" not in p.flags]


def gold_comparisons() -> list[Comparison]:
    return [Comparison(p.prompt, p.response_a, p.response_b, 1.0 if p.human == "A" else 0.0)
            for p in gold_pairs() if p.human in ("A", "B")]


def pmp_score(votes: int, accepted: bool) -> int:
    """The PMP answer score of the CAI/Anthropic recipe: round(log2(1 + upvotes)), +1 if the
    answer was accepted, −1 if its vote count is negative."""
    score = round(math.log2(1 + max(votes, 0)))
    return score + (1 if accepted else 0) - (1 if votes < 0 else 0)


def _plain(body: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", unescape(body or ""))).strip()


def pmp_comparisons(posts_xml: str | Path, max_pairs: int = 0) -> list[Comparison]:
    """Answer pairs from a Stack Exchange Posts.xml dump: for every question with at least two
    answers, each pair of its answers with different PMP scores, the higher one preferred."""
    try:
        root = ElementTree.parse(posts_xml).getroot()
    except (OSError, ElementTree.ParseError) as exc:
        raise DatasetError(f"Cannot read the Stack Exchange dump {posts_xml}: {exc}") from None
    questions, answers = {}, {}
    for row in root.iter("row"):
        kind = row.get("PostTypeId")
        if kind == "1":
            questions[row.get("Id")] = row
        elif kind == "2" and row.get("ParentId"):
            answers.setdefault(row.get("ParentId"), []).append(row)
    pairs = []
    for qid, rows in sorted(answers.items()):
        question = questions.get(qid)
        if question is None or len(rows) < 2:
            continue
        prompt = (_plain(question.get("Title", "")) + "\n\n" + _plain(question.get("Body", ""))).strip()
        scored = [(pmp_score(int(r.get("Score", "0")), r.get("Id") == question.get("AcceptedAnswerId")),
                   _plain(r.get("Body", ""))) for r in rows]
        for i in range(len(scored)):
            for j in range(i + 1, len(scored)):
                (s_i, a_i), (s_j, a_j) = scored[i], scored[j]
                if s_i != s_j and a_i and a_j:
                    pairs.append(Comparison(prompt, a_i, a_j, 1.0 if s_i > s_j else 0.0))
    if not pairs:
        raise DatasetError(f"{posts_xml} has no question with two answers of different scores.")
    return pairs[:max_pairs or None]


# --- loading and saving ------------------------------------------------------------------------

def new_head(loaded: LoadedModel) -> torch.nn.Linear:
    head = torch.nn.Linear(loaded.model.config.hidden_size, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return head.to(loaded.device)


def write_pm(model, head: torch.nn.Linear, folder: Path, base_model: str) -> None:
    """Adapter + head + a marker naming the base, into `folder` (one being replaced)."""
    model.save_pretrained(str(folder))
    torch.save(head.state_dict(), folder / HEAD_FILE)
    (folder / PM_FILE).write_text(json.dumps({"base_model": base_model}))


def save_pm(model, head: torch.nn.Linear, folder: Path, base_model: str) -> Path:
    """A PM folder, replaced crash-safely."""
    return replace_folder(folder, lambda tmp: write_pm(model, head, tmp, base_model))


def load_head(folder: str | Path, loaded: LoadedModel) -> torch.nn.Linear:
    """A saved scalar head; read as plain tensors only (`weights_only`), so a crafted file
    cannot run code."""
    path = Path(folder) / HEAD_FILE
    if not path.exists():
        raise DatasetError(f"{folder} is not a preference model (no {HEAD_FILE}); train one "
                           "with `python -m pipeline reward`.")
    head = new_head(loaded)
    try:
        head.load_state_dict(torch.load(path, map_location=loaded.device, weights_only=True))
    except (RuntimeError, ValueError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise DatasetError(f"{path} is not a scalar head this model can use: "
                           f"{str(exc).splitlines()[0]}") from None
    return head


# --- training ----------------------------------------------------------------------------------

def accuracy(model, head, tokenizer, comparisons: list[Comparison], max_length: int,
             batch_size: int = 8) -> float:
    """How often the PM scores the preferred answer higher (soft labels at 0.5 left out)."""
    decided = [c for c in comparisons if c.p != 0.5]
    if not decided:
        return float("nan")
    right = 0
    with torch.no_grad():
        for start in range(0, len(decided), batch_size):
            chunk = decided[start:start + batch_size]
            r = reward_scores(model, head, tokenizer, [c.prompt for c in chunk] * 2,
                              [c.answer_a for c in chunk] + [c.answer_b for c in chunk], max_length)
            r_a, r_b = r[:len(chunk)], r[len(chunk):]
            right += sum((a > b) == (c.p > 0.5) for a, b, c in zip(r_a.tolist(), r_b.tolist(), chunk))
    return right / len(decided)


def train_preference_model(job: RewardJob | PMPJob, train: list[Comparison],
                           evals: dict[str, list[Comparison]], out: str | Path,
                           cancel: CancelFlag | None = None, init_adapter: str = "") -> Path:
    """The PM training loop (shared by PMP and reward training); resumes from
    `out/checkpoint`. Returns the PM folder."""
    from peft import PeftModel, get_peft_model

    out, cancel = Path(out), cancel or CancelFlag()
    if not train:
        raise DatasetError("No comparisons to train the preference model on.")
    torch.manual_seed(job.seed)
    loaded = load_model(job.model)
    checkpoint = out / CHECKPOINT_DIR
    resumed = recover_folder(checkpoint)
    start_from = resumed or (Path(init_adapter) if init_adapter else None)
    if init_adapter:
        check_adapter_base(init_adapter, loaded)
    if start_from:
        model = PeftModel.from_pretrained(loaded.model, str(start_from), is_trainable=True)
        head = load_head(start_from, loaded)
    else:
        model, head = get_peft_model(loaded.model, lora_config(job)), new_head(loaded)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=job.learning_rate)
    state = json.loads((checkpoint / "state.json").read_text()) if resumed else {"step": 0}
    if resumed:
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    per_epoch = math.ceil(len(train) / job.batch_size)
    total = job.max_steps or max(1, math.ceil(job.epochs * per_epoch))
    order = list(range(len(train)))
    log = MetricsLog(out)
    log.rewind(state["step"])

    def save_checkpoint(step: int) -> None:
        def write(folder: Path) -> None:
            write_pm(model, head, folder, job.model)
            torch.save(optimizer.state_dict(), folder / "optimizer.pt")
            (folder / "state.json").write_text(json.dumps({"step": step}))
        replace_folder(checkpoint, write)

    try:
        model.train()
        for step in range(state["step"], total):
            epoch, offset = divmod(step * job.batch_size, len(train))
            random.Random(stable_int("pm-order", job.seed, epoch)).shuffle(order)
            batch = [train[order[(offset + i) % len(train)]] for i in range(job.batch_size)]
            r = reward_scores(model, head, loaded.tokenizer, [c.prompt for c in batch] * 2,
                              [c.answer_a for c in batch] + [c.answer_b for c in batch],
                              job.max_length)
            r_a, r_b = r[:len(batch)], r[len(batch):]
            p = torch.tensor([c.p for c in batch], device=r.device)
            loss = soft_preference_loss(r_a, r_b, p)
            check_loss(loss, step + 1)
            optimizer.zero_grad()
            loss.backward()
            check_gradients(params, step + 1)
            optimizer.step()
            agree = ((r_a > r_b) == (p > 0.5)).float().mean().item()
            log.write(step + 1, total, loss=loss.item(), accuracy=agree,
                      margin=(r_a - r_b).abs().mean().item())
            if cancel.requested or (step + 1) % job.save_every == 0:
                save_checkpoint(step + 1)
            if cancel.requested:
                raise JobCancelled()
        model.eval()
        results = {name: accuracy(model, head, loaded.tokenizer, data, job.max_length)
                   for name, data in evals.items()}
        log.write(total, total, **{f"{name}_accuracy": value for name, value in results.items()})

        def write(folder: Path) -> None:
            write_pm(model, head, folder, job.model)
            write_model_card(folder, "Preference model (LoRA + scalar head)", job, {
                "base model": job.model, "data": job.data, "comparisons": len(train),
                "steps": total,
                **{f"{name} accuracy": f"{value:.3f}" for name, value in results.items()}})

        folder = replace_folder(out / ADAPTER_DIR, write)
    finally:
        model.unload()  # the base model is shared in this process: take LoRA off it
    return folder


def train_reward(job: RewardJob, out: str | Path, cancel: CancelFlag | None = None) -> Path:
    """Train the PM on AI labels; held-out accuracy on the AI labels and on the gold pairs."""
    comparisons = ai_comparisons(job.data)
    held = [c for c in comparisons
            if stable_int("pm-eval", job.seed, c.prompt, c.answer_a) % 1000 < job.eval_fraction * 1000]
    train = [c for c in comparisons if c not in held] or comparisons
    return train_preference_model(job, train, {"held_out_ai": held, "gold": gold_comparisons()},
                                  out, cancel, job.init_adapter)


def train_pmp(job: PMPJob, out: str | Path, cancel: CancelFlag | None = None) -> Path:
    """Preference-model pretraining on a Stack Exchange dump."""
    return train_preference_model(job, pmp_comparisons(job.data, job.max_pairs),
                                  {"gold": gold_comparisons()}, out, cancel)
