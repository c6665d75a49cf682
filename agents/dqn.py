"""Dueling Double DQN: each mechanism once, used by both of heed's DQN shapes.

Mechanisms (one implementation each):

- the Double-DQN target (van Hasselt et al. 2016), :func:`td_targets`: the online net chooses, the
  target net scores, y = R + gamma^k (1 - done) Q_target(s', argmax_a Q_online(s', a));
- the update, :class:`DQNLearner`: importance-weighted Huber loss on Q(s, a) - y, Adam, gradient-norm
  clip, new priorities |y - Q(s, a)| + eps for prioritized replay (Schaul et al. 2016);
- the schedules, :func:`linear_schedule` (epsilon from 1 to its final value, the importance exponent
  beta from beta0 to 1) and :func:`target_update_due` with :func:`update_target` (hard copy every N steps,
  or Polyak averaging with tau < 1);
- the replay, :class:`heed.agents.replay.FrameReplayBuffer` (n-step, frame deduplication, priorities);
- the network, :class:`heed.agents.networks.DuelingQNetwork` (Wang et al. 2016).

The two shapes that use them:

- ``python scripts/train.py dqn`` (``agents/trainers/dqn.py``): a plain loop over ale-py's native
  vector env (or any discrete Gymnasium env), fast on a CPU;
- :class:`DuelingDQN`, a Stable-Baselines3 ``DQN`` (the one place heed subclasses SB3), for SB3
  users: ``DuelingDQN("CnnPolicy", env, prioritized=True, n_steps=3, frame_stack=4).learn(...)``,
  callbacks, ``.save()`` / ``.load()`` (SB3's zip pickles: trusted files only), ``evaluate_policy``.
  :meth:`DuelingDQN.from_checkpoint` loads any heed checkpoint (e.g. ``agents/pretrained/pong``).

heed's checkpoints for sharing are safetensors + JSON: :func:`save_q_network` / :func:`load_q_network`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import DQN
from stable_baselines3.dqn.policies import DQNPolicy

from heed.agents.common.checkpoint import checkpoint_meta, load_checkpoint, load_module_state, save_checkpoint
from heed.agents.common.errors import HeedError
from heed.agents.common.validate import Range, config_from_dict
from heed.agents.networks import DuelingQNetwork, NatureConv, build_q_network
from heed.agents.replay import FrameReplayBuffer, ReplaySample

KIND = "dueling-dqn"


# ---------------------------------------------------------------------------------- mechanisms
def linear_schedule(step: float, start: float, end: float, duration: float) -> float:
    """``start`` moving linearly to ``end`` over ``duration`` steps, then ``end`` (``end`` at once if duration <= 0)."""
    if duration <= 0:
        return float(end)
    return float(start + min(1.0, max(0.0, step / duration)) * (end - start))


def target_update_due(prev_step: int, step: int, interval: int) -> bool:
    """True when the step counter crossed a multiple of ``interval`` going from ``prev_step`` to ``step``."""
    return step // interval > prev_step // interval


def update_target(online: torch.nn.Module, target: torch.nn.Module, tau: float = 1.0) -> None:
    """theta_target <- tau theta_online + (1 - tau) theta_target (a hard copy for tau = 1); buffers are copied."""
    with torch.no_grad():
        for p, tp in zip(online.parameters(), target.parameters()):
            tp.copy_(p) if tau >= 1.0 else tp.lerp_(p, tau)
        for b, tb in zip(online.buffers(), target.buffers()):
            tb.copy_(b)


QFunction = Callable[[torch.Tensor], torch.Tensor]


def td_targets(
    online: QFunction,
    target: QFunction,
    rewards: torch.Tensor,
    next_obs: torch.Tensor,
    dones: torch.Tensor,
    discounts: torch.Tensor | float,
    double_q: bool = True,
) -> torch.Tensor:
    """y = R + gamma^k (1 - done) Q_target(s', a*), a* = argmax Q_online(s') (Double) or argmax Q_target.

    Shapes: rewards, dones, discounts ``[B, 1]``; next_obs ``[B, ...]``; returns ``[B, 1]`` (no grad).
    """
    with torch.no_grad():
        next_target = target(next_obs)
        chooser = online(next_obs) if double_q else next_target
        next_q = next_target.gather(1, chooser.argmax(dim=1, keepdim=True))
        return rewards + (1.0 - dones) * discounts * next_q


def adam_kwargs() -> dict[str, Any]:
    """Adam options heed adds: the fused kernel (one pass over all parameters) where torch has it.

    Same equations as the default loop over parameters (results differ only in float rounding,
    ~1e-6 after 50 steps on the Nature CNN), measured 7x faster per step on this CPU (2.7 ms against
    19 ms), which is a quarter of a DQN update here. torch >= 2.4 has it on the CPU.
    """
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    return {"fused": True} if (major, minor) >= (2, 4) else {}


def clip_grad_norm(parameters: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` with the same result, minus its no-op multiply on a CPU.

    g <- g * min(1, max_norm / (||g||_2 + 1e-6)). torch multiplies every gradient by the clamped
    coefficient even when it is exactly 1 (so as not to sync with a GPU): a pass over all 3.3M
    gradients of the Nature CNN, ~2 ms per update here. On a CPU, where reading the norm costs no
    sync, torch's own ``clip_grads_with_norm_`` runs only when the coefficient is below 1, so the
    gradients are bit-identical to torch's. Returns ||g||_2 (torch < 2.6: torch's function as is).
    """
    utils = torch.nn.utils
    if not hasattr(utils, "get_total_norm"):
        return utils.clip_grad_norm_(parameters, max_norm)
    norm = utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
    if norm.device.type != "cpu" or bool(max_norm / (norm + 1e-6) < 1.0):
        utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm


class UpdateStats(NamedTuple):
    """Detached scalars of one update (no host sync until read)."""

    loss: torch.Tensor
    q_mean: torch.Tensor


class DQNLearner:
    """The DQN update on a replay sample: Double-DQN targets, importance-weighted Huber loss, Adam.

    Args:
        q_net, q_target: online and target networks ``obs [B, ...] -> Q [B, A]``.
        optimizer: over ``q_net``'s parameters.
        double_q: Double-DQN targets (else the target net both chooses and scores).
        max_grad_norm: gradient-norm clip.
        per_eps: added to |TD error| for new priorities, so that no transition gets priority 0.
    """

    def __init__(self, q_net: torch.nn.Module, q_target: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 double_q: bool = True, max_grad_norm: float = 10.0, per_eps: float = 1e-6) -> None:
        self.q_net, self.q_target, self.optimizer = q_net, q_target, optimizer
        self.double_q, self.max_grad_norm, self.per_eps = double_q, max_grad_norm, per_eps
        self._params = list(q_net.parameters())
        self.n_updates = 0

    def learn(self, batch: ReplaySample) -> tuple[UpdateStats, torch.Tensor]:
        """One gradient step on ``batch``; returns the stats and |TD error| ``[B]``.

        Costs three network passes (target and online on s' without grad, online on s with grad), one
        backward and one Adam step. Image observations are converted to float once per batch
        (``prepare_obs``), not once per pass.
        """
        prepare = getattr(self.q_net, "prepare_obs", None)
        obs, next_obs = batch.observations, batch.next_observations
        if prepare is not None:
            obs, next_obs = prepare(obs), prepare(next_obs)
        target = td_targets(self.q_net, self.q_target, batch.rewards, next_obs, batch.dones, batch.discounts,
                            self.double_q)
        q_all = self.q_net(obs)  # [B, A]
        q = q_all.gather(1, batch.actions)  # [B, 1]
        elementwise = F.smooth_l1_loss(q, target, reduction="none")
        loss = (elementwise * batch.weights).mean() if batch.weights is not None else elementwise.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(self._params, self.max_grad_norm)
        self.optimizer.step()
        self.n_updates += 1
        return UpdateStats(loss.detach(), q_all.detach().mean()), (target - q).detach().abs().squeeze(1)

    def update(self, buffer: FrameReplayBuffer, batch_size: int, beta: float = 1.0) -> UpdateStats:
        """Sample ``batch_size`` transitions, learn from them, and refresh their priorities."""
        batch = buffer.sample(batch_size, beta)
        stats, td = self.learn(batch)
        if buffer.prioritized:
            buffer.update_priorities(batch.indices, td.cpu().numpy() + self.per_eps)
        return stats


# ---------------------------------------------------------------------------------- SB3 shape
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
    """SB3 ``DQN`` whose mechanisms are heed's: dueling net, Double-DQN targets, heed's replay and schedules.

    SB3's ``learn()`` collects the experience (so callbacks, VecEnvs and loggers work as usual);
    heed's :class:`FrameReplayBuffer` stores it, :class:`DQNLearner` does each gradient step,
    :func:`linear_schedule` sets epsilon and beta and :func:`update_target` syncs the target net.

    Args (beyond SB3's ``DQN``; ``n_steps`` is SB3's own and goes to heed's buffer):
        double_q: Double-DQN targets (default True).
        prioritized: proportional prioritized replay.
        per_alpha: priority exponent alpha.
        per_beta0: initial importance-sampling exponent, annealed linearly to 1 over ``learn()``.
        per_eps: added to |TD error| so that no transition gets priority 0.
        frame_stack: K > 1 when observations are stacks of K frames along axis 0 (heed's Atari envs:
            4): each frame is stored once. Leave 1 for any other observation.
        exploration_steps: steps over which epsilon falls to its final value (default: SB3's
            ``exploration_fraction`` of the ``learn()`` budget).
    """

    policy_aliases = {"MlpPolicy": DuelingMlpPolicy, "CnnPolicy": DuelingCnnPolicy}  # type: ignore[assignment]
    replay_buffer: FrameReplayBuffer  # type: ignore[assignment]

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
        frame_stack: int = 1,
        exploration_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("replay_buffer_class") is not None or kwargs.get("optimize_memory_usage"):
            raise HeedError("DuelingDQN keeps its replay in heed's FrameReplayBuffer (which stores each frame "
                            "once with frame_stack > 1): drop replay_buffer_class / optimize_memory_usage")
        self.double_q = double_q
        self.prioritized = prioritized
        self.per_alpha = per_alpha
        self.per_beta0 = per_beta0
        self.per_eps = per_eps
        self.frame_stack = frame_stack
        self.exploration_steps = exploration_steps
        self.last_td_loss: float | None = None  # of the latest train() call
        self.last_q_value: float | None = None
        policy_kwargs = dict(kwargs.pop("policy_kwargs", None) or {})
        policy_kwargs["optimizer_kwargs"] = {**adam_kwargs(), **policy_kwargs.get("optimizer_kwargs", {})}
        super().__init__(policy, env, *args, policy_kwargs=policy_kwargs, **kwargs)

    def _setup_model(self) -> None:
        space = self.observation_space
        self.replay_buffer = FrameReplayBuffer(
            self.buffer_size, self.n_envs, tuple(space.shape), space.dtype, frame_stack=self.frame_stack,
            n_steps=self.n_steps, gamma=self.gamma, device=self.device, prioritized=self.prioritized,
            alpha=self.per_alpha, seed=self.seed,
        )
        super()._setup_model()  # SB3 builds the policy (and keeps the buffer set above)
        self.learner = DQNLearner(self.q_net, self.q_net_target, self.policy.optimizer, self.double_q,
                                  self.max_grad_norm, self.per_eps)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "learner"]

    def _progress(self) -> float:
        """Fraction of the current ``learn()`` budget done (SB3's progress counter, read only)."""
        return 1.0 - float(self._current_progress_remaining)

    def _on_step(self) -> None:
        """After each vector step: target sync every ``target_update_interval`` steps, then epsilon."""
        step = self.num_timesteps
        if target_update_due(step - self.n_envs, step, self.target_update_interval):
            update_target(self.q_net, self.q_net_target, self.tau)
        if self.exploration_steps is not None:
            duration = float(self.exploration_steps)
            done = float(step)
        else:  # SB3's meaning: a fraction of this learn() call's budget
            duration, done = self.exploration_fraction, self._progress()
        self.exploration_rate = linear_schedule(done, self.exploration_initial_eps, self.exploration_final_eps,
                                                duration)
        self.logger.record("rollout/exploration_rate", self.exploration_rate)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """``gradient_steps`` updates of :class:`DQNLearner` (SB3 calls this from ``learn()``)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        beta = linear_schedule(self._progress(), self.per_beta0, 1.0, 1.0)
        stats = [self.learner.update(self.replay_buffer, batch_size, beta) for _ in range(gradient_steps)]
        self._n_updates += gradient_steps  # SB3's contract for train(): its logger reports this counter
        self.last_td_loss = float(torch.stack([s.loss for s in stats]).mean())
        self.last_q_value = float(torch.stack([s.q_mean for s in stats]).mean())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", self.last_td_loss)
        self.logger.record("train/q_values", self.last_q_value)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, env: Any = None, device: str | torch.device = "auto", **kwargs: Any
    ) -> DuelingDQN:
        """A ``DuelingDQN`` holding the network of a heed checkpoint (shipped agent, checkpoint or run dir).

        ``env`` defaults to the checkpoint's own game with heed's evaluation wrappers (full games,
        unclipped reward). The result works with SB3's tools, e.g.
        ``evaluate_policy(DuelingDQN.from_checkpoint("agents/pretrained/pong"), model.get_env())``;
        ``kwargs`` go to the constructor (the replay defaults to 10,000 transitions).
        """
        net, meta = load_q_network(path)
        cfg = meta["config"]
        if env is None:
            env = make_eval_env(cfg["env_id"])
        obs_space = getattr(env, "observation_space", None)
        if obs_space is None or tuple(obs_space.shape) != tuple(cfg["obs_shape"]) or \
                int(getattr(env.action_space, "n", -1)) != int(cfg["n_actions"]):
            raise HeedError(f"the env does not fit checkpoint '{path}': it wants observations "
                            f"{tuple(cfg['obs_shape'])} and {cfg['n_actions']} actions")
        image = len(cfg["obs_shape"]) == 3
        kwargs.setdefault("buffer_size", 10_000)
        kwargs.setdefault("frame_stack", int(cfg["obs_shape"][0]) if image else 1)
        policy_kwargs = {"net_arch": list(cfg["net_arch"]), **kwargs.pop("policy_kwargs", {})}
        model = cls("CnnPolicy" if image else "MlpPolicy", env, policy_kwargs=policy_kwargs, device=device, **kwargs)
        state = net.state_dict()
        model.q_net.load_state_dict(state)
        model.q_net_target.load_state_dict(state)
        return model


# ---------------------------------------------------------------------------------- checkpoints and play
def q_network_meta(net: DuelingQNetwork, env_id: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON metadata that lets :func:`load_q_network` rebuild ``net``: the one checkpoint meta schema
    (:func:`heed.agents.common.checkpoint.checkpoint_meta`) with the network's ``config`` (env id,
    observation shape, actions, stream widths); ``extra`` may set ``counters``, ``step``, ``run_id`` and more."""
    arch = [m.out_features for m in net.value_net if isinstance(m, torch.nn.Linear)][:-1]
    config = {
        "env_id": env_id,
        "obs_shape": list(net.observation_space.shape),
        "n_actions": int(net.action_space.n),
        "net_arch": arch,
    }
    return checkpoint_meta(KIND, config, **(extra or {}))


@dataclass(frozen=True)
class QNetworkConfig:
    """What a checkpoint's ``config`` says about its Q-network, with the sizes a loader accepts."""

    env_id: str
    obs_shape: Annotated[tuple[int, ...], Range(1, 4096)]
    n_actions: Annotated[int, Range(1, 4096)]
    net_arch: Annotated[tuple[int, ...], Range(1, 65_536)] = (512,)


#: the most input values a loaded Q-network may take (an Atari stack is 4 x 84 x 84 = 28,224)
MAX_OBS_VALUES = 2**22


def q_network_config(values: dict[str, Any], source: str = "the checkpoint's network config") -> QNetworkConfig:
    """``values`` checked for types and sizes before a network is built from them (one line if not)."""
    spec = config_from_dict(QNetworkConfig, values, source, ignore_unknown=True)
    if len(spec.obs_shape) not in (1, 3) or math.prod(spec.obs_shape) > MAX_OBS_VALUES or len(spec.net_arch) > 16:
        raise HeedError(f"{source}: observation shape {list(spec.obs_shape)} or net_arch {list(spec.net_arch)} "
                        "is not one a dueling Q-network is built for")
    return spec


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
    spec = q_network_config(ckpt.config, f"checkpoint '{ckpt.path}': its network config")
    net = build_q_network(spec.obs_shape, spec.n_actions, list(spec.net_arch))
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


def is_atari(env_id: str) -> bool:
    """True for ale-py ids (``ALE/Pong-v5``); heed's checkpoints store the resolved id."""
    return env_id.startswith("ALE/")


def make_eval_env(env_id: str, render_mode: str | None = None, sticky_actions: float = 0.0) -> gym.Env:
    """The env a checkpoint is evaluated on: Atari with heed's preprocessing (full games, unclipped
    reward), any other id through ``gym.make``."""
    if is_atari(env_id):
        from heed.envs.atari import make_atari_env

        return make_atari_env(env_id, training=False, sticky_actions=sticky_actions, render_mode=render_mode)
    return gym.make(env_id, **({"render_mode": render_mode} if render_mode else {}))


def playback_fps(env_id: str) -> float:
    """Frames per second at which recorded agent steps play at game speed.

    Atari: the emulator's 60 Hz over the frame skip of 4 = 15 agent steps per second; other envs:
    their ``render_fps`` metadata (30 if absent).
    """
    if is_atari(env_id):
        return 60.0 / 4
    env = gym.make(env_id)
    fps = env.metadata.get("render_fps") or 30
    env.close()
    return float(fps)


def play_games(
    net: DuelingQNetwork,
    env_id: str,
    episodes: int,
    epsilon: float,
    seed: int,
    sticky_actions: float = 0.0,
    record_frames: int = 0,
) -> list[Game]:
    """Play full games (Atari: all lives, unclipped reward) epsilon-greedily.

    Game i is seeded with ``seed + i``; the first ``record_frames`` rendered frames are kept
    (Atari: 210x160x3 colour).
    """
    env = make_eval_env(env_id, "rgb_array" if record_frames else None, sticky_actions)
    rng = np.random.default_rng(seed)
    games, kept = [], 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total, length, done, frames = 0.0, 0, False, []
        while not done:
            if kept < record_frames:
                frames.append(env.render())
                kept += 1
            action = greedy_actions(net, np.asarray(obs)[None], epsilon, rng)[0]
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            length += 1
            done = terminated or truncated
        games.append(Game(total, length, frames))
    env.close()
    return games


__all__ = [
    "DQNLearner",
    "DuelingDQN",
    "adam_kwargs",
    "clip_grad_norm",
    "DuelingCnnPolicy",
    "DuelingMlpPolicy",
    "linear_schedule",
    "target_update_due",
    "td_targets",
    "update_target",
    "save_q_network",
    "load_q_network",
    "greedy_actions",
    "make_eval_env",
    "play_games",
    "playback_fps",
]
