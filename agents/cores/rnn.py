"""A plain (Elman) RNN core, following :mod:`heed.agents.cores.base`.

h_t = f(W x_t + U h_{t-1} + b) with f = tanh (the ACT paper's parity network, and its "no ACT"
baseline) or f = relu (the rectifier core of the recurrent attention model, Mnih et al. 2014).
The initial state is zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

import torch
from torch import nn

from heed.agents.cores.base import HiddenSize, PartName, RecurrentCore, part_name


class RNNState(NamedTuple):
    """h: ``[B, H]``."""

    h: torch.Tensor


@dataclass(frozen=True)
class RNNConfig:
    """A single-layer Elman RNN."""

    name: PartName = part_name("rnn")
    hidden_size: Annotated[int, HiddenSize] = 128
    """H, the hidden and output size"""
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    """f in h_t = f(W x_t + U h_{t-1} + b)"""


class RNNCore(RecurrentCore):
    """An Elman RNN (:class:`RNNConfig`); ``input_size`` is D, the output is ``h_t [B, H]``."""

    def __init__(self, input_size: int, cfg: RNNConfig = RNNConfig()) -> None:
        super().__init__()
        self.input_size, self.output_size = input_size, cfg.hidden_size
        self.cell = nn.RNNCell(input_size, cfg.hidden_size, nonlinearity=cfg.nonlinearity)

    def initial_state(self, batch_size: int) -> RNNState:
        return RNNState(self.cell.weight_hh.new_zeros(batch_size, self.output_size))  # the core's device and dtype

    def forward(self, x: torch.Tensor, state: RNNState) -> tuple[torch.Tensor, RNNState, dict[str, torch.Tensor]]:
        """x ``[B, D]`` -> h ``[B, H]``, the new state, ``{}``."""
        h = self.cell(x, state.h)
        return h, RNNState(h), {}
