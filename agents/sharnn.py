"""The single-headed attention RNN (Merity 2019, "Single Headed Attention RNN: Stop Thinking With
Your Head"), small and CPU-sized: an LSTM, one causal attention head over a window of its past
states, and a "Boom" feed-forward layer, each with a residual connection.

For inputs ``x [B, T, D]`` (one-hot characters) and ``H = hidden_size``::

    e_t = W_e x_t                                          embedding               [B, T, H]
    h_t = LSTM(e_t, h_{t-1})                               one recurrent layer      [B, T, H]
    q_t = W_q LN(h_t),  k_j = W_k LN(h_j),  v_j = h_j      one head, width H
    a_tj = softmax_j(q_t . k_j / sqrt(H))   over t - W < j <= t   (W = ``window``; causal)
    u_t = h_t + sum_j a_tj v_j                             attention residual
    z_t = u_t + Boom(LN(u_t))                              Boom: H -> m H (GELU), the m chunks summed back to H
    y_t = W_o LN(z_t)                                      logits                   [B, T, K]

The mask ``t - W < j <= t`` makes ``y_t`` a function of ``x_0 .. x_t`` only (tested with the sequential
Jacobian). Merity's model stacks four such layers with the head on one of them (or one per layer);
this is the one-layer form. ``attention`` records ``{"attention": a [B, T, T]}``; ``aux_loss`` is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from heed.agents.common.validate import Range
from heed.agents.cores.base import HiddenSize, PartName, part_name
from heed.agents.sequence import SequenceOutput

NEG = -1e9  # masked attention logits


@dataclass(frozen=True)
class SHARNNConfig:
    """An LSTM with one causal attention head and a Boom layer (Merity 2019)."""

    name: PartName = part_name("sha-rnn")
    hidden_size: Annotated[int, HiddenSize] = 128
    """H: embedding, LSTM and attention width"""
    window: Annotated[int, Range(1, 10_000)] = 64
    """W: the head attends to the last W LSTM states (the current one included)"""
    boom_factor: Annotated[int, Range(1, 16)] = 4
    """m: the Boom layer's expansion (H -> m H -> H)"""


def window_mask(steps: int, window: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[T, T]``: True where query t may attend to key j, i.e. ``t - window < j <= t``."""
    t = torch.arange(steps, device=device)
    gap = t[:, None] - t[None, :]  # t - j
    return (gap >= 0) & (gap < window)


class Boom(nn.Module):
    """``Boom(u) = sum_{i<m} chunk_i(GELU(W u + b))``: one expansion to ``m H``, summed back to ``H``."""

    def __init__(self, hidden_size: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.expand = nn.Linear(hidden_size, factor * hidden_size)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        wide = F.gelu(self.expand(u))  # [B, T, m H]
        return wide.view(*u.shape[:-1], self.factor, u.shape[-1]).sum(-2)  # [B, T, H]


class SHARNN(nn.Module):
    """``[B, T, D] -> (logits [B, T, K], {"attention": [B, T, T]}, 0)`` (module docstring)."""

    def __init__(self, input_size: int, output_size: int, cfg: SHARNNConfig = SHARNNConfig()) -> None:
        super().__init__()
        hidden = cfg.hidden_size
        self.window = cfg.window
        self.embed = nn.Linear(input_size, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.norm_q, self.norm_boom, self.norm_out = nn.LayerNorm(hidden), nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.boom = Boom(hidden, cfg.boom_factor)
        self.readout = nn.Linear(hidden, output_size)

    def forward(self, inputs: torch.Tensor) -> SequenceOutput:
        h, _ = self.lstm(self.embed(inputs))  # [B, T, H]
        normed = self.norm_q(h)
        logits = self.query(normed) @ self.key(normed).transpose(1, 2) / math.sqrt(h.shape[-1])  # [B, T, T]
        allowed = window_mask(h.shape[1], self.window, h.device)
        weights = torch.softmax(logits.masked_fill(~allowed, NEG), dim=-1)  # [B, T, T]
        u = h + weights @ h  # [B, T, H]
        z = u + self.boom(self.norm_boom(u))
        return self.readout(self.norm_out(z)), {"attention": weights}, torch.zeros((), device=inputs.device)
