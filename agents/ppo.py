"""Recurrent PPO over any heed core (Schulman et al. 2017), with Stable-Baselines3's conventions.

Envs are SB3 ``VecEnv`` s (``DummyVecEnv`` + ``VecMonitor``, optionally ``VecNormalize`` for
observation and reward normalisation); :meth:`RecurrentPPO.predict` has SB3's signature with
``state`` and ``episode_start``; :meth:`RecurrentPPO.save` / :meth:`RecurrentPPO.load` use heed's
safetensors+JSON checkpoints (no pickle).

Rollout storage keeps every step's full core state (any NamedTuple), before the episode-start reset,
so a training sequence starting at step t0 is replayed exactly as it ran:
``core.unroll(obs[:, t0:t1], states[:, t0], resets=episode_starts[:, t0:t1])`` (truncated BPTT of
``seq_len`` steps; with the default ``seq_len = n_steps`` the whole rollout of each env is one sequence).

Losses (per minibatch of sequences, ``r_t = pi(a_t|.) / pi_old(a_t|.)``, advantages by GAE):

    L = -mean(min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)) + c_v mean((V_t - R_t)^2) / 2 - c_e mean(H_t) + L_aux

``L_aux`` is the core's auxiliary loss on the minibatch's unroll (ACT's ponder cost, 0 for other cores).

    A_t = sum_k (gamma lambda)^k delta_{t+k},  delta_t = r_t + gamma V_{t+1} (1 - done_t) - V_t

A truncated (time-limit) episode is bootstrapped: its last reward gets ``+ gamma V(final obs)``.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

import numpy as np
import torch
from torch import nn

from heed.agents.common.checkpoint import (
    Checkpoint,
    checkpoint_meta,
    load_checkpoint,
    load_module_state,
    restore_optimizer,
    save_checkpoint,
)
from heed.agents.common.errors import HeedError
from heed.agents.common.validate import (
    NonNegative,
    Positive,
    Range,
    UnitInterval,
    config_from_dict,
    validate,
)
from heed.agents.cores.base import State, detach_state, map_state
from heed.agents.recurrent_policy import (
    RecurrentActorCritic,
    greedy_actions,
    log_prob_entropy,
    sample_actions,
)


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters (SB3's names where they exist), with the ranges a checkpoint's copy is checked against."""

    n_steps: Annotated[int, Range(1, 65_536)] = 128
    n_epochs: Annotated[int, Range(1, 1000)] = 4
    n_minibatches: Annotated[int, Range(1, 1_000_000)] = 4
    seq_len: Annotated[int, NonNegative] = 0  # 0: the whole rollout of an env is one sequence
    learning_rate: Annotated[float, Positive] = 1e-3
    anneal_lr: bool = False
    gamma: Annotated[float, UnitInterval] = 0.99
    gae_lambda: Annotated[float, UnitInterval] = 0.95
    clip_range: Annotated[float, Positive] = 0.2
    ent_coef: float = 0.01  # any finite weight
    vf_coef: Annotated[float, NonNegative] = 0.5
    max_grad_norm: Annotated[float, Positive] = 0.5
    normalize_advantage: bool = True
    target_kl: Annotated[float, NonNegative] = 0.0  # 0: no early stop


@dataclass(frozen=True)
class PolicySpec:
    """What a checkpoint stores to rebuild a :class:`RecurrentActorCritic` (checked before it is built)."""

    obs_dim: Annotated[int, Range(1, 1_000_000)]
    n_actions: Annotated[int, Range(1, 65_536)]
    core: dict
    action_kind: Literal["discrete", "multibinary"] = "discrete"


class RolloutStorage:
    """``n_envs x n_steps`` transitions, batch-first (``[N, T, ...]``), with each step's core state.

    ``states`` mirrors the core's state NamedTuple with one ``[N, T, ...]`` buffer per leaf:
    ``state_at(t)`` returns exactly what :meth:`add` stored at step t.
    """

    def __init__(
        self, n_envs: int, n_steps: int, obs_dim: int, state_example: State, device: torch.device,
        action_shape: tuple[int, ...] = (), action_dtype: torch.dtype = torch.long,
    ) -> None:
        N, T = n_envs, n_steps
        self.n_envs, self.n_steps = N, T
        def z(*shape, dtype=torch.float32):
            return torch.zeros(*shape, dtype=dtype, device=device)
        self.obs = z(N, T, obs_dim)
        self.actions = z(N, T, *action_shape, dtype=action_dtype)
        self.log_probs, self.values, self.rewards, self.dones = z(N, T), z(N, T), z(N, T), z(N, T)
        self.episode_starts = z(N, T, dtype=torch.bool)
        self.advantages, self.returns = z(N, T), z(N, T)
        self.states = map_state(lambda s: s.new_zeros((N, T) + tuple(s.shape[1:])).to(device), state_example)

    def add(
        self, t: int, obs: torch.Tensor, state: State, episode_start: torch.Tensor, action: torch.Tensor,
        log_prob: torch.Tensor, value: torch.Tensor, reward: torch.Tensor, done: torch.Tensor,
    ) -> None:
        """Store step t: ``state`` is the state BEFORE the reset of ``episode_start`` is applied."""
        self.obs[:, t] = obs
        map_state(lambda buf, s: buf[:, t].copy_(s.detach()), self.states, state)
        self.episode_starts[:, t] = episode_start
        self.actions[:, t], self.log_probs[:, t], self.values[:, t] = action, log_prob, value
        self.rewards[:, t], self.dones[:, t] = reward, done

    def state_at(self, t: int | slice | torch.Tensor, rows: torch.Tensor | slice = slice(None)) -> State:
        """The stored state at step(s) t for env rows ``rows``."""
        return map_state(lambda buf: buf[rows, t], self.states)

    def compute_gae(self, last_value: torch.Tensor, gamma: float, lam: float) -> None:
        """Fill ``advantages`` and ``returns = advantages + values`` (``last_value``: V of the next obs ``[N]``)."""
        gae = torch.zeros_like(last_value)
        next_value = last_value
        for t in reversed(range(self.n_steps)):
            live = 1.0 - self.dones[:, t]
            delta = self.rewards[:, t] + gamma * next_value * live - self.values[:, t]
            gae = delta + gamma * lam * live * gae
            self.advantages[:, t] = gae
            next_value = self.values[:, t]
        self.returns = self.advantages + self.values

    def minibatches(self, seq_len: int, n_minibatches: int, generator: torch.Generator):
        """Yield dicts of ``[b, L, ...]`` sequences (``L = seq_len``) and their start states, shuffled."""
        L = seq_len or self.n_steps
        if self.n_steps % L:
            raise ValueError(f"seq_len {L} must divide n_steps {self.n_steps}")
        starts = torch.arange(0, self.n_steps, L)
        pairs = torch.cartesian_prod(torch.arange(self.n_envs), starts)  # [S, 2] (env, t0)
        order = pairs[torch.randperm(len(pairs), generator=generator)]
        for chunk in order.chunk(min(n_minibatches, len(order))):
            env, t0 = chunk[:, 0], chunk[:, 1]
            idx = t0.unsqueeze(1) + torch.arange(L)  # [b, L]
            rows = env.unsqueeze(1)
            yield {
                "obs": self.obs[rows, idx], "actions": self.actions[rows, idx], "log_probs": self.log_probs[rows, idx],
                "values": self.values[rows, idx], "advantages": self.advantages[rows, idx],
                "returns": self.returns[rows, idx], "episode_starts": self.episode_starts[rows, idx],
                "state": self.state_at(t0, env),
            }


def _to_tensor(x: np.ndarray, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


class RecurrentPPO:
    """Recurrent PPO on an SB3 ``VecEnv`` with ``Discrete`` or ``MultiBinary`` actions.

    Args:
        policy: a :class:`RecurrentActorCritic`.
        env: a ``VecEnv`` (``None`` for a loaded model used only for :meth:`predict`).
        cfg: :class:`PPOConfig`.
        device: where the policy lives.
        seed: seeds the minibatch shuffling and action sampling.
    """

    def __init__(
        self, policy: RecurrentActorCritic, env: Any, cfg: PPOConfig = PPOConfig(), device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        validate(cfg)  # NaN, inf and out-of-range hyperparameters: one line
        self.device = torch.device(device)
        self.policy = policy.to(self.device)
        self.cfg = cfg
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.learning_rate, eps=1e-5)
        self.generator = torch.Generator().manual_seed(seed)
        self.num_timesteps = 0
        self.iterations = 0
        self.ep_info: deque[dict[str, float]] = deque(maxlen=100)
        self.env = None
        if env is not None:
            self.set_env(env)

    # -- environment -------------------------------------------------------------------------------
    def set_env(self, env: Any) -> None:
        """Attach a VecEnv and reset it (episode starts everywhere)."""
        self.env = env
        n = env.num_envs
        self._last_obs = _to_tensor(env.reset(), self.device)
        self._last_state = self.policy.initial_state(n)
        self._last_starts = torch.ones(n, dtype=torch.bool, device=self.device)
        bits = self.policy.action_kind == "multibinary"
        self.storage = RolloutStorage(
            n, self.cfg.n_steps, self.policy.obs_dim, detach_state(self._last_state), self.device,
            action_shape=(self.policy.n_actions,) if bits else (), action_dtype=torch.float32 if bits else torch.long,
        )

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        return sample_actions(logits, self.policy.action_kind, self.generator)

    # -- rollout ---------------------------------------------------------------------------------
    @torch.no_grad()
    def collect_rollout(self) -> None:
        """Run ``n_steps`` in every env, then compute GAE."""
        env, st = self.env, self.storage
        state, obs, starts = self._last_state, self._last_obs, self._last_starts
        for t in range(self.cfg.n_steps):
            out = self.policy.step(obs, state, starts)
            action = self._sample(out.logits)
            log_prob, _ = log_prob_entropy(out.logits, action, self.policy.action_kind)
            next_obs, reward, done, infos = env.step(action.cpu().numpy())
            reward = _to_tensor(reward, self.device)
            for i, info in enumerate(infos):
                if done[i] and info.get("TimeLimit.truncated", False) and info.get("terminal_observation") is not None:
                    final = np.asarray(info["terminal_observation"], dtype=np.float32)[None]  # VecNormalize did it
                    one = map_state(lambda s, i=i: s[i : i + 1], out.state)
                    zero = torch.zeros(1, dtype=torch.bool, device=self.device)
                    reward[i] += self.cfg.gamma * self.policy.step(_to_tensor(final, self.device), one, zero).values[0]
                if "episode" in info:
                    self.ep_info.append({"r": info["episode"]["r"], "l": info["episode"]["l"],
                                         **({"s": float(info["is_success"])} if "is_success" in info else {})})
            done_t = _to_tensor(done, self.device)
            st.add(t, obs, state, starts, action, log_prob, out.values, reward, done_t)
            state, obs, starts = out.state, _to_tensor(next_obs, self.device), done_t.bool()
        last_value = self.policy.step(obs, state, starts).values
        st.compute_gae(last_value, self.cfg.gamma, self.cfg.gae_lambda)
        self._last_state, self._last_obs, self._last_starts = state, obs, starts
        self.num_timesteps += self.cfg.n_steps * env.num_envs

    def _normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        normalize = getattr(self.env, "normalize_obs", None)
        return normalize(obs) if normalize is not None else obs

    # -- update ----------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        """``n_epochs`` passes of minibatch updates over the stored rollout; returns SB3-style stats."""
        cfg, policy = self.cfg, self.policy
        stats: dict[str, list[float]] = {k: [] for k in ("policy_gradient_loss", "value_loss", "entropy_loss",
                                                         "approx_kl", "clip_fraction", "aux_loss")}
        stop = False
        for _ in range(cfg.n_epochs):
            for mb in self.storage.minibatches(cfg.seq_len, cfg.n_minibatches, self.generator):
                out = policy.unroll(mb["obs"], mb["state"], mb["episode_starts"])
                logp, entropy = log_prob_entropy(out.logits, mb["actions"], policy.action_kind)  # [b, L] each
                adv = mb["advantages"]
                if cfg.normalize_advantage and adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                log_ratio = logp - mb["log_probs"]
                ratio = log_ratio.exp()
                pg_loss = -torch.min(ratio * adv, ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range) * adv).mean()
                v_loss = 0.5 * (out.values - mb["returns"]).pow(2).mean()
                ent = entropy.mean()
                aux = policy.aux_loss(out.attention)
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * ent + aux
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean().item()
                    stats["approx_kl"].append(approx_kl)
                    stats["clip_fraction"].append(((ratio - 1).abs() > cfg.clip_range).float().mean().item())
                stats["policy_gradient_loss"].append(pg_loss.item())
                stats["value_loss"].append(v_loss.item())
                stats["entropy_loss"].append(-ent.item())
                stats["aux_loss"].append(aux.item())
                if cfg.target_kl and approx_kl > 1.5 * cfg.target_kl:
                    stop = True
                    break
            if stop:
                break
        out = {k: float(np.mean(v)) for k, v in stats.items() if v}
        values, returns = self.storage.values.flatten(), self.storage.returns.flatten()
        var = returns.var().item()
        out["explained_variance"] = float("nan") if var == 0 else 1.0 - (returns - values).var().item() / var
        return out

    def learn(
        self, total_timesteps: int, callback: Callable[[RecurrentPPO, dict[str, float]], bool | None] | None = None
    ) -> RecurrentPPO:
        """Collect and train until ``num_timesteps >= total_timesteps`` (SB3 counts env steps over all envs).

        ``callback(model, stats)`` runs after every iteration; returning ``False`` stops training.
        An interrupt (Ctrl-C, or SIGTERM turned into one) inside an iteration puts the model back as
        the last completed iteration left it (weights, optimizer, counters, generator, normalisation
        statistics) before it propagates, so a checkpoint written then never counts a rollout that
        was not trained on.
        """
        start_steps, start = self.num_timesteps, time.perf_counter()
        while self.num_timesteps < total_timesteps:
            if self.cfg.anneal_lr:
                frac = 1.0 - self.num_timesteps / max(total_timesteps, 1)
                for group in self.optimizer.param_groups:
                    group["lr"] = frac * self.cfg.learning_rate
            completed = self._snapshot()
            try:
                self.collect_rollout()
                stats = self.train()
            except KeyboardInterrupt:
                self._restore(completed)
                raise
            self.iterations += 1
            stats["fps"] = (self.num_timesteps - start_steps) / max(time.perf_counter() - start, 1e-9)
            stats.update(self.episode_stats())
            if callback is not None and callback(self, stats) is False:
                break
        return self

    def _snapshot(self) -> dict[str, Any]:
        """Everything a checkpoint holds, copied (the state of the last completed iteration)."""
        return {"policy": {k: v.detach().clone() for k, v in self.policy.state_dict().items()},
                "optimizer": copy.deepcopy(self.optimizer.state_dict()), "generator": self.generator.get_state(),
                "normalizer": normalizer_tensors(self.env), "num_timesteps": self.num_timesteps}

    def _restore(self, snapshot: dict[str, Any]) -> None:
        self.policy.load_state_dict(snapshot["policy"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.generator.set_state(snapshot["generator"])
        restore_normalizer(self.env, snapshot["normalizer"])
        self.num_timesteps = snapshot["num_timesteps"]

    def episode_stats(self) -> dict[str, float]:
        """Means over the last 100 episodes: ``ep_rew_mean``, ``ep_len_mean``, ``success_rate``."""
        if not self.ep_info:
            return {}
        out = {"ep_rew_mean": float(np.mean([e["r"] for e in self.ep_info])),
               "ep_len_mean": float(np.mean([e["l"] for e in self.ep_info]))}
        succ = [e["s"] for e in self.ep_info if "s" in e]
        if succ:
            out["success_rate"] = float(np.mean(succ))
        return out

    # -- acting ----------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(
        self, observation: np.ndarray, state: State | None = None, episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, State]:
        """SB3's recurrent ``predict``: actions ``[N]`` for observations ``[N, D]`` and the next state.

        Observations are raw; a ``VecNormalize`` env (if attached) normalises them first.
        """
        obs = _to_tensor(self._normalize_obs(np.asarray(observation, dtype=np.float32)), self.device)
        n = obs.shape[0]
        state = self.policy.initial_state(n) if state is None else state
        starts = torch.zeros(n, dtype=torch.bool) if episode_start is None else _to_tensor(episode_start, "cpu", torch.bool)
        out = self.policy.step(obs, state, starts.to(self.device))
        action = greedy_actions(out.logits, self.policy.action_kind) if deterministic else self._sample(out.logits)
        return action.cpu().numpy(), out.state

    # -- save / load -----------------------------------------------------------------------------
    def checkpoint_payload(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors (policy + normalisation statistics) and JSON meta for a heed checkpoint."""
        tensors = {f"policy.{k}": v for k, v in self.policy.state_dict().items()}
        tensors.update(normalizer_tensors(self.env))
        tensors["rng.generator"] = self.generator.get_state()
        meta = checkpoint_meta("ppo", {"ppo": asdict(self.cfg), "policy": self.policy.kwargs()},
                               {"num_timesteps": self.num_timesteps, "iterations": self.iterations},
                               step=self.num_timesteps)
        return tensors, meta

    def save(self, path: str) -> None:
        """Write a safetensors+JSON checkpoint directory (policy, optimizer, normalisation, counters)."""
        tensors, meta = self.checkpoint_payload()
        save_checkpoint(path, tensors, meta, self.optimizer)

    @classmethod
    def load(cls, path: str, env: Any = None, device: str | torch.device = "cpu") -> RecurrentPPO:
        """Rebuild a model from :meth:`save` (or a run dir: its latest checkpoint); ``env`` is optional."""
        return cls.from_checkpoint(load_checkpoint(path, expect_kind="ppo"), env, device)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, env: Any = None, device: str | torch.device = "cpu") -> RecurrentPPO:
        """Rebuild a model from a loaded checkpoint; the stored configs are checked before anything is built."""
        where = f"checkpoint '{ckpt.path}'"
        cfg = config_from_dict(PPOConfig, ckpt.config.get("ppo", {}), f"{where}: ppo")
        spec = config_from_dict(PolicySpec, ckpt.config.get("policy", {}), f"{where}: policy")
        policy = RecurrentActorCritic(spec.obs_dim, spec.n_actions, spec.core, spec.action_kind)
        policy_tensors = {k[len("policy."):]: v for k, v in ckpt.tensors.items() if k.startswith("policy.")}
        load_module_state(policy, policy_tensors, where=str(ckpt.path))
        model = cls(policy, None, cfg, device)
        if ckpt.optimizer_tensors is not None and "optimizer" in ckpt.meta:
            restore_optimizer(model.optimizer, ckpt.optimizer_tensors, ckpt.meta["optimizer"])
        try:
            if "rng.generator" in ckpt.tensors:
                model.generator.set_state(ckpt.tensors["rng.generator"])
            model.num_timesteps = int(ckpt.counters.get("num_timesteps", 0))
            model.iterations = int(ckpt.counters.get("iterations", 0))
        except (TypeError, ValueError, RuntimeError):
            raise HeedError(f"{where} holds damaged counters or a damaged generator state") from None
        model.saved_normalizer = {k: v for k, v in ckpt.tensors.items() if k.startswith(("obs_rms.", "ret_rms."))}
        if env is not None:
            model.attach_env(env)
        return model

    def attach_env(self, env: Any) -> None:
        """Restore the loaded normalisation statistics into ``env`` and attach it (without updating them)."""
        restore_normalizer(env, getattr(self, "saved_normalizer", {}))
        training = getattr(env, "training", None)
        if training is not None:
            env.training = False  # the first reset must not move the restored statistics
        self.set_env(env)
        if training is not None:
            env.training = training


def normalizer_tensors(env: Any) -> dict[str, torch.Tensor]:
    """A ``VecNormalize`` env's running statistics as float64 tensors (empty for other envs)."""
    out: dict[str, torch.Tensor] = {}
    for name in ("obs_rms", "ret_rms"):
        rms = getattr(env, name, None)
        if rms is None or not hasattr(rms, "mean"):
            continue
        out[f"{name}.mean"] = torch.as_tensor(np.asarray(rms.mean, dtype=np.float64)).reshape(-1)
        out[f"{name}.var"] = torch.as_tensor(np.asarray(rms.var, dtype=np.float64)).reshape(-1)
        out[f"{name}.count"] = torch.tensor([float(rms.count)], dtype=torch.float64)
    return out


def restore_normalizer(env: Any, tensors: dict[str, torch.Tensor]) -> None:
    """Put saved running statistics back into a ``VecNormalize`` env (no-op for other envs)."""
    for name in ("obs_rms", "ret_rms"):
        rms = getattr(env, name, None)
        if rms is None or f"{name}.mean" not in tensors:
            continue
        rms.mean = tensors[f"{name}.mean"].numpy().reshape(np.shape(rms.mean)).copy()
        rms.var = tensors[f"{name}.var"].numpy().reshape(np.shape(rms.var)).copy()
        rms.count = float(tensors[f"{name}.count"][0])
