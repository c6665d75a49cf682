"""heed's one replay buffer: n-step returns, frame deduplication and proportional priorities.

Both DQN shapes use it: the fast trainer (``agents/trainers/dqn.py``) and the SB3-style
:class:`heed.agents.dqn.DuelingDQN` (whose ``learn()`` feeds it through :meth:`FrameReplayBuffer.add`).

Layout: ``rows`` ring rows per environment slot, ``frames [R, N, *frame]``. Each slot has its own
row counter (a "global row" index that only grows), so slots may write different numbers of rows.
A slot's episode opens with a *start* row (its first observation, no transition); every later row
holds the newest frame of the observation a step produced plus the action, reward and flags of that
step. With ``frame_stack = K > 1`` an observation is ``[K, *frame]``, and the stack ending at row q is
frames q-K+1..q, zero before the episode's start row (as Atari frame stacks are padded at reset);
with ``K = 1`` a row holds the whole observation. A sampled transition at row g (not a start row) is

    s = stack(g - 1),  a = action[g],  s' = stack(g + k - 1),
    R = sum_{j<k} gamma^j r[g + j],  discount = gamma^k,  done = terminal[g + k - 1],

with k <= n cut at the first boundary (terminal, truncation or episode end) and at the newest row.

Prioritized replay (Schaul et al. 2016, proportional): P(i) = p_i^alpha / sum_j p_j^alpha and
w_i = (N P(i))^-beta / max_batch w (the batch maximum: a common simplification of the paper's max
over the buffer). New transitions get the largest priority seen so far; after an update the caller
passes p_i = |delta_i| + eps. Uniform replay is the same tree with every live leaf at 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from heed.agents.common.errors import HeedError


class ReplaySample(NamedTuple):
    """A batch of n-step transitions; tensors on the buffer's device, observations in their stored dtype."""

    observations: torch.Tensor  # [B, *obs]
    actions: torch.Tensor  # [B, 1] int64
    next_observations: torch.Tensor  # [B, *obs]
    dones: torch.Tensor  # [B, 1] float: no bootstrap from s'
    rewards: torch.Tensor  # [B, 1] n-step discounted return
    discounts: torch.Tensor  # [B, 1] gamma^k
    weights: torch.Tensor | None  # [B, 1] importance weights (prioritized only)
    indices: np.ndarray  # [B] leaves, for update_priorities


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

    def update(self, indices: np.ndarray, values: np.ndarray | float) -> None:
        """Set leaves ``indices`` to ``values`` and refresh their ancestors (one level at a time).

        Raises :class:`HeedError` for a NaN, infinite or negative value: one such leaf would make
        every later search walk a NaN total (the sampler would never find a leaf).
        """
        values = np.broadcast_to(np.asarray(values, dtype=np.float64), np.shape(indices))
        if not np.isfinite(values).all() or (values < 0).any():
            bad = values[~np.isfinite(values) | (values < 0)][0]
            raise HeedError(f"replay priority {bad} is not a finite number >= 0: the TD error diverged "
                            "(lower the learning rate or check the rewards)")
        pos = np.asarray(indices, dtype=np.int64) + self.size
        self.tree[pos] = values
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

    def sample(self, batch_size: int, rng: np.random.Generator, stratified: bool = True) -> np.ndarray:
        """Leaves drawn with probability proportional to their value (one per stratum if ``stratified``).

        Never returns a zero leaf while any is non-zero; raises :class:`HeedError` when all are zero.
        """
        total = self.total
        if not total > 0:
            raise HeedError("the replay buffer holds no complete transition yet")
        u = (np.arange(batch_size) + rng.random(batch_size)) / batch_size if stratified else rng.random(batch_size)
        idx = self.find(np.minimum(u * total, np.nextafter(total, 0)))
        zero = self.get(idx) <= 0
        for _ in range(100):  # float round-off at a boundary: resample those
            if not zero.any():
                return idx
            idx[zero] = self.find(rng.random(int(zero.sum())) * total)
            zero = self.get(idx) <= 0
        raise HeedError("the replay sum tree is inconsistent (no leaf found after 100 tries)")


class FrameReplayBuffer:
    """Frame-deduplicating n-step replay for ``n_envs`` environment slots, uniform or prioritized.

    Args:
        capacity: transitions kept (rounded down to a multiple of ``n_envs``).
        n_envs: environment slots (one ring of rows each).
        obs_shape: one observation's shape, ``(4, 84, 84)`` for Atari, ``(4,)`` for CartPole.
        obs_dtype: the observation dtype (uint8 frames are stored as uint8).
        frame_stack: K; observations are stacks of K frames along axis 0 and each frame is stored once.
        n_steps: n of the n-step return.
        gamma: discount.
        device: where sampled tensors go.
        prioritized: proportional prioritized replay with exponent ``alpha``.
        seed: seed of the sampling generator.
    """

    def __init__(
        self,
        capacity: int,
        n_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: Any = np.uint8,
        frame_stack: int = 1,
        n_steps: int = 1,
        gamma: float = 0.99,
        device: torch.device | str = "cpu",
        prioritized: bool = False,
        alpha: float = 0.6,
        seed: int | None = None,
    ) -> None:
        if frame_stack < 1 or (frame_stack > 1 and obs_shape[0] != frame_stack):
            raise HeedError(f"frame_stack={frame_stack} does not fit observations of shape {tuple(obs_shape)}")
        self.stack = int(frame_stack)
        self.frame_shape = tuple(obs_shape[1:]) if self.stack > 1 else tuple(obs_shape)
        self.rows = max(self.stack + n_steps + 2, capacity // n_envs)
        self.n_envs = n_envs
        self.n_steps = n_steps
        self.gamma = gamma
        self.device = torch.device(device)
        self.frames = np.zeros((self.rows, n_envs, *self.frame_shape), dtype=obs_dtype)
        self.actions = np.zeros((self.rows, n_envs), dtype=np.int64)
        self.rewards = np.zeros((self.rows, n_envs), dtype=np.float32)
        self.terminal = np.zeros((self.rows, n_envs), dtype=bool)
        self.boundary = np.zeros((self.rows, n_envs), dtype=bool)
        self.start = np.ones((self.rows, n_envs), dtype=bool)
        self.ep_start = np.zeros((self.rows, n_envs), dtype=np.int64)
        self.cursor = np.zeros(n_envs, dtype=np.int64)  # rows written so far, per slot
        self.open = np.zeros(n_envs, dtype=bool)  # the slot's newest row belongs to a running episode
        self._episode_start = np.zeros(n_envs, dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self.prioritized = prioritized
        self.alpha = alpha
        self.max_priority = 1.0
        self.tree = SumTree(self.rows * n_envs)
        self._slots = np.arange(n_envs)

    def __len__(self) -> int:
        return int(np.minimum(self.cursor, self.rows).sum())

    @property
    def capacity(self) -> int:
        return self.rows * self.n_envs

    # ------------------------------------------------------------------ writing
    def store(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminal: np.ndarray,
        truncated: np.ndarray,
        episode_end: np.ndarray | None = None,
        valid: np.ndarray | None = None,
    ) -> None:
        """Store one vector step of transitions ``(obs, action, reward, next_obs)``, ``[N, ...]`` each.

        Args:
            terminal: ``[N]`` no bootstrapping from ``next_obs`` (game over, or a lost life).
            truncated: ``[N]`` cut by a time limit (bootstrap from ``next_obs``).
            episode_end: ``[N]`` the env resets after this step, so the next ``obs`` starts a new
                stack (default ``terminal | truncated``; Atari passes game over only, since a lost
                life keeps the frame stack going).
            valid: ``[N]`` slots that made a real transition (default all; False for the step
                after an end under next-step autoreset, which only returns the reset observation).
        """
        terminal, truncated = np.asarray(terminal, dtype=bool), np.asarray(truncated, dtype=bool)
        episode_end = terminal | truncated if episode_end is None else np.asarray(episode_end, dtype=bool)
        valid = np.ones(self.n_envs, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        opening = valid & ~self.open
        if opening.any():  # the slot's obs is a fresh episode's first observation: a start row
            slots = self._slots[opening]
            self._write(slots, obs[opening], 0, 0.0, False, False, start=True)
        if valid.any():
            slots = self._slots[valid]
            self._write(slots, next_obs[valid], np.asarray(actions)[valid], np.asarray(rewards)[valid],
                        terminal[valid], (terminal | truncated | episode_end)[valid], start=False)
            self.open[slots] = ~episode_end[valid]

    def add(self, obs: np.ndarray, next_obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
            done: np.ndarray, infos: list[dict]) -> None:
        """Stable-Baselines3's ``ReplayBuffer.add`` signature (its ``learn()`` calls this).

        SB3 resets an env on the step that ends it and passes the terminal observation as
        ``next_obs``; ``infos[i]["TimeLimit.truncated"]`` marks a time-limit cut.
        """
        done = np.asarray(done, dtype=bool)
        truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos]) & done
        self.store(obs, next_obs, np.asarray(action).reshape(self.n_envs), reward, done & ~truncated, truncated)

    def _write(self, slots: np.ndarray, obs: np.ndarray, actions: Any, rewards: Any, terminal: Any,
               boundary: Any, start: bool) -> None:
        g = self.cursor[slots]
        p = g % self.rows
        if start:
            self._episode_start[slots] = g
        self.frames[p, slots] = obs[:, -1] if self.stack > 1 else obs
        self.actions[p, slots] = actions
        self.rewards[p, slots] = rewards
        self.terminal[p, slots] = terminal
        self.boundary[p, slots] = boundary
        self.start[p, slots] = start
        self.ep_start[p, slots] = self._episode_start[slots]
        self.cursor[slots] = g + 1
        live = 0.0 if start else (self.max_priority**self.alpha if self.prioritized else 1.0)
        # the slot's oldest rows lose their history when row p is overwritten: never sample them
        stale = (p[None, :] + 1 + np.arange(self.stack)[:, None]) % self.rows  # [K, S]
        leaves = np.concatenate([(stale * self.n_envs + slots).ravel(), p * self.n_envs + slots])
        self.tree.update(leaves, np.repeat([0.0, live], [stale.size, len(slots)]))

    # ------------------------------------------------------------------ sampling
    def _stacks(self, q: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Observations ending at global rows ``q`` of slots ``slot``: ``[B, K, *frame]`` (or ``[B, *frame]``)."""
        if self.stack == 1:
            return self.frames[q % self.rows, slot]
        rows = q[:, None] - np.arange(self.stack - 1, -1, -1)  # [B, K], oldest first
        frames = self.frames[rows % self.rows, slot[:, None]]
        before_start = rows < self.ep_start[q % self.rows, slot][:, None]
        if before_start.any():
            frames[before_start] = 0
        return frames

    def sample(self, batch_size: int, beta: float = 0.4) -> ReplaySample:
        """A batch of n-step transitions (importance weights with exponent ``beta`` when prioritized)."""
        leaves = self.tree.sample(batch_size, self.rng, stratified=self.prioritized)
        p, slot = np.divmod(leaves, self.n_envs)
        newest = self.cursor[slot] - 1
        g = newest - ((newest - p) % self.rows)  # global row of ring row p
        returns = np.zeros(batch_size, dtype=np.float32)
        last = g.copy()
        alive = np.ones(batch_size, dtype=bool)
        for k in range(self.n_steps):
            row = g + k
            use = alive & (row <= newest)
            r = self.rewards[row % self.rows, slot]
            returns += np.where(use, (self.gamma**k) * r, 0.0).astype(np.float32)
            last = np.where(use, row, last)
            alive = use & ~self.boundary[row % self.rows, slot]
        discounts = (self.gamma ** (last - g + 1)).astype(np.float32)
        dones = self.terminal[last % self.rows, slot].astype(np.float32)
        # s and s' in one gather and one host-to-device copy
        both = self._tensor(self._stacks(np.concatenate([g - 1, last]), np.concatenate([slot, slot])))
        scalars = self._tensor(np.stack([self.actions[g % self.rows, slot].astype(np.float32), returns,
                                         discounts, dones], axis=1))  # [B, 4]
        weights = None
        if self.prioritized:
            probs = self.tree.get(leaves) / self.tree.total
            w = (len(self) * probs) ** (-beta)
            weights = self._tensor((w / w.max()).astype(np.float32)[:, None])
        return ReplaySample(
            observations=both[:batch_size],
            actions=scalars[:, 0:1].long(),
            next_observations=both[batch_size:],
            dones=scalars[:, 3:4],
            rewards=scalars[:, 1:2],
            discounts=scalars[:, 2:3],
            weights=weights,
            indices=leaves,
        )

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set p_i = ``priorities`` (|delta| + eps) for the sampled leaves (no-op for uniform replay)."""
        if not self.prioritized:
            return
        priorities = np.asarray(priorities, dtype=np.float64)
        self.tree.update(indices, priorities**self.alpha)  # refuses NaN/inf before max_priority sees it
        self.max_priority = max(self.max_priority, float(np.max(priorities)))

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)


__all__ = ["FrameReplayBuffer", "ReplaySample", "SumTree"]
