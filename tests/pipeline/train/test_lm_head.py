"""trl's fused LM head on a CPU: only labelled positions are scored, to the same numbers."""

import torch
from trl.kernels import chunked_logprob
from trl.trainer import utils
from trl.trainer.utils import add_fused_lm_head

from pipeline.train.lm_head import compact_on_cpu
from tests.tiny import fresh_tiny_model

OUTPUTS = ("log_probs", "entropy", "is_top1")
KERNEL = utils._ChunkedLogProbFunction


def scored(model, ids, labels, monkeypatch) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """(rows the head's kernel was given, the loss, its gradient on the embeddings)."""
    given: list[int] = []

    class Counting(KERNEL):  # type: ignore[misc, valid-type]
        @staticmethod
        def forward(ctx, hidden, *rest):
            given.append(hidden.shape[0])
            return KERNEL.forward(ctx, hidden, *rest)

    monkeypatch.setattr(utils, "_ChunkedLogProbFunction", Counting)
    model.zero_grad()
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    return given, out.loss.detach(), model.get_input_embeddings().weight.grad.clone()


def test_on_a_cpu_only_labelled_positions_reach_the_head_and_nothing_else_changes(monkeypatch):
    # trl's own switch, as before any run of this process patched it (and again after)
    monkeypatch.setattr(utils, "_use_triton", chunked_logprob._use_triton)
    model = fresh_tiny_model().model.train()
    add_fused_lm_head(model, outputs=OUTPUTS)
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (3, 20))
    labels = ids.clone()
    labels[:, :12] = -100  # the prompt: no loss there
    labels[0, -3:] = -100  # padding
    every, loss, grad = scored(model, ids, labels, monkeypatch)
    assert compact_on_cpu() and compact_on_cpu()  # once, and again without wrapping twice
    only, compact_loss, compact_grad = scored(model, ids, labels, monkeypatch)
    assert every == [3 * 19]  # every position that predicts a next token
    assert only == [int((labels[:, 1:] != -100).sum())] == [3 * 8 - 3]
    assert torch.allclose(compact_loss, loss, atol=1e-6)
    assert torch.allclose(compact_grad, grad, atol=1e-7)
