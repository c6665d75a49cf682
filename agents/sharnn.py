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
Jacobian). Merity's model stacks four such layers with the head on one of them (1.076 bpc on enwik8)
or one head per layer (1.068). Here ``layers = L`` stacks L blocks (LSTM, head, Boom; block l > 0
adds its input to its LSTM's output as a residual); the head sits on the last block only, or on
every block with ``head_per_layer``. The default (L = 1) is the one-layer form.

``attention``: ``{"attention": a [B, T, T]}``, the last block's head; with heads on several blocks also
``{"layer_attention": [B, T, L, T]}`` (query, block, key). ``aux_loss`` is 0.

Incremental decoding (:mod:`heed.agents.kv_cache`): the cache of a block is its LSTM state after the
last step read and its head's keys ``k_j`` and values ``h_j`` of the last ``W - 1`` steps
(:class:`SHARNNBlockCache`), all the next step needs; ``extend`` reads new steps only and gives the
logits a full forward gives. ``slide`` keeps the cache as it is (the LSTM state runs on; the head has
its own window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from heed.agents.common.errors import require
from heed.agents.common.validate import Range
from heed.agents.cores.base import HiddenSize, PartName, part_name
from heed.agents.kv_cache import KeyValues
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
    layers: Annotated[int, Range(1, 64)] = 1
    """L: stacked blocks (LSTM, Boom; the head on the last, or on each with head_per_layer)"""
    head_per_layer: bool = False
    """one attention head on every block (Merity's 1.068 variant) instead of on the last only"""


class SHARNNBlockCache(NamedTuple):
    """One block after the steps read so far: LSTM ``hidden``, ``cell`` ``[1, B, H]``; the head's cache
    ``keys`` ``[B, N, H]`` (``W_k LN(h_j)``) and ``values`` ``[B, N, H]`` (``h_j``) of the last
    ``N <= W - 1`` steps (``N = 0`` in a block without a head)."""

    hidden: torch.Tensor
    cell: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor


def window_mask(steps: int, window: int, device: torch.device, past: int = 0) -> torch.Tensor:
    """Boolean ``[T, P + T]``: True where query t (step ``P + t``, after ``past = P`` earlier steps) may
    attend to key j, i.e. ``P + t - window < j <= P + t``."""
    gap = torch.arange(past, past + steps, device=device)[:, None] - torch.arange(past + steps, device=device)
    return (gap >= 0) & (gap < window)  # gap = P + t - j


class Boom(nn.Module):
    """``Boom(u) = sum_{i<m} chunk_i(GELU(W u + b))``: one expansion to ``m H``, summed back to ``H``."""

    def __init__(self, hidden_size: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.expand = nn.Linear(hidden_size, factor * hidden_size)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        wide = F.gelu(self.expand(u))  # [B, T, m H]
        return wide.view(*u.shape[:-1], self.factor, u.shape[-1]).sum(-2)  # [B, T, H]


class Head(nn.Module):
    """One causal head over the last W states ``h [B, T, H]``: ``(sum_j a_tj h_j [B, T, H], a [B, T, T])``."""

    def __init__(self, hidden_size: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.norm = nn.LayerNorm(hidden_size)
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)

    def read(self, normed: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries ``W_q LN(h_t)`` of the last T states (``normed = LN(h) [B, T, H]``) over ``keys``,
        ``values [B, P + T, H]`` (P earlier steps first): ``(sum_j a_tj v_j [B, T, H], a [B, T, P + T])``."""
        steps, width = normed.shape[1], normed.shape[2]
        logits = self.query(normed) @ keys.transpose(1, 2) / math.sqrt(width)  # [B, T, P + T]
        if steps > 1 or keys.shape[1] > self.window:  # (one query over at most W keys: all allowed)
            allowed = window_mask(steps, self.window, normed.device, past=keys.shape[1] - steps)
            logits = logits.masked_fill(~allowed, NEG)
        weights = torch.softmax(logits, dim=-1)
        return weights @ values, weights

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.norm(h)
        return self.read(normed, self.key(normed), h)

    def extend(self, h: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next T states ``h [B, T, H]`` after cached ``keys``, ``values [B, N, H]``: ``(read
        [B, T, H], keys, values)``, the cache keeping the last ``W - 1`` steps (what the next query sees)."""
        normed = self.norm(h)
        keys, values = torch.cat([keys, self.key(normed)], 1), torch.cat([values, h], 1)
        read, _ = self.read(normed, keys, values)
        cache = KeyValues(keys, values).last(self.window - 1)
        return read, cache.keys, cache.values


class SHARNNBlock(nn.Module):
    """``h = LSTM(x) (+ x)``, ``u = h + Head(h)`` (if it has one), ``z = u + Boom(LN u)``: ``[B, T, H] -> [B, T, H]``."""

    def __init__(self, input_size: int, hidden_size: int, cfg: SHARNNConfig, head: bool, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.head = Head(hidden_size, cfg.window) if head else None
        self.norm_boom = nn.LayerNorm(hidden_size)
        self.boom = Boom(hidden_size, cfg.boom_factor)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, _ = self.lstm(x)  # [B, T, H]
        if self.residual:
            h = h + x
        weights = None
        if self.head is not None:
            read, weights = self.head(h)
            h = h + read
        return h + self.boom(self.norm_boom(h)), weights

    def extend(self, x: torch.Tensor, cache: SHARNNBlockCache) -> tuple[torch.Tensor, SHARNNBlockCache]:
        """:meth:`forward` for the next T steps ``x [B, T, H]`` from the block's state after the earlier ones."""
        h, (hidden, cell) = self.lstm(x, (cache.hidden, cache.cell))  # [B, T, H]
        if self.residual:
            h = h + x
        keys, values = cache.keys, cache.values
        if self.head is not None:
            read, keys, values = self.head.extend(h, keys, values)
            h = h + read
        return h + self.boom(self.norm_boom(h)), SHARNNBlockCache(hidden, cell, keys, values)


class SHARNN(nn.Module):
    """``[B, T, D] -> (logits [B, T, K], {"attention": [B, T, T]}, 0)`` (module docstring)."""

    def __init__(self, input_size: int, output_size: int, cfg: SHARNNConfig = SHARNNConfig()) -> None:
        super().__init__()
        hidden = cfg.hidden_size
        self.window = cfg.window
        self.embed = nn.Linear(input_size, hidden)
        self.blocks = nn.ModuleList(
            SHARNNBlock(hidden, hidden, cfg, head=cfg.head_per_layer or layer == cfg.layers - 1, residual=layer > 0)
            for layer in range(cfg.layers)
        )
        self.norm_out = nn.LayerNorm(hidden)
        self.readout = nn.Linear(hidden, output_size)

    def forward(self, inputs: torch.Tensor) -> SequenceOutput:
        x = self.embed(inputs)  # [B, T, H]
        maps = []
        for block in self.blocks:
            x, weights = block(x)
            if weights is not None:
                maps.append(weights)
        attention = {"attention": maps[-1]}
        if len(maps) > 1:
            attention["layer_attention"] = torch.stack(maps, dim=2)  # [B, T, L, T]
        return self.readout(self.norm_out(x)), attention, torch.zeros((), device=inputs.device)

    def empty_cache(self, batch_size: int) -> tuple[SHARNNBlockCache, ...]:
        """Every block before the first step: zero LSTM state, no past keys (:mod:`heed.agents.kv_cache`)."""
        hidden = self.readout.weight.new_zeros(1, batch_size, self.norm_out.normalized_shape[0])
        none = hidden.new_zeros(batch_size, 0, hidden.shape[-1])
        return tuple(SHARNNBlockCache(hidden, hidden, none, none) for _ in self.blocks)

    def extend(self, inputs: torch.Tensor, cache: tuple[SHARNNBlockCache, ...]
               ) -> tuple[torch.Tensor, tuple[SHARNNBlockCache, ...]]:
        """Logits ``[B, T, K]`` of the next T steps ``inputs [B, T, D]`` after those in ``cache``, and the
        cache after them; equal to :meth:`forward` over the whole sequence at those steps."""
        require(inputs.dim() == 3, f"inputs must be [B, T, D], got {tuple(inputs.shape)}")
        x = self.embed(inputs)  # [B, T, H]
        blocks = []
        for block, block_cache in zip(self.blocks, cache):
            x, block_cache = block.extend(x, block_cache)
            blocks.append(block_cache)
        return self.readout(self.norm_out(x)), tuple(blocks)

    def slide(self, cache: tuple[SHARNNBlockCache, ...], keep: int) -> tuple[SHARNNBlockCache, ...]:
        """Past the reading window the LSTM state runs on and the head keeps its own window: unchanged."""
        return cache
