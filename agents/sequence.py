"""Sequence models for supervised training: one interface over recurrent cores and transformers.

A sequence model maps ``inputs [B, T, D]`` to ``(outputs [B, T, K], attention: dict, aux_loss)``:
outputs are logits (bits: sigmoid per unit; classes: softmax over K); ``attention`` holds per-step
recordings stacked over time (``[B, T, ...]``); ``aux_loss`` is a scalar tensor added to the task
loss (ACT's ponder cost; zero otherwise).

Any core of the table of parts (:mod:`heed.agents.parts`) becomes a sequence model as a
:class:`RecurrentSequenceModel` (the core plus a linear readout); the self-attention models of
:mod:`heed.agents.transformer` are sequence models themselves.
"""

from __future__ import annotations

import torch
from torch import nn

from heed.agents.cores.base import RecurrentCore

SequenceOutput = tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]


class RecurrentSequenceModel(nn.Module):
    """A recurrent core (see :mod:`heed.agents.cores.base`) followed by a linear readout to K logits.

    y_t = W [h_t] + b, where h_t is the core's output at step t; ``aux_loss`` is the core's
    :meth:`~heed.agents.cores.base.RecurrentCore.aux_loss` of the unroll (ACT: its ponder cost).
    """

    def __init__(self, core: RecurrentCore, output_size: int) -> None:
        super().__init__()
        self.core = core
        self.readout = nn.Linear(core.output_size, output_size)

    def forward(self, inputs: torch.Tensor) -> SequenceOutput:
        hidden, _, attention = self.core.unroll(inputs)  # [B, T, H]
        return self.readout(hidden), attention, self.core.aux_loss(attention)
