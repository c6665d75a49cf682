"""Dueling / Double DQN as a Stable-Baselines3 algorithm (the one place heed subclasses SB3).

Use it the SB3 way::

    from heed.agents.dqn import DuelingDQN
    model = DuelingDQN("CnnPolicy", env, prioritized=True, n_steps=3)
    model.learn(1_000_000, callback=...)
    model.save("pong.zip"); DuelingDQN.load("pong.zip")   # SB3's own format (pickles: trusted files only)

heed's checkpoints for sharing are safetensors + JSON: :func:`save_q_network` / :func:`load_q_network`.

What it adds to SB3's DQN (Mnih et al. 2015):

- the dueling network (:class:`agents.networks.DuelingQNetwork`, Wang et al. 2016);
- Double-DQN targets (van Hasselt et al. 2016): the online net chooses, the target net scores,
  y = r + gamma^k (1 - done) Q_target(s', argmax_a Q_online(s', a));
- SB3's n-step returns (``n_steps``; the buffer returns the discount gamma^k per sample);
- proportional prioritized replay (Schaul et al. 2016) as an option: P(i) = p_i^alpha / sum_j p_j^alpha,
  importance weights w_i = (N P(i))^-beta / max_j w_j with beta annealed linearly to 1, priorities
  p_i = |delta_i| + eps after every update.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import DQN
from stable_baselines3.dqn.policies import DQNPolicy

from heed.agents.common.checkpoint import load_checkpoint, load_module_state, save_checkpoint
from heed.agents.common.errors import HeedError
from heed.agents.networks import DuelingQNetwork, NatureConv, build_q_network
from heed.agents.replay import PrioritizedNStepReplayBuffer, PrioritizedReplayBuffer

KIND = "dueling-dqn"


class DuelingMlpPolicy(DQNPolicy):
    """SB3 DQN policy whose Q-network has value and advantage streams (vector observations)."""

    def make_q_net(self) -> DuelingQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return DuelingQNetwork(**net_args).to(self.device)


class DuelingCnnPolicy(DuelingMlpPolicy):
    """Dueling policy on image stacks: Nature-CNN convolutions, then two 512-unit streams."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", NatureConv)
        kwargs.setdefault("net_arch", [512])
        super().__init__(*args, **kwargs)


class DuelingDQN(DQN):
    """SB3 ``DQN`` with a dueling network, Double-DQN targets and optional prioritized replay.

    Args (beyond SB3's ``DQN``):
        double_q: use Double-DQN targets (default True).
        prioritized: proportional prioritized replay.
        per_alpha: priority exponent alpha.
        per_beta0: initial importance-sampling exponent, annealed linearly to 1 over training.
        per_eps: added to |TD error| so that no transition gets priority 0.
    """

    policy_aliases = {"MlpPolicy": DuelingMlpPolicy, "CnnPolicy": DuelingCnnPolicy}  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[DQNPolicy],
        env: Any,
        *args: Any,
        double_q: bool = True,
        prioritized: bool = False,
        per_alpha: float = 0.6,
        per_beta0: float = 0.4,
        per_eps: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        self.double_q = double_q
        self.prioritized = prioritized
        self.per_alpha = per_alpha
        self.per_beta0 = per_beta0
        self.per_eps = per_eps
        self.last_td_loss: float | None = None  # of the latest train() call
        self.last_q_value: float | None = None
        if prioritized and kwargs.get("replay_buffer_class") is None:
            n = kwargs.pop("n_steps", 1)  # handed to the prioritized buffer below
            kwargs["replay_buffer_class"] = PrioritizedNStepReplayBuffer if n > 1 else PrioritizedReplayBuffer
            extra = dict(kwargs.get("replay_buffer_kwargs") or {})
            extra.setdefault("alpha", per_alpha)
            if n > 1:
                extra.setdefault("n_steps", n)
                extra.setdefault("gamma", kwargs.get("gamma", 0.99))
            kwargs["replay_buffer_kwargs"] = extra
        super().__init__(policy, env, *args, **kwargs)

    @property
    def per_beta(self) -> float:
        """beta, annealed linearly from ``per_beta0`` to 1 over the run (SB3's progress counter)."""
        progress = 1.0 - float(getattr(self, "_current_progress_remaining", 1.0))
        return float(min(1.0, self.per_beta0 + (1.0 - self.per_beta0) * progress))

    def td_targets(self, rewards: torch.Tensor, next_obs: torch.Tensor, dones: torch.Tensor, discounts) -> torch.Tensor:
        """y = r + gamma^k (1 - done) Q_target(s', a*), a* = argmax Q_online(s') (Double) or argmax Q_target (DQN).

        Shapes: rewards, dones ``[B, 1]``; next_obs ``[B, ...]``; returns ``[B, 1]``.
        """
        with torch.no_grad():
            next_target = self.q_net_target(next_obs)
            if self.double_q:
                best = self.q_net(next_obs).argmax(dim=1, keepdim=True)
            else:
                best = next_target.argmax(dim=1, keepdim=True)
            next_q = next_target.gather(1, best)
            return rewards + (1.0 - dones) * discounts * next_q

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """SB3's DQN update with Double-DQN targets and importance-weighted Huber loss."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        buffer = self.replay_buffer
        if hasattr(buffer, "beta"):
            buffer.beta = self.per_beta
        losses, q_means = [], []
        for _ in range(gradient_steps):
            data = buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = data.discounts if data.discounts is not None else self.gamma
            target = self.td_targets(data.rewards, data.next_observations, data.dones, discounts)
            q_all = self.q_net(data.observations)
            q = q_all.gather(1, data.actions.long())
            elementwise = F.smooth_l1_loss(q, target, reduction="none")
            weights = getattr(data, "weights", None)
            loss = (elementwise * weights).mean() if weights is not None else elementwise.mean()
            self.policy.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
            if weights is not None:
                td = (target - q).detach().abs().squeeze(1)
                buffer.update_priorities(data.indices, td.cpu().numpy() + self.per_eps)  # type: ignore[union-attr]
            losses.append(loss.detach())
            q_means.append(q_all.detach().mean())
        self._n_updates += gradient_steps
        self.last_td_loss = float(torch.stack(losses).mean())
        self.last_q_value = float(torch.stack(q_means).mean())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", self.last_td_loss)
        self.logger.record("train/q_values", self.last_q_value)


def q_network_meta(net: DuelingQNetwork, env_id: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON metadata that lets :func:`load_q_network` rebuild ``net``."""
    arch = [m.out_features for m in net.value_net if isinstance(m, torch.nn.Linear)][:-1]
    config = {
        "env_id": env_id,
        "obs_shape": list(net.observation_space.shape),
        "n_actions": int(net.action_space.n),
        "net_arch": arch,
    }
    return {"kind": KIND, "config": config, **(extra or {})}


def save_q_network(
    directory: str | os.PathLike,
    net: DuelingQNetwork,
    env_id: str,
    dtype: torch.dtype = torch.float32,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a shareable Q-network checkpoint (``weights.safetensors`` in ``dtype`` + ``meta.json``)."""
    tensors = {k: v.to(dtype) for k, v in net.state_dict().items()}
    return save_checkpoint(directory, tensors, q_network_meta(net, env_id, extra))


def load_q_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[DuelingQNetwork, dict]:
    """Load a dueling Q-network from a heed checkpoint (a checkpoint dir, a run dir, or a shipped agent).

    Returns ``(net in eval mode, float32, on device; meta dict)``. Training checkpoints hold the
    online net under ``q_net.`` (and the target under ``q_net_target.``); shipped ones hold it bare.
    """
    ckpt = load_checkpoint(path, expect_kind=KIND)
    cfg = ckpt.config
    try:
        net = build_q_network(tuple(cfg["obs_shape"]), int(cfg["n_actions"]), list(cfg["net_arch"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise HeedError(f"checkpoint '{ckpt.path}' has an incomplete config ({exc})") from None
    tensors = ckpt.tensors
    if any(k.startswith("q_net.") for k in tensors):
        tensors = {k[len("q_net.") :]: v for k, v in tensors.items() if k.startswith("q_net.")}
    load_module_state(net, {k: v.float() for k, v in tensors.items()}, where=f"'{ckpt.path}'")
    net.set_training_mode(False)
    return net.to(device), ckpt.meta


def greedy_actions(net: DuelingQNetwork, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """epsilon-greedy actions ``[N]`` for a batch of observations ``[N, ...]``."""
    device = next(net.parameters()).device
    with torch.no_grad():
        q = net(torch.as_tensor(obs, device=device))
    actions = q.argmax(dim=1).cpu().numpy()
    explore = rng.random(len(actions)) < epsilon
    if explore.any():
        actions[explore] = rng.integers(0, q.shape[1], size=int(explore.sum()))
    return actions


class Game(NamedTuple):
    """One played game: its unclipped return, its length in agent steps, and (optionally) its frames."""

    total: float
    length: int
    frames: list


def play_atari(
    net: DuelingQNetwork,
    env_id: str,
    episodes: int,
    epsilon: float,
    seed: int,
    sticky_actions: float = 0.0,
    record_frames: int = 0,
) -> list[Game]:
    """Play full games (no episodic life, unclipped reward) epsilon-greedily.

    Game i is seeded with ``seed + i``; the first ``record_frames`` colour frames (210x160x3) are kept.
    """
    from heed.envs.atari import make_atari_env

    env = make_atari_env(env_id, training=False, sticky_actions=sticky_actions,
                         render_mode="rgb_array" if record_frames else None)
    rng = np.random.default_rng(seed)
    games, kept = [], 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total, length, done, frames = 0.0, 0, False, []
        while not done:
            if kept < record_frames:
                frames.append(env.render())
                kept += 1
            action = greedy_actions(net, obs[None], epsilon, rng)[0]
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            length += 1
            done = terminated or truncated
        games.append(Game(total, length, frames))
    env.close()
    return games


__all__ = [
    "DuelingDQN",
    "DuelingCnnPolicy",
    "DuelingMlpPolicy",
    "save_q_network",
    "load_q_network",
    "greedy_actions",
    "play_atari",
]
