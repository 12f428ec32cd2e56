"""The preference model (PM): a LoRA adapter on the causal-LM base plus a scalar head that
reads the hidden state at the end of an answer. What every user of a PM needs — scoring,
saving, loading, accuracy — lives here; its training loop is `train/reward.py`.

The PM lives on the same causal-LM base as the policy (not a separate sequence-classification
model), so PPO can hold one base model with the PM as one named adapter among others.
"""

from __future__ import annotations

import json
import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from pipeline.core.errors import DatasetError
from pipeline.core.files import replace_folder
from pipeline.core.stats import Accuracy, chose_longer, counted_accuracy
from pipeline.data.preferences import Comparison
from pipeline.model.hidden import backbone
from pipeline.model.loading import LoadedModel
from pipeline.model.packing import Packed, batch, pack, packed, packs

HEAD_FILE = "reward_head.pt"
PM_FILE = "preference_model.json"


# --- scoring -----------------------------------------------------------------------------------


def answer_rows(
    tokenizer, prompts: list[str], answers: list[str], max_length: int
) -> list[list[int]]:
    """Chat-rendered (prompt, answer) conversations as token ids, each cut from the left to
    `max_length` tokens so the answer's end — where the PM reads — is always kept."""
    rows = []
    for prompt, answer in zip(prompts, answers):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            tokenize=False,
        )
        rows.append(tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:])
    return rows


def left_padded(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def scores_from_ids(
    model, head: torch.nn.Linear, ids: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The PM score of each left-padded row: the head on the last position's hidden state."""
    device = head.weight.device
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    hidden = backbone(model)(
        input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device)
    ).last_hidden_state
    return apply_head(head, hidden[:, -1])


def apply_head(head: torch.nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """A scalar head on hidden states; the head stays fp32 while the base runs in bf16 (a
    GPU's weights, or a CPU's autocast: a bf16 score keeps ~3 digits, too few to tell two
    close answers apart)."""
    with torch.autocast(hidden.device.type, enabled=False):
        return head(hidden.to(head.weight.dtype)).squeeze(-1).float()


def reward_scores(
    model, head, tokenizer, prompts: list[str], answers: list[str], max_length: int = 512
) -> torch.Tensor:
    """PM scores of (prompt, answer) rows, packed (their shared start — the system prompt —
    once) where the model takes it."""
    rows = answer_rows(tokenizer, prompts, answers, max_length)
    return packed_scores(model, head, pack(rows), tokenizer.pad_token_id)


def packed_scores(model, head: torch.nn.Linear, rows: list[Packed], pad: int) -> torch.Tensor:
    """The PM score of every row the packed rows hold, in order (pipeline/model/packing.py);
    where the model takes no packed row, every row on its own."""
    if not packs(model):
        flat = [r for p in rows for r in p.rows()]
        return scores_from_ids(model, head, *left_padded(flat, pad))
    inputs = batch(rows, pad)
    device = head.weight.device
    hidden = backbone(model)(**{k: v.to(device) for k, v in inputs.inputs.items()})
    return apply_head(head, hidden.last_hidden_state[tuple(x.to(device) for x in inputs.ends())])


def pair_scores(
    model, head, tokenizer, pairs: list[Comparison], max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The PM scores of each comparison's two answers (a training step's), each pair's
    prompt computed once."""
    rows_a, rows_b = (
        answer_rows(tokenizer, [c.prompt for c in pairs], answers, max_length)
        for answers in ([c.answer_a for c in pairs], [c.answer_b for c in pairs])
    )
    rows = [packed([a, b]) for a, b in zip(rows_a, rows_b)]
    scores = packed_scores(model, head, rows, tokenizer.pad_token_id)
    return scores[0::2], scores[1::2]


def scores_by_length(
    model,
    head,
    tokenizer,
    prompts: list[str],
    answers: list[str],
    max_length: int = 512,
    batch_size: int = 16,
) -> torch.Tensor:
    """PM scores of many answers without gradients, in their order: each distinct (prompt,
    answer) once (a tournament's pairs, in both orders, name each answer four times), the
    answers to one prompt packed together (`packed_scores`), batched by length, so a batch
    pads to its own longest row, not to the longest of all (the gold pairs' answers run from
    a few tokens to 130; in input order most of each batch was padding); `batch_size`
    answers a batch."""
    distinct = list(dict.fromkeys(zip(prompts, answers)))
    where = {pair: i for i, pair in enumerate(distinct)}
    rows = answer_rows(tokenizer, [p for p, _ in distinct], [a for _, a in distinct], max_length)
    by_prompt: dict[str, list[int]] = {}
    for i, (prompt, _) in enumerate(distinct):
        by_prompt.setdefault(prompt, []).append(i)
    groups = sorted(by_prompt.values(), key=lambda g: sum(len(rows[i]) for i in g))
    scores = torch.zeros(len(rows))
    with torch.inference_mode():
        chunk: list[list[int]] = []
        for n, group in enumerate(groups):
            chunk.append(group)
            if n + 1 == len(groups) or sum(map(len, chunk)) + len(groups[n + 1]) > batch_size:
                together = [packed([rows[i] for i in g]) for g in chunk]
                found = packed_scores(model, head, together, tokenizer.pad_token_id)
                scores[[i for g in chunk for i in g]] = found.float().cpu()
                chunk = []
    return scores[[where[pair] for pair in zip(prompts, answers)]]


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
        raise DatasetError(
            f"{folder} is not a preference model (no {HEAD_FILE}); train one "
            "with `python -m pipeline reward`."
        )
    head = new_head(loaded)
    try:
        head.load_state_dict(torch.load(path, map_location=loaded.device, weights_only=True))
    except (RuntimeError, ValueError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise DatasetError(
            f"{path} is not a scalar head this model can use: {str(exc).splitlines()[0]}"
        ) from None
    return head


# --- evaluation -------------------------------------------------------------------------------


@contextmanager
def merged(model) -> Iterator[None]:
    """A LoRA model with its adapter merged into the base weights while inside (put back
    after): scoring held-out pairs then runs the base's plain layers, 1.19x faster on a CPU
    (133 gold pairs: 18.4 -> 15.4 s), the same scores up to rounding."""
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()


def accuracy(model, head, tokenizer, comparisons: list[Comparison], max_length: int) -> Accuracy:
    """The PM's accuracy on the decided comparisons (soft labels at 0.5 left out), with its
    length baselines."""
    decided = [c for c in comparisons if c.p != 0.5]
    r = scores_by_length(
        model,
        head,
        tokenizer,
        [c.prompt for c in decided] * 2,
        [c.answer_a for c in decided] + [c.answer_b for c in decided],
        max_length,
    )
    r_a, r_b = r[: len(decided)].tolist(), r[len(decided) :].tolist()
    right = [(a > b) == (c.p > 0.5) for a, b, c in zip(r_a, r_b, decided)]
    return counted_accuracy(
        right, [chose_longer("A" if c.p > 0.5 else "B", c.answer_a, c.answer_b) for c in decided]
    )
