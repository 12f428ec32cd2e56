"""Packed rows: each row's hidden state at its end, and its gradients, as on its own."""

import torch

from pipeline.model.hidden import backbone
from pipeline.model.packing import batch, pack, packed, packs
from tests.tiny import fresh_tiny_model

START = [5, 6, 7, 8, 9]
GROUPS = [
    [START + [10, 11, 12], START + [13], START + [10, 11, 14, 15]],  # one start, three rests
    [[20, 21, 22, 23]],  # a row alone (and shorter: left-padded in the batch)
    [[30, 31], [30, 31]],  # the same row twice: each keeps its last token as its own
    [[40, 41, 42], [43, 44]],  # nothing shared
]


def test_a_packed_row_holds_the_common_start_once_then_each_rest_at_its_own_positions():
    row = packed(GROUPS[0])
    assert row.ids == START + [10, 11, 12, 13, 10, 11, 14, 15]
    assert row.positions == [0, 1, 2, 3, 4, 5, 6, 7, 5, 5, 6, 7, 8]
    assert row.segments == [0] * 5 + [1, 1, 1, 2, 3, 3, 3, 3]
    assert row.places[1] == [0, 1, 2, 3, 4, 8] and row.rows() == GROUPS[0]
    twice = packed(GROUPS[2])
    assert twice.ids == [30, 31, 31] and twice.positions == [0, 1, 1] and twice.rows() == GROUPS[2]
    # in a batch: left-padded to the widest packed row, each row's places moved with it
    inputs = batch([row, twice], pad=0)
    assert inputs.inputs["input_ids"][1].tolist() == [0] * 10 + [30, 31, 31]
    assert [c[-1] for _, c in inputs.places] == [7, 8, 12, 11, 12]
    assert inputs.last(3)[1].tolist() == [
        [5, 6, 7],
        [3, 4, 8],
        [10, 11, 12],
        [10, 10, 11],
        [10, 10, 12],
    ]


def test_rows_are_packed_while_a_packed_row_stays_within_the_width():
    rows = [START + [10, 11, 12], START + [13], [20, 21, 22, 23], START + [14]]
    assert [p.rows() for p in pack(rows, width=9)] == [rows[:2], rows[2:3], rows[3:]]
    assert [p.rows() for p in pack(rows, width=100)] == [rows]


def ends_alone(model, rows: list[list[int]]) -> torch.Tensor:
    return torch.stack(
        [backbone(model)(input_ids=torch.tensor([r])).last_hidden_state[0, -1] for r in rows]
    )


def ends_packed(model, groups: list[list[list[int]]]) -> torch.Tensor:
    inputs = batch([packed(g) for g in groups], pad=0)
    return backbone(model)(**inputs.inputs).last_hidden_state[inputs.ends()]


def test_packed_ends_and_their_gradients_are_each_rows_own():
    model = fresh_tiny_model().model
    assert packs(model)
    rows = [r for g in GROUPS for r in g]
    weights = torch.randn(
        len(rows), model.config.hidden_size, generator=torch.Generator().manual_seed(0)
    )

    def run(ends) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        hidden = ends(model)
        (hidden * weights).sum().backward()
        return hidden.detach(), [p.grad.clone() for p in model.parameters()]

    alone, alone_grads = run(lambda m: ends_alone(m, rows))
    together, together_grads = run(lambda m: ends_packed(m, GROUPS))
    assert torch.allclose(together, alone, atol=1e-5)
    for packed_grad, own in zip(together_grads, alone_grads):  # fp32 rounding of sums
        assert (packed_grad - own).abs().max() <= 1e-6 * own.abs().max()
    # the rests cannot see each other: changing one row's rest leaves the others' ends alone
    changed = [[START + [10, 11, 99], *GROUPS[0][1:]], *GROUPS[1:]]
    with torch.no_grad():
        moved = ends_packed(model, changed) - ends_packed(model, GROUPS)
    assert moved[0].abs().max() > 1e-3 and moved[1:].abs().max() < 1e-6


def test_only_plain_causal_decoders_with_sdpa_take_a_packed_row():
    model = fresh_tiny_model().model
    assert packs(model)
    model.config._attn_implementation = "eager"
    assert not packs(model)
