"""The feedforward "core": no memory at all, the baseline that goes through the recurrent code paths.

h_t = tanh(W_2 tanh(W_1 x_t + b_1) + b_2). Its state is an empty ``[B, 0]`` tensor, so rollout
storage, resets and unrolls treat it like any other core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NamedTuple

import torch
from torch import nn

from heed.agents.cores.base import HiddenSize, PartName, RecurrentCore, part_name


class EmptyState(NamedTuple):
    """A stateless core's state: ``[B, 0]``."""

    empty: torch.Tensor


@dataclass(frozen=True)
class MLPConfig:
    """Two tanh layers and no memory (the feedforward baseline)."""

    name: PartName = part_name("mlp")
    hidden_size: Annotated[int, HiddenSize] = 64
    """H, the width of both layers and the output size"""


class FeedforwardCore(RecurrentCore):
    """h_t = tanh(W_2 tanh(W_1 x_t + b_1) + b_2) (:class:`MLPConfig`); ``input_size`` is D."""

    def __init__(self, input_size: int, cfg: MLPConfig = MLPConfig()) -> None:
        super().__init__()
        hidden_size = cfg.hidden_size
        self.input_size, self.output_size = input_size, hidden_size
        self.net = nn.Sequential(
            nn.Linear(input_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, hidden_size), nn.Tanh()
        )
        self.register_buffer("_anchor", torch.zeros(0))

    def initial_state(self, batch_size: int) -> EmptyState:
        return EmptyState(self._anchor.new_zeros(batch_size, 0))

    def forward(self, x: torch.Tensor, state: EmptyState) -> tuple[torch.Tensor, EmptyState, dict[str, torch.Tensor]]:
        """x ``[B, D]`` -> ``[B, H]``, the unchanged empty state, ``{}``."""
        return self.net(x), state, {}
