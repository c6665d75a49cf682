"""The Neural Turing Machine core (Graves, Wayne & Danihelka 2014), set up as Collier & Beel (2018).

Each step: the controller (LSTM or feedforward) reads ``[x_t, r_{t-1}]``; one linear layer emits
every head's parameters at once, clipped to +-20 (Collier & Beel); all heads address memory
``M_{t-1}`` through content -> interpolation -> shift -> sharpening (:mod:`agents.cores.addressing`);
read heads read ``r_t = w^r M_{t-1}``; write heads erase and add, giving ``M_t``. The output is
``[h_t, r_t]``.

Per head the interface is ``key (M), beta, g, gamma, shift (S)``; write heads add ``erase (M), add (M)``:

    beta = softplus(.)   g = sigmoid(.)   gamma = 1 + softplus(.) >= 1   s = softmax(.)   e = sigmoid(.)

Memory starts at a small constant (1e-6 by default: Collier & Beel found it converges about twice
as fast as learned or random initial memory); the initial read vectors r_0 and weightings w_0
(softmax of learned logits) are learned.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from heed.agents.cores.addressing import (
    circular_shift,
    content_weights,
    erase_add_write,
    interpolate,
    read_memory,
    sharpen,
)
from heed.agents.cores.base import RecurrentCore


class NTMState(NamedTuple):
    """h, c: controller ``[B, C]`` (``None`` for a feedforward controller); reads ``[B, R, M]``;
    weights ``[B, R + W, N]`` (read heads first); memory ``[B, N, M]``."""

    h: torch.Tensor | None
    c: torch.Tensor | None
    reads: torch.Tensor
    weights: torch.Tensor
    memory: torch.Tensor


class NTMCore(RecurrentCore):
    """An NTM with any number of read and write heads.

    Args:
        input_size: D.
        hidden_size: controller size C.
        memory_size: N rows.
        memory_width: M columns.
        read_heads: R; write_heads: W.
        controller: ``"lstm"`` or ``"feedforward"`` (one tanh layer).
        shift_range: shifts allowed in each direction (S = 2 shift_range + 1).
        memory_init: the constant every memory cell starts at.
        clip: bound on the controller's interface outputs.
        weight_init: initial w_0 (learned afterwards): ``"first"`` focuses every head on row 0,
            ``"random"`` starts near uniform with small random logits.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 100,
        memory_size: int = 128,
        memory_width: int = 20,
        read_heads: int = 1,
        write_heads: int = 1,
        controller: str = "lstm",
        shift_range: int = 1,
        memory_init: float = 1e-6,
        clip: float = 20.0,
        weight_init: str = "first",
    ) -> None:
        super().__init__()
        if controller not in ("lstm", "feedforward"):
            raise ValueError(f"controller must be 'lstm' or 'feedforward', got {controller!r}")
        if read_heads < 1 or write_heads < 0:
            raise ValueError("an NTM needs at least one read head and a non-negative number of write heads")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.memory_size, self.memory_width = memory_size, memory_width
        self.read_heads, self.write_heads = read_heads, write_heads
        self.controller_kind, self.clip = controller, clip
        self.shift_size = 2 * shift_range + 1
        self.output_size = hidden_size + read_heads * memory_width
        ctrl_in = input_size + read_heads * memory_width
        if controller == "lstm":
            self.controller = nn.LSTMCell(ctrl_in, hidden_size)
        else:
            self.controller = nn.Linear(ctrl_in, hidden_size)
        heads = read_heads + write_heads
        self.address_size = memory_width + 3 + self.shift_size  # key, beta, g, gamma, shift
        self.interface = nn.Linear(hidden_size, heads * self.address_size + write_heads * 2 * memory_width)
        self.register_buffer("memory_init", torch.full((memory_size, memory_width), float(memory_init)))
        self.read_init = nn.Parameter(torch.randn(read_heads, memory_width) * 0.01)
        if weight_init not in ("first", "random"):
            raise ValueError(f"weight_init must be 'first' or 'random', got {weight_init!r}")
        logits = torch.randn(heads, memory_size) * 0.1
        if weight_init == "first":  # every head starts focused on row 0 (w_0[0] ~ 0.99)
            logits = torch.zeros(heads, memory_size)
            logits[:, 0] = 10.0
        self.weight_logits = nn.Parameter(logits)
        self.h0 = nn.Parameter(torch.zeros(hidden_size))
        self.c0 = nn.Parameter(torch.zeros(hidden_size))

    def initial_state(self, batch_size: int) -> NTMState:
        weights = torch.softmax(self.weight_logits, dim=-1)
        lstm = self.controller_kind == "lstm"
        return NTMState(
            h=self.h0.expand(batch_size, -1) if lstm else None,
            c=self.c0.expand(batch_size, -1) if lstm else None,
            reads=self.read_init.expand(batch_size, -1, -1),
            weights=weights.expand(batch_size, -1, -1),
            memory=self.memory_init.expand(batch_size, -1, -1),
        )

    def forward(self, x: torch.Tensor, state: NTMState) -> tuple[torch.Tensor, NTMState, dict[str, torch.Tensor]]:
        """x ``[B, D]`` -> output ``[B, C + R M]``, state, ``{"read": [B, R, N], "write": [B, W, N]}``."""
        batch = x.shape[0]
        R, W, Mw = self.read_heads, self.write_heads, self.memory_width
        inp = torch.cat([x, state.reads.reshape(batch, -1)], dim=-1)
        if self.controller_kind == "lstm":
            h, c = self.controller(inp, (state.h, state.c))
        else:
            h, c = torch.tanh(self.controller(inp)), None
        params = self.interface(h).clamp(-self.clip, self.clip)
        heads = R + W
        addr = params[:, : heads * self.address_size].view(batch, heads, self.address_size)
        key = addr[..., :Mw]
        beta = F.softplus(addr[..., Mw])
        gate = torch.sigmoid(addr[..., Mw + 1])
        gamma = 1.0 + F.softplus(addr[..., Mw + 2])
        shift = torch.softmax(addr[..., Mw + 3 :], dim=-1)

        memory = state.memory
        weights = content_weights(memory, key, beta)
        weights = interpolate(weights, state.weights, gate)
        weights = sharpen(circular_shift(weights, shift), gamma)  # [B, R + W, N]

        read_w = weights[:, :R]
        reads = read_memory(memory, read_w)  # [B, R, M]
        attention = {"read": read_w}
        if W:
            write_w = weights[:, R:]
            rest = params[:, heads * self.address_size :].view(batch, W, 2 * Mw)
            erase, add = torch.sigmoid(rest[..., :Mw]), rest[..., Mw:]
            memory = erase_add_write(memory, write_w, erase, add)
            attention["write"] = write_w
        out = torch.cat([h, reads.reshape(batch, -1)], dim=-1)
        keep_h = h if self.controller_kind == "lstm" else None
        return out, NTMState(keep_h, c, reads, weights, memory), attention
