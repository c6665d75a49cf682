"""Dueling Double DQN, heed's fast training loop: Atari, or any Gymnasium env with discrete actions and vector observations.

Every mechanism comes from :mod:`heed.agents.dqn` (the update, the Double-DQN target, the epsilon
and beta schedules, the target sync) and :mod:`heed.agents.replay` (n-step prioritized replay that
stores each frame once), exactly as :class:`heed.agents.dqn.DuelingDQN` uses them under SB3's
``learn()``. What this loop adds is what is cheap on a CPU: ale-py's native vector env stepping
``num_envs`` games in C++ threads, one batched forward pass for the actions of all games, and
channels-last convolutions.

    python scripts/train.py dqn --env ALE/Pong-v5 --total-steps 2000000 --seed 1 --device auto --run-dir runs/pong
    python scripts/train.py dqn --resume runs/pong --total-steps 3000000
    python scripts/train.py dqn --env CartPole-v1 --total-steps 30000 --learning-starts 1000 --exploration-steps 10000 \
        --target-update-interval 500 --learning-rate 1e-3 --train-freq 1 --run-dir runs/cartpole

Steps are agent steps (Atari: one action = 4 emulator frames). ``--resume`` restores the networks,
the optimizer, the step counter, the schedules and the TensorBoard curves; the replay buffer is
not saved (Atari: ~0.7 GB): a resumed run refills ``learning_starts`` steps with its current
epsilon-greedy policy before updates continue.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from heed.agents.common.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_module_state,
    restore_optimizer,
    save_run_checkpoint,
)
from heed.agents.common.device import resolve_device
from heed.agents.common.errors import HeedError, require, suggest
from heed.agents.common.run import config_to_dict, default_run_dir, open_writer, prepare_run_dir, save_config
from heed.agents.dqn import (
    KIND,
    DQNLearner,
    adam_kwargs,
    greedy_actions,
    is_atari,
    linear_schedule,
    play_games,
    q_network_meta,
    save_q_network,
    target_update_due,
    update_target,
)
from heed.agents.networks import build_q_network
from heed.agents.replay import FrameReplayBuffer

DEFAULT_TOTAL_STEPS = 2_000_000
ATARI_EPISODE_STEPS = 27_000  # 30 minutes of play


@dataclass(frozen=True)
class Config:
    """Dueling Double DQN on an Atari game (DeepMind preprocessing, ale-py vector env) or any discrete Gymnasium env."""

    env: str = "ALE/Pong-v5"
    """An Atari id (ALE/Pong-v5, ALE/Breakout-v5: Nature CNN on 4 stacked 84x84 frames) or any Gymnasium id
    with a Discrete action space and vector (Box) observations, e.g. CartPole-v1 (an MLP)."""
    total_steps: int | None = None
    """Agent steps to train for (Atari: each is 4 frames); default 2,000,000. With --resume, the new total."""
    seed: int = 1
    """Seed for the envs, the network initialisation and exploration."""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N."""
    run_dir: Path | None = None
    """Where TensorBoard events, config.json and checkpoints go (default runs/dqn__<env>__<seed>__<time>)."""
    resume: Path | None = None
    """Continue the run in this folder from its last checkpoint (options other than --total-steps and --device are taken from the run)."""
    num_envs: int = 4
    """Environments stepped in parallel."""
    buffer_size: int = 100_000
    """Replay capacity in transitions."""
    learning_starts: int = 20_000
    """Agent steps of experience before the first update."""
    batch_size: int = 32
    """Minibatch size."""
    learning_rate: float = 1e-4
    """Adam learning rate."""
    adam_eps: float = 1.5e-4
    """Adam epsilon."""
    gamma: float = 0.99
    """Discount."""
    n_steps: int = 3
    """n of the n-step return."""
    train_freq: int = 4
    """Agent steps per gradient step."""
    target_update_interval: int = 2_000
    """Agent steps between hard target-network updates."""
    exploration_steps: int = 250_000
    """Agent steps over which epsilon falls linearly from 1 to --final-epsilon."""
    final_epsilon: float = 0.01
    """Epsilon after the exploration phase."""
    double_q: bool = True
    """Double-DQN targets (online net chooses, target net scores)."""
    prioritized: bool = False
    """Proportional prioritized replay."""
    per_alpha: float = 0.5
    """Priority exponent alpha."""
    per_beta0: float = 0.4
    """Initial importance-sampling exponent (annealed to 1)."""
    max_grad_norm: float = 10.0
    """Gradient-norm clip."""
    sticky_actions: float = 0.0
    """ALE repeat-action probability (0 as in the Nature DQN); Atari only."""
    max_episode_steps: int | None = None
    """Agent steps before an episode is cut (default: 27,000 = 30 minutes for Atari, the env's own limit otherwise)."""
    log_interval: int = 1000
    """Agent steps between TensorBoard scalars (sps, epsilon, loss, Q)."""
    eval_interval: int = 50_000
    """Agent steps between evaluations (0: only at the end)."""
    eval_episodes: int = 3
    """Full games per evaluation (unclipped reward)."""
    eval_epsilon: float = 0.01
    """Epsilon during evaluation."""
    checkpoint_interval: int = 50_000
    """Agent steps between checkpoints."""
    torch_threads: int = 0
    """torch CPU threads (0: auto = half the cores not busy with other work, 1 to 4; more threads than free
    cores make each update up to 10x slower)."""
    channels_last: bool = True
    """Channels-last convolutions (measured ~20% faster updates on this CPU)."""
    progress: bool = True
    """Show a progress bar."""


def validate(cfg: Config) -> None:
    """One-line errors for nonsense values (NaN and inf included)."""
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        if isinstance(value, float):
            require(math.isfinite(value), f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
    if cfg.total_steps is not None:
        require(cfg.total_steps > 0, f"--total-steps must be positive, got {cfg.total_steps}")
    for name in ("num_envs", "buffer_size", "batch_size", "n_steps", "train_freq", "target_update_interval",
                 "eval_episodes", "log_interval"):
        require(getattr(cfg, name) > 0, f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    for name in ("learning_starts", "exploration_steps", "eval_interval", "checkpoint_interval", "torch_threads"):
        require(getattr(cfg, name) >= 0, f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    if cfg.max_episode_steps is not None:
        require(cfg.max_episode_steps > 0, f"--max-episode-steps must be positive, got {cfg.max_episode_steps}")
    for name in ("learning_rate", "adam_eps", "max_grad_norm"):
        require(getattr(cfg, name) > 0, f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    require(0 < cfg.gamma <= 1, f"--gamma must be in (0, 1], got {cfg.gamma}")
    require(cfg.per_alpha >= 0, f"--per-alpha must be >= 0, got {cfg.per_alpha}")
    for name in ("final_epsilon", "eval_epsilon", "sticky_actions", "per_beta0"):
        require(0 <= getattr(cfg, name) <= 1, f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(cfg, name)}")
    require(cfg.buffer_size >= cfg.batch_size, "--buffer-size must be at least --batch-size")


def auto_threads() -> int:
    """torch threads that never outnumber the free cores: half the cores not busy with other work, 1 to 4.

    Two threads on a machine where another process holds one of two cores make every update ~10x
    slower (the OpenMP threads wait for each other), so the default stays at or below the free cores.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(4, int(cores - busy) // 2))


def resolve_env_id(env_id: str) -> str:
    """A registered Gymnasium id; Atari short forms (``Pong``, ``PongNoFrameskip-v4``) become ``ALE/<Game>-v5``."""
    from heed.envs.atari import check_atari_id, register

    register()
    others = [k for k, spec in gym.registry.items() if "ale_py" not in str(spec.entry_point)]
    if env_id in others:
        return env_id
    if env_id in gym.registry or env_id.startswith("ALE/") or not suggest(env_id, others):
        return check_atari_id(env_id)  # an Atari id or short form, or one line with close Atari ids
    raise HeedError(f"unknown env id '{env_id}'.{suggest(env_id, others)}")


def make_train_envs(cfg: Config) -> gym.vector.VectorEnv:
    """``num_envs`` envs with next-step autoreset: ale-py's vector env for Atari, ``gym.make_vec`` otherwise."""
    if is_atari(cfg.env):
        from heed.envs.atari import make_vector_env

        return make_vector_env(cfg.env, cfg.num_envs, sticky_actions=cfg.sticky_actions,
                               max_episode_steps=cfg.max_episode_steps or ATARI_EPISODE_STEPS)
    limit = {} if cfg.max_episode_steps is None else {"max_episode_steps": cfg.max_episode_steps}
    vec = gym.make_vec(cfg.env, num_envs=cfg.num_envs, vectorization_mode="sync", **limit)
    obs_space, act_space = vec.single_observation_space, vec.single_action_space
    if not isinstance(act_space, gym.spaces.Discrete) or not isinstance(obs_space, gym.spaces.Box) \
            or len(obs_space.shape) == 3:
        vec.close()
        raise HeedError(f"dqn takes a Discrete action space and vector (Box) observations (or an Atari id); "
                        f"'{cfg.env}' has actions {act_space} and observations {obs_space}")
    return vec


def resolve_config(cfg: Config) -> tuple[Config, Path]:
    """Fill defaults; on ``--resume`` read the run's own config and apply the new total and device."""
    if cfg.resume is None:
        run_dir = cfg.run_dir or default_run_dir("dqn", cfg.env, cfg.seed)
        total = cfg.total_steps if cfg.total_steps is not None else DEFAULT_TOTAL_STEPS
        return dataclasses.replace(cfg, total_steps=total, run_dir=run_dir), Path(run_dir)
    run_dir = Path(cfg.resume)
    path = run_dir / "config.json"
    if not path.exists():
        raise HeedError(f"cannot resume '{run_dir}': it has no config.json (is it a heed dqn run dir?)")
    try:
        saved = json.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(Config)}
        old = Config(**{k: v for k, v in saved.items() if k in fields})
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        raise HeedError(f"cannot resume '{run_dir}': config.json is unreadable ({exc})") from None
    validate(old)
    total = cfg.total_steps if cfg.total_steps is not None else old.total_steps
    return dataclasses.replace(old, total_steps=total, device=cfg.device, run_dir=run_dir, resume=run_dir,
                               progress=cfg.progress), run_dir


class DQNTrainer:
    """The training loop as an object: ``advance(until_step)`` can be called in windows (benchmarks do).

    Construction resolves the config, opens the envs, builds (or restores) the networks and opens the writer.
    """

    def __init__(self, cfg: Config) -> None:
        validate(cfg)
        cfg, run_dir = resolve_config(cfg)
        cfg = dataclasses.replace(cfg, env=resolve_env_id(cfg.env))
        self.device = resolve_device(cfg.device)
        self.atari = is_atari(cfg.env)
        self.threads = cfg.torch_threads or auto_threads()
        torch.set_num_threads(self.threads)
        torch.manual_seed(cfg.seed)
        self.vec = vec = make_train_envs(cfg)
        prepare_run_dir(run_dir)
        self.cfg, self.run_dir = cfg, run_dir
        obs_space = vec.single_observation_space
        self.q_net = build_q_network(tuple(obs_space.shape), int(vec.single_action_space.n)).to(self.device)
        if self.atari and cfg.channels_last:
            self.q_net.to(memory_format=torch.channels_last)
        self.q_target = copy.deepcopy(self.q_net).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.learning_rate, eps=cfg.adam_eps,
                                          **adam_kwargs())
        self.learner = DQNLearner(self.q_net, self.q_target, self.optimizer, cfg.double_q, cfg.max_grad_norm)
        self.step, self.episodes, self.best_eval = 0, 0, -math.inf
        purge = None
        if cfg.resume is not None:
            self._restore()
            purge = self.step
        self.finished = self.step >= cfg.total_steps
        if self.finished:
            vec.close()
            return
        save_config(run_dir, cfg)
        self.writer = open_writer(run_dir, cfg, purge_step=purge)
        n = cfg.num_envs
        self.buffer = FrameReplayBuffer(cfg.buffer_size, n, tuple(obs_space.shape), obs_space.dtype,
                                        frame_stack=obs_space.shape[0] if self.atari else 1, n_steps=cfg.n_steps,
                                        gamma=cfg.gamma, device=self.device, prioritized=cfg.prioritized,
                                        alpha=cfg.per_alpha, seed=cfg.seed)
        self.rng = np.random.default_rng(cfg.seed + 10_000 * self.episodes)
        self.obs, info = vec.reset(seed=cfg.seed + 1000 * self.episodes)
        self.lives = info["lives"].copy() if self.atari else np.zeros(n)
        self.ep_return, self.ep_len = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.was_done = np.zeros(n, dtype=bool)
        self.recent: deque[float] = deque(maxlen=20)
        self.stats = None  # UpdateStats of the latest update
        self.updates_due = 0.0
        # a fresh buffer (also after a resume) holds learning_starts steps before updates start
        self.learn_from = self.step + cfg.learning_starts
        step = self.step
        self.next_eval = (step // cfg.eval_interval + 1) * cfg.eval_interval if cfg.eval_interval else cfg.total_steps
        self.next_ckpt = (step // cfg.checkpoint_interval + 1) * cfg.checkpoint_interval if cfg.checkpoint_interval else None
        self.next_log = (step // cfg.log_interval + 1) * cfg.log_interval
        self.sps_time, self.sps_step = time.perf_counter(), step
        self.bar = None
        if cfg.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.total_steps, initial=step, unit="step", dynamic_ncols=True, smoothing=0.05)

    def _restore(self) -> None:
        ckpt_dir = latest_checkpoint(self.run_dir)
        if ckpt_dir is None:
            raise HeedError(f"cannot resume '{self.run_dir}': no checkpoint in {self.run_dir / 'checkpoints'}")
        ckpt = load_checkpoint(ckpt_dir, expect_kind=KIND)
        online = {k[6:]: v for k, v in ckpt.tensors.items() if k.startswith("q_net.")}
        target = {k[13:]: v for k, v in ckpt.tensors.items() if k.startswith("q_net_target.")}
        load_module_state(self.q_net, online, where=f"'{ckpt_dir}'")
        load_module_state(self.q_target, target, where=f"'{ckpt_dir}'")
        if ckpt.optimizer_tensors is not None:
            restore_optimizer(self.optimizer, ckpt.optimizer_tensors, ckpt.meta["optimizer"])
        counters = ckpt.counters
        self.step, self.episodes = int(counters["global_step"]), int(counters["episodes"])
        self.learner.n_updates = int(counters.get("n_updates", 0))
        self.best_eval = float(counters.get("best_eval", -math.inf))

    def save(self, reason: str) -> Path:
        """Checkpoint online + target nets, the optimizer and the counters."""
        meta = q_network_meta(self.q_net, self.cfg.env, {"train_config": config_to_dict(self.cfg), "reason": reason})
        meta["counters"] = {"global_step": self.step, "episodes": self.episodes, "n_updates": self.learner.n_updates,
                            "best_eval": self.best_eval}
        tensors = {**{f"q_net.{k}": v for k, v in self.q_net.state_dict().items()},
                   **{f"q_net_target.{k}": v for k, v in self.q_target.state_dict().items()}}
        return save_run_checkpoint(self.run_dir, self.step, tensors, meta, self.optimizer)

    def advance(self, until_step: int) -> None:
        """Act, store and learn until ``until_step`` agent steps (or the run's total) are reached."""
        cfg, buffer, writer = self.cfg, self.buffer, self.writer
        until_step = min(until_step, cfg.total_steps)
        while self.step < until_step:
            eps = linear_schedule(self.step, 1.0, cfg.final_epsilon, cfg.exploration_steps)
            actions = greedy_actions(self.q_net, self.obs, eps, self.rng)
            prev_obs = self.obs
            self.obs, rewards, terminated, truncated, info = self.vec.step(actions)
            # next-step autoreset: a slot that ended last step only returned its reset observation now
            live = ~self.was_done
            if self.atari:  # the learner's view: a lost life cuts bootstrapping, rewards clipped to [-1, 1]
                life_lost = (info["lives"] < self.lives) & live
                self.lives = info["lives"].copy()
                buffer.store(prev_obs, self.obs, actions, np.sign(rewards), terminated | life_lost, truncated,
                             episode_end=terminated | truncated, valid=live)
            else:
                buffer.store(prev_obs, self.obs, actions, rewards, terminated, truncated, valid=live)
            self.ep_return[live] += rewards[live]
            self.ep_len[live] += 1
            done = (terminated | truncated) & live
            for i in np.flatnonzero(done):
                self.episodes += 1
                self.recent.append(float(self.ep_return[i]))
                writer.add_scalar("charts/episodic_return", self.ep_return[i], self.step)
                writer.add_scalar("charts/episodic_length", self.ep_len[i], self.step)
                self.ep_return[i], self.ep_len[i] = 0.0, 0
            self.was_done = done
            n_live = int(live.sum())
            prev_step, self.step = self.step, self.step + n_live
            if self.bar is not None:
                self.bar.update(n_live)
            if self.step >= self.learn_from:
                self.updates_due += n_live / cfg.train_freq
                beta = linear_schedule(self.step, cfg.per_beta0, 1.0, cfg.total_steps)
                for _ in range(int(self.updates_due)):
                    self.stats = self.learner.update(buffer, cfg.batch_size, beta)
                self.updates_due -= int(self.updates_due)
            if target_update_due(prev_step, self.step, cfg.target_update_interval):
                update_target(self.q_net, self.q_target)
            if self.step >= self.next_log:
                self._log(eps)
            if self.step >= self.next_eval or self.step >= cfg.total_steps:
                self._evaluate()
            if self.next_ckpt is not None and self.step >= self.next_ckpt:
                self.save("interval")
                self.next_ckpt += cfg.checkpoint_interval

    def _log(self, eps: float) -> None:
        now = time.perf_counter()
        sps = (self.step - self.sps_step) / max(now - self.sps_time, 1e-9)
        self.sps_time, self.sps_step = now, self.step
        writer = self.writer
        writer.add_scalar("charts/sps", sps, self.step)
        writer.add_scalar("charts/epsilon", eps, self.step)
        if self.stats is not None:
            writer.add_scalar("losses/td_loss", float(self.stats.loss), self.step)
            writer.add_scalar("charts/q_values", float(self.stats.q_mean), self.step)
        if self.bar is not None:
            ret = f"{np.mean(self.recent):.1f}" if self.recent else "-"
            self.bar.set_postfix(sps=f"{sps:.0f}", ret=ret, eps=f"{eps:.3f}", refresh=False)
        self.next_log += self.cfg.log_interval

    def _evaluate(self) -> None:
        cfg = self.cfg
        games = play_games(self.q_net, cfg.env, cfg.eval_episodes, cfg.eval_epsilon, cfg.seed + self.step,
                           cfg.sticky_actions)
        returns = [g.total for g in games]
        mean, std = float(np.mean(returns)), float(np.std(returns))
        self.writer.add_scalar("eval/return", mean, self.step)
        self.writer.add_scalar("eval/return_std", std, self.step)
        if mean >= self.best_eval:
            self.best_eval = mean
            save_q_network(self.run_dir / "best", self.q_net, cfg.env,
                           extra={"counters": {"global_step": self.step, "eval_return": mean}})
        message = f"step {self.step:,}: eval return {mean:.1f} ± {std:.1f} over {len(returns)} games"
        if self.bar is not None:
            self.bar.write(message)
        self.next_eval += cfg.eval_interval if cfg.eval_interval else cfg.total_steps

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.writer.close()
        self.vec.close()


def main(cfg: Config) -> Path:
    """Train (or resume) and return the run dir. Ctrl-C or SIGTERM checkpoints before leaving."""
    trainer = DQNTrainer(cfg)
    cfg = trainer.cfg
    if trainer.finished:
        print(f"run '{trainer.run_dir}' already has {trainer.step:,} steps >= --total-steps "
              f"{cfg.total_steps:,}; nothing to do")
        return trainer.run_dir
    if trainer.learn_from >= cfg.total_steps:
        print(f"warning: this run ends at step {cfg.total_steps:,} before learning starts at step "
              f"{trainer.learn_from:,} (--learning-starts {cfg.learning_starts:,}): it collects experience "
              "but trains nothing", file=sys.stderr)

    def on_sigterm(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    old_handler = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        trainer.advance(cfg.total_steps)
        trainer.save("end")
    except KeyboardInterrupt:
        trainer.save("interrupted")
        raise
    finally:
        signal.signal(signal.SIGTERM, old_handler)
        trainer.close()
    print(f"done: {trainer.step:,} steps in '{trainer.run_dir}'. TensorBoard: tensorboard --logdir {trainer.run_dir.parent}")
    return trainer.run_dir
