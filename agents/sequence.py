"""Sequence models for supervised training: one interface over recurrent cores and transformers.

A sequence model maps ``inputs [B, T, D]`` to ``(outputs [B, T, K], attention: dict, aux_loss)``:
outputs are logits (bits: sigmoid per unit; classes: softmax over K); ``attention`` holds per-step
recordings stacked over time (``[B, T, ...]``); ``aux_loss`` is a scalar tensor added to the task
loss (ACT's ponder cost; zero otherwise).

Builders register in :data:`SEQUENCE_MODELS` (name -> ``builder(input_size, output_size, **options)``),
and ``scripts/train.py supervised --core NAME`` looks them up here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

SequenceOutput = tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]

SEQUENCE_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: ``@register_model("ntm")`` on a builder ``(input_size, output_size, **options) -> nn.Module``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        SEQUENCE_MODELS[name] = builder
        return builder

    return wrap


class RecurrentSequenceModel(nn.Module):
    """A recurrent core (see :mod:`agents.cores.base`) followed by a linear readout to K logits.

    y_t = W [h_t] + b, where h_t is the core's output at step t.
    """

    def __init__(self, core: nn.Module, output_size: int) -> None:
        super().__init__()
        self.core = core
        self.readout = nn.Linear(core.output_size, output_size)

    def forward(self, inputs: torch.Tensor) -> SequenceOutput:
        hidden, _, attention = self.core.unroll(inputs)  # [B, T, H]
        return self.readout(hidden), attention, hidden.new_zeros(())
