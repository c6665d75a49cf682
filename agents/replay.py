"""Replay buffers: a vectorised sum tree, prioritized replay for SB3's buffers, and a fast
frame-deduplicating Atari buffer with n-step returns and optional priorities.

Prioritized replay (Schaul et al. 2016, proportional variant):
    P(i) = p_i^alpha / sum_j p_j^alpha,   w_i = (N P(i))^-beta / max_batch w,
new transitions get the largest priority seen so far; priorities are set to |delta| + eps after
each update (the caller passes |delta| + eps; the buffer raises it to alpha). Importance weights are
normalised by the batch maximum (a common simplification of the paper's max over the buffer).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer


class PrioritizedSamples(NamedTuple):
    """SB3's ``ReplayBufferSamples`` fields plus importance weights ``[B, 1]`` and leaf indices ``[B]``."""

    observations: torch.Tensor
    actions: torch.Tensor
    next_observations: torch.Tensor
    dones: torch.Tensor
    rewards: torch.Tensor
    discounts: torch.Tensor | None
    weights: torch.Tensor | None
    indices: np.ndarray


class SumTree:
    """A binary sum tree over ``capacity`` leaves with batched (numpy-vectorised) update and search."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self.size = 1 << max(1, int(np.ceil(np.log2(max(2, capacity)))))
        self.depth = int(np.log2(self.size))
        self.tree = np.zeros(2 * self.size, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(indices) + self.size]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` to ``values`` and refresh their ancestors (one level at a time)."""
        pos = np.asarray(indices, dtype=np.int64) + self.size
        self.tree[pos] = np.asarray(values, dtype=np.float64)
        pos = np.unique(pos // 2)
        while pos[0] >= 1:
            self.tree[pos] = self.tree[2 * pos] + self.tree[2 * pos + 1]
            if pos[0] == 1:
                break
            pos = np.unique(pos // 2)

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Leaf index i with cumsum(p)[i-1] <= mass < cumsum(p)[i], for each entry of ``mass``."""
        mass = np.asarray(mass, dtype=np.float64).copy()
        pos = np.ones(mass.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = self.tree[2 * pos]
            right = mass >= left
            mass -= left * right
            pos = 2 * pos + right
        return np.minimum(pos - self.size, self.capacity - 1)

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Stratified proportional sampling; never returns a zero-priority leaf while any is non-zero."""
        bounds = (np.arange(batch_size) + rng.random(batch_size)) * (self.total / batch_size)
        idx = self.find(np.minimum(bounds, np.nextafter(self.total, 0)))
        zero = self.get(idx) <= 0
        while zero.any():  # float round-off at a boundary: resample those
            idx[zero] = self.find(rng.random(int(zero.sum())) * self.total)
            zero = self.get(idx) <= 0
        return idx


class _PrioritizedMixin:
    """Adds proportional priorities to an SB3 buffer (single environment: SB3 draws env indices itself)."""

    def _init_priorities(self, alpha: float) -> None:
        if self.n_envs != 1:  # type: ignore[attr-defined]
            raise ValueError("prioritized replay with SB3's learn() takes one environment; heed's trainer takes many")
        self.alpha = alpha
        self.beta = 0.4
        self.tree = SumTree(self.buffer_size)  # type: ignore[attr-defined]
        self.max_priority = 1.0
        self.rng = np.random.default_rng()

    def add(self, *args, **kwargs) -> None:
        self.tree.update(np.array([self.pos]), np.array([self.max_priority**self.alpha]))  # type: ignore[attr-defined]
        super().add(*args, **kwargs)  # type: ignore[misc]

    def sample(self, batch_size: int, env=None) -> PrioritizedSamples:
        idx = self.tree.sample(batch_size, self.rng)
        samples = self._get_samples(idx, env=env)  # type: ignore[attr-defined]
        n = self.buffer_size if self.full else self.pos  # type: ignore[attr-defined]
        probs = self.tree.get(idx) / self.tree.total
        weights = (n * probs) ** (-self.beta)
        weights = torch.as_tensor(weights / weights.max(), dtype=torch.float32, device=self.device)  # type: ignore[attr-defined]
        return PrioritizedSamples(*samples[:5], getattr(samples, "discounts", None), weights.unsqueeze(1), idx)

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set p_i = priorities (|delta| + eps) for the sampled leaves."""
        self.max_priority = max(self.max_priority, float(np.max(priorities)))
        self.tree.update(indices, np.asarray(priorities, dtype=np.float64) ** self.alpha)


class PrioritizedReplayBuffer(_PrioritizedMixin, ReplayBuffer):
    """SB3 ``ReplayBuffer`` with proportional priorities (for ``DuelingDQN(..., prioritized=True).learn()``)."""

    def __init__(self, *args, alpha: float = 0.6, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_priorities(alpha)


class PrioritizedNStepReplayBuffer(_PrioritizedMixin, NStepReplayBuffer):
    """SB3 ``NStepReplayBuffer`` with proportional priorities."""

    def __init__(self, *args, alpha: float = 0.6, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_priorities(alpha)
