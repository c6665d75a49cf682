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

from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from heed.agents.common.validate import Positive, Range
from heed.agents.cores.addressing import (
    circular_shift,
    content_weights,
    erase_add_write,
    interpolate,
    read_memory,
    sharpen,
)
from heed.agents.cores.base import (
    HeadCount,
    HiddenSize,
    MemoryRows,
    MemoryWidth,
    PartName,
    RecurrentCore,
    part_name,
)


class NTMState(NamedTuple):
    """h, c: controller ``[B, C]`` (``None`` for a feedforward controller); reads ``[B, R, M]``;
    weights ``[B, R + W, N]`` (read heads first); memory ``[B, N, M]``."""

    h: torch.Tensor | None
    c: torch.Tensor | None
    reads: torch.Tensor
    weights: torch.Tensor
    memory: torch.Tensor


@dataclass(frozen=True)
class NTMConfig:
    """A Neural Turing Machine with any number of read and write heads (Collier & Beel's set-up)."""

    name: PartName = part_name("ntm")
    hidden_size: Annotated[int, HiddenSize] = 100
    """controller size C"""
    memory_size: Annotated[int, MemoryRows] = 128
    """memory rows N"""
    memory_width: Annotated[int, MemoryWidth] = 20
    """memory columns M"""
    read_heads: Annotated[int, HeadCount] = 1
    """read heads R (at least 1)"""
    write_heads: Annotated[int, Range(0, 64)] = 1
    """write heads W"""
    controller: Literal["lstm", "feedforward"] = "lstm"
    """an LSTM, or one tanh layer"""
    shift_range: Annotated[int, Range(0, 64)] = 1
    """shifts allowed in each direction (S = 2 shift_range + 1)"""
    memory_init: float = 1e-6
    """the constant every memory cell starts at"""
    clip: Annotated[float, Positive] = 20.0
    """bound on the controller's interface outputs"""
    weight_init: Literal["first", "random"] = "first"
    """initial w_0 (learned afterwards): every head on row 0, or near uniform with small random logits"""


class NTMCore(RecurrentCore):
    """An NTM (:class:`NTMConfig`); ``input_size`` is D.

    The controller is made and stepped by :meth:`make_controller` and :meth:`control`, so a variant
    with another controller overrides those two methods and nothing else.
    """

    def __init__(self, input_size: int, cfg: NTMConfig = NTMConfig()) -> None:
        super().__init__()
        hidden_size, memory_size, memory_width = cfg.hidden_size, cfg.memory_size, cfg.memory_width
        read_heads, write_heads = cfg.read_heads, cfg.write_heads
        if read_heads < 1 or write_heads < 0:
            raise ValueError("an NTM needs at least one read head and a non-negative number of write heads")
        if cfg.weight_init not in ("first", "random"):
            raise ValueError(f"weight_init must be 'first' or 'random', got {cfg.weight_init!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.memory_size, self.memory_width = memory_size, memory_width
        self.read_heads, self.write_heads = read_heads, write_heads
        self.controller_kind, self.clip = cfg.controller, cfg.clip
        self.shift_size = 2 * cfg.shift_range + 1
        self.output_size = hidden_size + read_heads * memory_width
        self.controller = self.make_controller(input_size + read_heads * memory_width, hidden_size)
        heads = read_heads + write_heads
        self.address_size = memory_width + 3 + self.shift_size  # key, beta, g, gamma, shift
        self.interface = nn.Linear(hidden_size, heads * self.address_size + write_heads * 2 * memory_width)
        self.register_buffer("memory_init", torch.full((memory_size, memory_width), float(cfg.memory_init)))
        self.read_init = nn.Parameter(torch.randn(read_heads, memory_width) * 0.01)
        logits = torch.randn(heads, memory_size) * 0.1
        if cfg.weight_init == "first":  # every head starts focused on row 0 (w_0[0] ~ 0.99)
            logits = torch.zeros(heads, memory_size)
            logits[:, 0] = 10.0
        self.weight_logits = nn.Parameter(logits)
        self.h0 = nn.Parameter(torch.zeros(hidden_size))
        self.c0 = nn.Parameter(torch.zeros(hidden_size))

    def make_controller(self, size_in: int, hidden_size: int) -> nn.Module:
        """The controller module: ``nn.LSTMCell`` or one ``nn.Linear`` (with tanh in :meth:`control`)."""
        if self.controller_kind == "lstm":
            return nn.LSTMCell(size_in, hidden_size)
        if self.controller_kind == "feedforward":
            return nn.Linear(size_in, hidden_size)
        raise ValueError(f"controller must be 'lstm' or 'feedforward', got {self.controller_kind!r}")

    def control(
        self, inp: torch.Tensor, h: torch.Tensor | None, c: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """One controller step on ``inp [B, D + R M]``: ``(output [B, C], h kept, c kept)`` (None: not kept)."""
        if self.controller_kind == "lstm":
            h, c = self.controller(inp, (h, c))
            return h, h, c
        return torch.tanh(self.controller(inp)), None, None

    def controller_state(self, batch_size: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The controller's initial ``(h, c)`` (learned), ``None`` where it keeps no such state."""
        if self.controller_kind != "lstm":
            return None, None
        return self.h0.expand(batch_size, -1), self.c0.expand(batch_size, -1)

    def initial_state(self, batch_size: int) -> NTMState:
        weights = torch.softmax(self.weight_logits, dim=-1)
        h, c = self.controller_state(batch_size)
        return NTMState(
            h=h,
            c=c,
            reads=self.read_init.expand(batch_size, -1, -1),
            weights=weights.expand(batch_size, -1, -1),
            memory=self.memory_init.expand(batch_size, -1, -1),
        )

    def forward(self, x: torch.Tensor, state: NTMState) -> tuple[torch.Tensor, NTMState, dict[str, torch.Tensor]]:
        """x ``[B, D]`` -> output ``[B, C + R M]``, state, ``{"read": [B, R, N], "write": [B, W, N]}``."""
        batch = x.shape[0]
        R, W, Mw = self.read_heads, self.write_heads, self.memory_width
        inp = torch.cat([x, state.reads.reshape(batch, -1)], dim=-1)
        h, keep_h, c = self.control(inp, state.h, state.c)
        params = self.interface(h).clamp(-self.clip, self.clip)
        heads = R + W
        # one split per level (its backward is one concatenation, where a slice per field would
        # each scatter into a zero tensor of the full width)
        addr, rest = params.split([heads * self.address_size, W * 2 * Mw], dim=-1)
        key, beta, gate, gamma, shift = addr.view(batch, heads, self.address_size).split([Mw, 1, 1, 1, self.shift_size], -1)
        beta = F.softplus(beta.squeeze(-1))
        gate = torch.sigmoid(gate.squeeze(-1))
        gamma = 1.0 + F.softplus(gamma.squeeze(-1))
        shift = torch.softmax(shift, dim=-1)

        memory = state.memory
        weights = content_weights(memory, key, beta)
        weights = interpolate(weights, state.weights, gate)
        weights = sharpen(circular_shift(weights, shift), gamma)  # [B, R + W, N]

        read_w, write_w = weights.split([R, W], dim=1)
        reads = read_memory(memory, read_w)  # [B, R, M]
        attention = {"read": read_w}
        if W:
            erase, add = rest.view(batch, W, 2 * Mw).split([Mw, Mw], dim=-1)
            memory = erase_add_write(memory, write_w, torch.sigmoid(erase), add)
            attention["write"] = write_w
        out = torch.cat([h, reads.reshape(batch, -1)], dim=-1)
        return out, NTMState(keep_h, c, reads, weights, memory), attention
