"""trl's fused LM head, on a CPU, scoring only the positions that have a label.

trl's SFT, DPO, GRPO and RLOO trainers take the loss through a fused LM head
(`trl.trainer.utils.add_fused_lm_head`): hidden states go through the output layer in
vocabulary chunks, and out come each position's log-probability, entropy and whether its
label is the top token, without the [batch, length, vocabulary] logits. On CUDA and XPU it
passes only the labelled positions; elsewhere it passes every position (prompt and padding
too) and zeroes the unlabelled ones after, so that an accelerator compiling fixed tile shapes
(Neuron) does not recompile for every batch. A CPU compiles nothing, and there the scoring of
unlabelled rows is wasted: in an SFT step of the embedded model (4 rows of up to 256 tokens,
the loss on the answers only) the head's forward and backward were half the step
(profiled: 0.98 of 1.96 s). trl decides it by one function, `_use_triton(device)`;
`compact_on_cpu` makes it answer yes for a CPU too. The labelled positions' numbers are the
same either way (each position is scored on its own); only the unlabelled ones, which were
zeroed, are not computed. trl's kernel itself still picks its CPU code by its own check.
"""

from __future__ import annotations

from typing import Any, Callable


def compact_on_cpu() -> bool:
    """Make trl's fused LM head pass only labelled positions on a CPU (once per process;
    False where this trl has no such switch, which costs speed only)."""
    from trl.trainer import utils

    decide: Callable[[Any], bool] | None = getattr(utils, "_use_triton", None)
    if decide is None:
        return False
    if getattr(decide, "compacts_cpu", False):
        return True

    def compacts(device: Any) -> bool:
        return device.type == "cpu" or decide(device)

    compacts.compacts_cpu = True  # type: ignore[attr-defined]
    utils._use_triton = compacts
    return True
