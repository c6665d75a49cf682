"""A replay buffer for stacked Atari frames that stores every frame once.

SB3's ``ReplayBuffer`` keeps ``obs`` and ``next_obs`` as full ``[4, 84, 84]`` stacks: 8 copies of
each frame. This buffer keeps one ``uint8 [84, 84]`` frame per environment step and rebuilds the
stacks at sample time, with n-step returns and optional proportional priorities built in.

Layout: rows ``[R, N]`` (R rows of N vector-env slots), written one row per vector step. Row g of
env i holds the newest frame of the observation that step produced, plus the action, reward and
flags of the transition that led to it. An episode's first row (after a reset) is a *start* row:
it holds the reset frame and no transition. The stack ending at row q is frames q-3..q, where
frames before the episode's start row are zero (as ale-py's vector env pads a fresh stack).

A sampled transition at row g (not a start row) is
    s = stack(g - 1),  a = action[g],  s' = stack(g + k - 1),
    R = sum_{j<k} gamma^j r[g + j],  discount = gamma^k,  done = terminal[g + k - 1],
with k <= n cut at the first episode boundary (terminal, life loss or truncation) and at the newest row.
"""

from __future__ import annotations

import numpy as np
import torch

from heed.agents.replay import PrioritizedSamples, SumTree

STACK = 4


class FrameReplayBuffer:
    """Frame-deduplicating n-step replay for ``N`` parallel Atari envs.

    Args:
        capacity: transitions kept (rounded down to a multiple of ``n_envs``).
        n_envs: parallel environments (one slot each per row).
        frame_shape: ``(84, 84)``.
        n_steps: n of the n-step return.
        gamma: discount.
        device: where sampled tensors go.
        prioritized: proportional prioritized replay with exponent ``alpha``.
    """

    def __init__(
        self,
        capacity: int,
        n_envs: int,
        frame_shape: tuple[int, int] = (84, 84),
        n_steps: int = 1,
        gamma: float = 0.99,
        device: torch.device | str = "cpu",
        prioritized: bool = False,
        alpha: float = 0.6,
        seed: int | None = None,
    ) -> None:
        self.rows = max(STACK + n_steps + 2, capacity // n_envs)
        self.n_envs = n_envs
        self.n_steps = n_steps
        self.gamma = gamma
        self.device = torch.device(device)
        self.frames = np.zeros((self.rows, n_envs, *frame_shape), dtype=np.uint8)
        self.actions = np.zeros((self.rows, n_envs), dtype=np.int64)
        self.rewards = np.zeros((self.rows, n_envs), dtype=np.float32)
        self.terminal = np.zeros((self.rows, n_envs), dtype=bool)
        self.boundary = np.zeros((self.rows, n_envs), dtype=bool)
        self.start = np.ones((self.rows, n_envs), dtype=bool)
        self.ep_start = np.zeros((self.rows, n_envs), dtype=np.int64)
        self.written = 0  # rows written so far (global row counter)
        self._episode_start = np.zeros(n_envs, dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self.prioritized = prioritized
        self.alpha = alpha
        self.beta = 0.4
        self.max_priority = 1.0
        self.tree = SumTree(self.rows * n_envs) if prioritized else None
        self._pin = self.device.type == "cuda"

    def __len__(self) -> int:
        return min(self.written, self.rows) * self.n_envs

    @property
    def capacity(self) -> int:
        return self.rows * self.n_envs

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminal: np.ndarray,
        truncated: np.ndarray,
        start: np.ndarray,
    ) -> None:
        """Write one vector step.

        Args:
            obs: the observations the step returned, ``uint8 [N, 4, 84, 84]``.
            actions, rewards: ``[N]`` (rewards as the learner sees them, e.g. clipped).
            terminal: ``[N]`` no bootstrapping past this transition (game over or life lost).
            truncated: ``[N]`` the episode was cut by a time limit (bootstrap from ``obs``).
            start: ``[N]`` ``obs`` is the first of a new episode (autoreset or the first reset);
                the other fields of that slot are ignored.
        """
        g = self.written
        p = g % self.rows
        start = np.asarray(start, dtype=bool)
        self._episode_start[start] = g
        self.frames[p] = obs[:, -1]
        self.actions[p] = actions
        self.rewards[p] = np.where(start, 0.0, rewards)
        self.terminal[p] = np.asarray(terminal, dtype=bool) & ~start
        self.boundary[p] = (np.asarray(terminal, dtype=bool) | np.asarray(truncated, dtype=bool)) & ~start
        self.start[p] = start
        self.ep_start[p] = self._episode_start
        self.written = g + 1
        if self.tree is not None:
            leaves = p * self.n_envs + np.arange(self.n_envs)
            self.tree.update(leaves, np.where(start, 0.0, self.max_priority**self.alpha))
            # the oldest rows lose their frame history when row p is overwritten: never sample them
            stale = (p + 1 + np.arange(STACK)) % self.rows
            self.tree.update((stale[:, None] * self.n_envs + np.arange(self.n_envs)).ravel(), 0.0)

    def add_reset(self, obs: np.ndarray) -> None:
        """Write the first observations after a full reset (all slots start an episode)."""
        n = self.n_envs
        zeros = np.zeros(n)
        self.add(obs, zeros.astype(np.int64), zeros, zeros.astype(bool), zeros.astype(bool), np.ones(n, dtype=bool))

    # ------------------------------------------------------------------ sampling
    def _valid_range(self) -> tuple[int, int]:
        oldest = max(0, self.written - self.rows)
        return oldest + STACK, self.written - 1  # inclusive bounds of global rows that can be sampled

    def _uniform(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._valid_range()
        if hi < lo:
            raise ValueError("the replay buffer holds too few steps to sample from")
        g = self.rng.integers(lo, hi + 1, size=batch_size)
        env = self.rng.integers(0, self.n_envs, size=batch_size)
        bad = self.start[g % self.rows, env]
        tries = 0
        while bad.any():
            k = int(bad.sum())
            g[bad] = self.rng.integers(lo, hi + 1, size=k)
            env[bad] = self.rng.integers(0, self.n_envs, size=k)
            bad = self.start[g % self.rows, env]
            tries += 1
            if tries > 1000:
                raise ValueError("the replay buffer holds no complete transition yet")
        return g, env

    def _stack(self, q: np.ndarray, env: np.ndarray) -> np.ndarray:
        """Stacks ending at global rows ``q`` for envs ``env``: ``uint8 [B, 4, 84, 84]``."""
        rows = q[:, None] - np.arange(STACK - 1, -1, -1)  # [B, 4], oldest first
        frames = self.frames[rows % self.rows, env[:, None]]
        before_start = rows < self.ep_start[q % self.rows, env][:, None]
        if before_start.any():
            frames[before_start] = 0
        return frames

    def sample(self, batch_size: int, env=None) -> PrioritizedSamples:  # noqa: ARG002 - SB3 signature
        """A batch of n-step transitions as tensors on ``device`` (observations stay uint8)."""
        if self.tree is not None:
            leaves = self.tree.sample(batch_size, self.rng)
            p, slot = np.divmod(leaves, self.n_envs)
            newest = (self.written - 1) % self.rows
            g = self.written - 1 - ((newest - p) % self.rows)  # global row of ring row p
        else:
            g, slot = self._uniform(batch_size)
            leaves = (g % self.rows) * self.n_envs + slot
        returns = np.zeros(batch_size, dtype=np.float32)
        last = g.copy()
        alive = np.ones(batch_size, dtype=bool)
        for k in range(self.n_steps):
            row = g + k
            use = alive & (row <= self.written - 1)
            r = self.rewards[row % self.rows, slot]
            returns += np.where(use, (self.gamma**k) * r, 0.0).astype(np.float32)
            last = np.where(use, row, last)
            alive = use & ~self.boundary[row % self.rows, slot]
        steps = last - g + 1
        discounts = (self.gamma**steps).astype(np.float32)
        dones = self.terminal[last % self.rows, slot].astype(np.float32)
        obs = self._stack(g - 1, slot)
        next_obs = self._stack(last, slot)
        actions = self.actions[g % self.rows, slot]
        weights = None
        if self.tree is not None:
            probs = self.tree.get(leaves) / self.tree.total
            w = (len(self) * probs) ** (-self.beta)
            weights = self._tensor((w / w.max()).astype(np.float32)[:, None])
        return PrioritizedSamples(
            observations=self._tensor(obs),
            actions=self._tensor(actions[:, None]),
            next_observations=self._tensor(next_obs),
            dones=self._tensor(dones[:, None]),
            rewards=self._tensor(returns[:, None]),
            discounts=self._tensor(discounts[:, None]),
            weights=weights,
            indices=leaves,
        )

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set p_i = priorities (|delta| + eps) for the sampled leaves."""
        if self.tree is None:
            return
        self.max_priority = max(self.max_priority, float(np.max(priorities)))
        self.tree.update(indices, np.asarray(priorities, dtype=np.float64) ** self.alpha)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array))
        if self._pin:
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)
