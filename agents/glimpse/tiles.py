"""The lecture's first hard-attention example: a softmax over a 3x3 grid of tiles, trained with REINFORCE.

The 28x28 digit is zero-padded to 30x30 and cut into 9 tiles of 10x10 (row-major, as
``heed/GlimpseGrid-v0``). The first glimpse is the centre tile (the env's ``reset``); each later tile is
drawn from a policy over the tiles not yet seen, and the classifier sees only the chosen tiles::

    k_0 = 4 (centre)
    for t = 0 .. T-1:
        e_t = relu(W_e [vec(tile_{k_t}), onehot(k_t)])              [B, H]
        h_{t+1} = LSTM(e_t, h_t)
        k_{t+1} ~ softmax(W_k sg(h_{t+1}) - inf * seen)            policy over the unseen tiles
        b_{t+1} = W_b sg(h_{t+1})                                  learned baseline
    logits = W_c h_T

Training is RAM's hybrid loss (:func:`heed.agents.glimpse.ram.hybrid_loss`): cross-entropy for the
classifier plus REINFORCE with reward ``R = 1[argmax logits = y]`` and the baseline (the lecture's
``grad E[R] = E[grad log pi(k) R]``). ``policy="random"`` draws the tiles uniformly (without
replacement) instead: the baseline at equal glimpses.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from heed.agents.glimpse.ram import GlimpseOutput
from heed.envs.glimpse import GRID, GRID_TILE, grid_tile_centre

TILES = GRID * GRID
CENTRE_TILE = TILES // 2


def cut_tiles(images: torch.Tensor) -> torch.Tensor:
    """``images [B, 28, 28]`` -> tiles ``[B, 9, 10, 10]`` (zero-padded to 30x30, row-major), as the env cuts them."""
    side = GRID * GRID_TILE
    pad = (side - images.shape[-1]) // 2
    padded = F.pad(images, (pad, side - images.shape[-1] - pad, pad, side - images.shape[-2] - pad))
    b = images.shape[0]
    grid = padded.reshape(b, GRID, GRID_TILE, GRID, GRID_TILE).permute(0, 1, 3, 2, 4)  # [B, 3, 3, 10, 10]
    return grid.reshape(b, TILES, GRID_TILE, GRID_TILE)


def tiles_from_locations(locations: torch.Tensor | np.ndarray) -> np.ndarray:
    """Tile indices ``[...]`` of tile-centre locations ``[..., 2]`` in ``[-1, 1]^2`` (nearest centre)."""
    centres = np.stack([grid_tile_centre(k) for k in range(TILES)])  # [9, 2]
    loc = np.asarray(locations, dtype=np.float32)
    return np.argmin(((loc[..., None, :] - centres) ** 2).sum(-1), axis=-1)


class TilePolicy(nn.Module):
    """Tile-choice classifier (see the module docstring for the equations).

    Args:
        glimpses: ``T`` tiles seen, the centre first (``1 <= T <= 9``).
        hidden: LSTM size ``H``.
        policy: ``learned`` (REINFORCE) or ``random`` (uniform over the unseen tiles).
    """

    def __init__(self, glimpses: int = 4, hidden: int = 256, policy: str = "learned", num_classes: int = 10) -> None:
        super().__init__()
        if policy not in ("learned", "random"):
            raise ValueError(f"unknown policy '{policy}': use learned or random")
        if not 1 <= glimpses <= TILES:
            raise ValueError(f"the tile policy takes 1 to {TILES} glimpses, got {glimpses}")
        self.glimpses, self.hidden, self.policy = glimpses, hidden, policy
        self.encode = nn.Linear(GRID_TILE * GRID_TILE + TILES, hidden)
        self.core = nn.LSTMCell(hidden, hidden)
        self.chooser = nn.Linear(hidden, TILES)
        self.baseline = nn.Linear(hidden, 1)
        self.classifier = nn.Linear(hidden, num_classes)
        centres = torch.from_numpy(np.stack([grid_tile_centre(k) for k in range(TILES)]))
        self.register_buffer("centres", centres, persistent=False)  # [9, 2]

    def _choose(self, h: torch.Tensor, seen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Next tile ``[B]`` among the unseen (``seen [B, 9]`` bool), its ``log_pi [B]`` and ``baseline [B]``."""
        if self.policy == "random":
            logits = torch.zeros_like(seen, dtype=h.dtype)
        else:
            logits = self.chooser(h.detach())
        logits = logits.masked_fill(seen, float("-inf"))
        dist = torch.distributions.Categorical(logits=logits)
        tile = dist.sample()
        if self.policy == "random":
            zero = torch.zeros(h.shape[0], device=h.device)
            return tile, zero, zero
        return tile, dist.log_prob(tile), self.baseline(h.detach())[:, 0]

    def forward(self, images: torch.Tensor, tiles: torch.Tensor | None = None) -> GlimpseOutput:
        """``images [B, 28, 28]`` -> :class:`GlimpseOutput` (``locations`` are the tile centres).

        ``tiles [B, T]`` (optional) forces the tiles seen instead of sampling them; ``log_pi`` is then 0.
        """
        b, device = images.shape[0], images.device
        patches = cut_tiles(images).flatten(2)  # [B, 9, 100]
        rows = torch.arange(b, device=device)
        h = images.new_zeros(b, self.hidden)
        state = (h, h.clone())
        seen = torch.zeros(b, TILES, dtype=torch.bool, device=device)
        tile = torch.full((b,), CENTRE_TILE, dtype=torch.long, device=device)
        zero = torch.zeros(b, device=device)
        log_pi, base = zero, self.baseline(h)[:, 0] if self.policy == "learned" else zero
        chosen, log_pis, bases = [], [], []
        for t in range(self.glimpses):
            if tiles is not None:
                tile, log_pi = tiles[:, t].long(), zero
            chosen.append(tile)
            log_pis.append(log_pi)
            bases.append(base)
            seen = seen | F.one_hot(tile, TILES).bool()
            x = torch.cat([patches[rows, tile], F.one_hot(tile, TILES).to(images.dtype)], -1)  # [B, 109]
            state = self.core(F.relu(self.encode(x)), state)
            if t + 1 < self.glimpses:
                tile, log_pi, base = self._choose(state[0], seen)
        chosen_t = torch.stack(chosen, 1)  # [B, T]
        extent = torch.full((b, self.glimpses), float(GRID_TILE), device=device)
        return GlimpseOutput(
            self.classifier(state[0]), self.centres[chosen_t], torch.stack(log_pis, 1), torch.stack(bases, 1), extent
        )
