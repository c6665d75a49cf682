"""The GRU core (Cho et al. 2014), following :mod:`agents.cores.base`.

r = sigma(W_ir x + b_ir + W_hr h + b_hr);  z = sigma(W_iz x + b_iz + W_hz h + b_hz);
n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h_t = (1 - z) * n + z * h_{t-1}.

One step uses the fused ``torch.gru_cell``; an unroll without resets runs the fused ``nn.GRU`` over
the whole sequence (same weights, same numbers). Its state is a one-field ``NamedTuple`` so it
plugs into the same rollout storage and reset logic as every other core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NamedTuple

import torch
from torch import nn

from heed.agents.cores.base import HiddenSize, PartName, RecurrentCore, State, part_name
from heed.agents.cores.base import unroll as step_unroll


class GRUState(NamedTuple):
    """h: ``[B, H]``."""

    h: torch.Tensor


@dataclass(frozen=True)
class GRUConfig:
    """A single-layer GRU."""

    name: PartName = part_name("gru")
    hidden_size: Annotated[int, HiddenSize] = 100
    """H, the hidden and output size"""
    learn_initial_state: bool = False
    """learn h_0 (else zeros)"""


class GRUCore(RecurrentCore):
    """A single-layer GRU (:class:`GRUConfig`); ``input_size`` is D."""

    def __init__(self, input_size: int, cfg: GRUConfig = GRUConfig()) -> None:
        super().__init__()
        hidden_size, learn_initial_state = cfg.hidden_size, cfg.learn_initial_state
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)
        self.h0 = nn.Parameter(torch.zeros(hidden_size), requires_grad=learn_initial_state)

    def initial_state(self, batch_size: int) -> GRUState:
        return GRUState(self.h0.expand(batch_size, -1))

    def forward(self, x: torch.Tensor, state: GRUState) -> tuple[torch.Tensor, GRUState, dict[str, torch.Tensor]]:
        """x ``[B, D]`` -> h ``[B, H]``, the new state, ``{}``."""
        g = self.gru
        h = torch.gru_cell(x, state.h, g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)
        return h, GRUState(h), {}

    def unroll(
        self, xs: torch.Tensor, state: State | None = None, resets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, GRUState, dict[str, torch.Tensor]]:
        """Like :func:`agents.cores.base.unroll`; the fused path is taken when there are no resets."""
        if resets is not None:
            return step_unroll(self, xs, state, resets)
        if state is None:
            state = self.initial_state(xs.shape[0])
        out, h = self.gru(xs, state.h.unsqueeze(0).contiguous())
        return out, GRUState(h[0]), {}
