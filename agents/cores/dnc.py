"""The Differentiable Neural Computer core (Graves et al. 2016).

Each step, with an LSTM controller reading ``[x_t, r_{t-1}]`` and a clipped linear interface:

1. usage ``u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}) psi_t``, ``psi_t = prod_r (1 - f_r w^r_{t-1})``;
2. write weighting ``w^w = g^w (g^a a_t + (1 - g^a) c^w)``: allocation ``a_t`` from usage, content
   ``c^w = C(M_{t-1}, k^w, beta^w)``;
3. ``M_t = M_{t-1} (1 - w^w e^T) + w^w v^T``;
4. temporal link ``L_t`` and precedence ``p_t``;
5. read weighting ``w^r = pi_b b + pi_c c^r + pi_f f`` with ``f = L_t w^r_{t-1}``, ``b = L_t^T w^r_{t-1}``,
   ``c^r = C(M_t, k^r, beta^r)``; reads ``r_t = w^r M_t``.

The output is ``[h_t, r_t]``; the attention dict holds ``read [B, R, N]``, ``write [B, W, N]``,
``allocation [B, W, N]`` and ``read_modes [B, R, 1 + 2W]`` (backward.., content, forward..).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NamedTuple

import torch
from torch import nn

from heed.agents.common.validate import Positive
from heed.agents.cores import addressing as A
from heed.agents.cores.base import (
    HeadCount,
    HiddenSize,
    MemoryRows,
    MemoryWidth,
    PartName,
    RecurrentCore,
    part_name,
)


class DNCState(NamedTuple):
    """Controller h, c ``[B, C]``; reads ``[B, R, M]``; memory ``[B, N, M]``; read_weights ``[B, R, N]``;
    write_weights ``[B, W, N]``; usage ``[B, N]``; link ``[B, W, N, N]``; precedence ``[B, W, N]``."""

    h: torch.Tensor
    c: torch.Tensor
    reads: torch.Tensor
    memory: torch.Tensor
    read_weights: torch.Tensor
    write_weights: torch.Tensor
    usage: torch.Tensor
    link: torch.Tensor
    precedence: torch.Tensor


@dataclass(frozen=True)
class DNCConfig:
    """A Differentiable Neural Computer with an LSTM controller."""

    name: PartName = part_name("dnc")
    hidden_size: Annotated[int, HiddenSize] = 100
    """controller size C"""
    memory_size: Annotated[int, MemoryRows] = 32
    """memory rows N"""
    memory_width: Annotated[int, MemoryWidth] = 20
    """memory columns M"""
    read_heads: Annotated[int, HeadCount] = 2
    """read heads R"""
    write_heads: Annotated[int, HeadCount] = 1
    """write heads W"""
    memory_init: float = 1e-6
    """the constant every memory cell starts at"""
    clip: Annotated[float, Positive] = 20.0
    """bound on the controller's interface outputs"""


class DNCCore(RecurrentCore):
    """A DNC with R read heads and W write heads (:class:`DNCConfig`); ``input_size`` is D."""

    def __init__(self, input_size: int, cfg: DNCConfig = DNCConfig()) -> None:
        super().__init__()
        hidden_size, memory_size, memory_width = cfg.hidden_size, cfg.memory_size, cfg.memory_width
        read_heads, write_heads, memory_init, clip = cfg.read_heads, cfg.write_heads, cfg.memory_init, cfg.clip
        self.input_size, self.hidden_size = input_size, hidden_size
        self.memory_size, self.memory_width = memory_size, memory_width
        self.read_heads, self.write_heads, self.clip = read_heads, write_heads, clip
        self.output_size = hidden_size + read_heads * memory_width
        self.controller = nn.LSTMCell(input_size + read_heads * memory_width, hidden_size)
        R, W, M = read_heads, write_heads, memory_width
        self.num_modes = 1 + 2 * W
        # read keys, read strengths, write keys, write strengths, erase, write vectors, free gates,
        # allocation gates, write gates, read modes
        self.sizes = [R * M, R, W * M, W, W * M, W * M, R, W, W, R * self.num_modes]
        self.interface = nn.Linear(hidden_size, sum(self.sizes))
        self.register_buffer("memory_init", torch.full((memory_size, memory_width), float(memory_init)))
        self.h0 = nn.Parameter(torch.zeros(hidden_size))
        self.c0 = nn.Parameter(torch.zeros(hidden_size))
        self.read_init = nn.Parameter(torch.zeros(read_heads, memory_width))

    def initial_state(self, batch_size: int) -> DNCState:
        B, N, R, W = batch_size, self.memory_size, self.read_heads, self.write_heads
        zeros = self.memory_init.new_zeros
        return DNCState(
            h=self.h0.expand(B, -1),
            c=self.c0.expand(B, -1),
            reads=self.read_init.expand(B, -1, -1),
            memory=self.memory_init.expand(B, -1, -1),
            read_weights=zeros(B, R, N),
            write_weights=zeros(B, W, N),
            usage=zeros(B, N),
            link=zeros(B, W, N, N),
            precedence=zeros(B, W, N),
        )

    def forward(self, x: torch.Tensor, state: DNCState) -> tuple[torch.Tensor, DNCState, dict[str, torch.Tensor]]:
        """x ``[B, D]`` -> output ``[B, C + R M]``, state, attention (see the module docstring)."""
        B = x.shape[0]
        R, W, M = self.read_heads, self.write_heads, self.memory_width
        h, c = self.controller(torch.cat([x, state.reads.reshape(B, -1)], dim=-1), (state.h, state.c))
        parts = torch.split(self.interface(h).clamp(-self.clip, self.clip), self.sizes, dim=-1)
        read_keys = parts[0].view(B, R, M)
        read_strength = A.one_plus_softplus(parts[1])
        write_keys = parts[2].view(B, W, M)
        write_strength = A.one_plus_softplus(parts[3])
        erase = torch.sigmoid(parts[4]).view(B, W, M)
        write_vectors = parts[5].view(B, W, M)
        free_gates = torch.sigmoid(parts[6])
        alloc_gates = torch.sigmoid(parts[7])
        write_gates = torch.sigmoid(parts[8])
        modes = torch.softmax(parts[9].view(B, R, self.num_modes), dim=-1)

        usage = A.update_usage(state.usage, state.write_weights, A.retention(free_gates, state.read_weights))
        allocation = A.write_allocation(usage, alloc_gates * write_gates)  # [B, W, N]
        write_content = A.content_weights(state.memory, write_keys, write_strength)
        ga, gw = alloc_gates.unsqueeze(-1), write_gates.unsqueeze(-1)
        write_w = gw * (ga * allocation + (1.0 - ga) * write_content)
        memory = A.erase_add_write(state.memory, write_w, erase, write_vectors)
        link = A.update_link(state.link, state.precedence, write_w)
        precedence = A.update_precedence(state.precedence, write_w)

        read_content = A.content_weights(memory, read_keys, read_strength)
        fwd = A.directional_weights(link, state.read_weights, forward=True)
        bwd = A.directional_weights(link, state.read_weights, forward=False)
        read_w = A.dnc_read_weights(read_content, fwd, bwd, modes)
        reads = A.read_memory(memory, read_w)
        out = torch.cat([h, reads.reshape(B, -1)], dim=-1)
        new = DNCState(h, c, reads, memory, read_w, write_w, usage, link, precedence)
        attention = {"read": read_w, "write": write_w, "allocation": allocation, "read_modes": modes}
        return out, new, attention

