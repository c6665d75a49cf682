"""The LSTM baseline core (Hochreiter & Schmidhuber 1997), following :mod:`agents.cores.base`.

i, f, g, o = split(W_x x_t + W_h h_{t-1} + b);  c_t = sigma(f) c_{t-1} + sigma(i) tanh(g);
h_t = sigma(o) tanh(c_t). One step uses the fused ``torch.lstm_cell``; an unroll without resets
runs cuDNN/oneDNN's fused ``nn.LSTM`` over the whole sequence (same weights, same numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NamedTuple

import torch
from torch import nn

from heed.agents.cores.base import HiddenSize, PartName, RecurrentCore, State, part_name
from heed.agents.cores.base import unroll as step_unroll


class LSTMState(NamedTuple):
    """h, c: ``[B, H]`` each."""

    h: torch.Tensor
    c: torch.Tensor


@dataclass(frozen=True)
class LSTMConfig:
    """A single-layer LSTM."""

    name: PartName = part_name("lstm")
    hidden_size: Annotated[int, HiddenSize] = 100
    """H, the hidden and output size"""
    learn_initial_state: bool = False
    """learn h_0 and c_0 (else zeros)"""


class LSTMCore(RecurrentCore):
    """A single-layer LSTM (:class:`LSTMConfig`); ``input_size`` is D."""

    def __init__(self, input_size: int, cfg: LSTMConfig = LSTMConfig()) -> None:
        super().__init__()
        hidden_size, learn_initial_state = cfg.hidden_size, cfg.learn_initial_state
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.h0 = nn.Parameter(torch.zeros(hidden_size), requires_grad=learn_initial_state)
        self.c0 = nn.Parameter(torch.zeros(hidden_size), requires_grad=learn_initial_state)

    def initial_state(self, batch_size: int) -> LSTMState:
        return LSTMState(self.h0.expand(batch_size, -1), self.c0.expand(batch_size, -1))

    def forward(self, x: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState, dict[str, torch.Tensor]]:
        """x ``[B, D]`` -> h ``[B, H]``, the new state, ``{}``."""
        lstm = self.lstm
        h, c = torch.lstm_cell(x, (state.h, state.c), lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
        return h, LSTMState(h, c), {}

    def unroll(
        self, xs: torch.Tensor, state: State | None = None, resets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, LSTMState, dict[str, torch.Tensor]]:
        """Like :func:`agents.cores.base.unroll`; the fused path is taken when there are no resets."""
        if resets is not None:
            return step_unroll(self, xs, state, resets)
        if state is None:
            state = self.initial_state(xs.shape[0])
        out, (h, c) = self.lstm(xs, (state.h.unsqueeze(0).contiguous(), state.c.unsqueeze(0).contiguous()))
        return out, LSTMState(h[0], c[0]), {}
