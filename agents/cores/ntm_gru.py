"""An NTM whose controller is a GRU: the NTM of :mod:`heed.agents.cores.ntm` with ``h_t = GRU(inp, h_{t-1})``.

The controller keeps ``h`` (``c`` stays ``None``) and reads ``[x_t, r_{t-1}]`` as the LSTM controller
does; addressing, reading and writing are the NTM's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from heed.agents.cores.base import PartName, part_name
from heed.agents.cores.ntm import NTMConfig, NTMCore


@dataclass(frozen=True)
class NTMGRUConfig(NTMConfig):
    """An NTM with a GRU controller (every other field and default is the NTM's)."""

    name: PartName = part_name("ntm-gru")
    controller: Literal["gru"] = "gru"
    """the controller: a GRU"""


class NTMGRUCore(NTMCore):
    """:class:`NTMCore` with a ``nn.GRUCell`` controller (:class:`NTMGRUConfig`)."""

    def make_controller(self, size_in: int, hidden_size: int) -> nn.Module:
        return nn.GRUCell(size_in, hidden_size)

    def control(
        self, inp: torch.Tensor, h: torch.Tensor | None, c: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        h = self.controller(inp, h)
        return h, h, None

    def controller_state(self, batch_size: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return self.h0.expand(batch_size, -1), None
