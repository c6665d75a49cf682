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

The run plumbing is :mod:`heed.agents.common.session`'s: ``--seed --device --threads --run-dir
--resume --progress``, the run-folder guard, checkpoints with the one meta schema (their ``config``
is the Q-network's, so ``load_q_network`` and ``scripts/evaluate.py`` read a run folder directly;
the trainer's options are under ``train_config``), the one resume rule (only ``--total-steps``,
``--device``, ``--threads`` and ``--progress`` may change), the NaN guard and Ctrl-C/SIGTERM.
TensorBoard: ``charts/`` (episodic_return, episodic_length, sps, epsilon, q_values),
``losses/td_loss``, ``eval/`` (return, return_std). ``--threads`` defaults to 1, the shared
default (the old ``--torch-threads 0`` "auto" is gone: more threads than free cores make each
update up to 10x slower, so ask for 2-4 only on a machine with that many idle cores).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import gymnasium as gym
import numpy as np
import torch

from heed.agents.common.checkpoint import Checkpoint, load_module_state, restore_optimizer
from heed.agents.common.errors import HeedError, require, suggest
from heed.agents.common.guards import check_finite
from heed.agents.common.run import Every, config_to_dict
from heed.agents.common.session import ResumeOverride, Run, RunConfig, RunFlags, start_run
from heed.agents.common.validate import AtLeastOne, NonNegative, Positive, Range, UnitInterval
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

#: the run kind (``heed train dqn``); checkpoints keep the Q-network's kind, :data:`heed.agents.dqn.KIND`
RUN_KIND = "dqn"
DEFAULT_TOTAL_STEPS = 2_000_000
ATARI_EPISODE_STEPS = 27_000  # 30 minutes of play
#: the largest replay a run may ask for (10x the Nature DQN's 10^6 transitions)
MAX_BUFFER = 10_000_000


@dataclass(frozen=True)
class Config:
    """Dueling Double DQN on an Atari game (DeepMind preprocessing, ale-py vector env) or any discrete Gymnasium env."""

    env: str = "ALE/Pong-v5"
    """An Atari id (ALE/Pong-v5, ALE/Breakout-v5: Nature CNN on 4 stacked 84x84 frames) or any Gymnasium id
    with a Discrete action space and vector (Box) observations, e.g. CartPole-v1 (an MLP)."""
    total_steps: Annotated[int | None, AtLeastOne, ResumeOverride] = None
    """Agent steps to train for (Atari: each is 4 frames); default 2,000,000. With --resume, the new total."""
    num_envs: Annotated[int, Range(1, 256)] = 4
    """Environments stepped in parallel."""
    buffer_size: Annotated[int, Range(1, MAX_BUFFER)] = 100_000
    """Replay capacity in transitions."""
    learning_starts: Annotated[int, NonNegative] = 20_000
    """Agent steps of experience before the first update."""
    batch_size: Annotated[int, Range(1, 65_536)] = 32
    """Minibatch size."""
    learning_rate: Annotated[float, Positive] = 1e-4
    """Adam learning rate."""
    adam_eps: Annotated[float, Positive] = 1.5e-4
    """Adam epsilon."""
    gamma: Annotated[float, Range(0, 1, lo_open=True)] = 0.99
    """Discount."""
    n_steps: Annotated[int, Range(1, 1000)] = 3
    """n of the n-step return."""
    train_freq: Annotated[int, AtLeastOne] = 4
    """Agent steps per gradient step."""
    target_update_interval: Annotated[int, AtLeastOne] = 2_000
    """Agent steps between hard target-network updates."""
    exploration_steps: Annotated[int, NonNegative] = 250_000
    """Agent steps over which epsilon falls linearly from 1 to --final-epsilon."""
    final_epsilon: Annotated[float, UnitInterval] = 0.01
    """Epsilon after the exploration phase."""
    double_q: bool = True
    """Double-DQN targets (online net chooses, target net scores)."""
    prioritized: bool = False
    """Proportional prioritized replay."""
    per_alpha: Annotated[float, Range(0, 100)] = 0.5
    """Priority exponent alpha."""
    per_beta0: Annotated[float, UnitInterval] = 0.4
    """Initial importance-sampling exponent (annealed to 1)."""
    max_grad_norm: Annotated[float, Positive] = 10.0
    """Gradient-norm clip."""
    sticky_actions: Annotated[float, UnitInterval] = 0.0
    """ALE repeat-action probability (0 as in the Nature DQN); Atari only."""
    max_episode_steps: Annotated[int | None, AtLeastOne] = None
    """Agent steps before an episode is cut (default: 27,000 = 30 minutes for Atari, the env's own limit otherwise)."""
    log_interval: Annotated[int, AtLeastOne] = 1000
    """Agent steps between TensorBoard scalars (sps, epsilon, loss, Q); a NaN/inf loss stops the run here."""
    eval_interval: Annotated[int, NonNegative] = 50_000
    """Agent steps between evaluations (0: only at the end)."""
    eval_episodes: Annotated[int, Range(1, 100_000)] = 3
    """Full games per evaluation (unclipped reward)."""
    eval_epsilon: Annotated[float, UnitInterval] = 0.01
    """Epsilon during evaluation."""
    checkpoint_interval: Annotated[int, NonNegative] = 50_000
    """Agent steps between checkpoints (0: only at the end)."""
    channels_last: bool = True
    """Channels-last convolutions (measured ~20% faster updates on this CPU)."""
    run: RunFlags = field(default_factory=RunConfig)
    """--seed (envs, network initialisation, exploration), --device, --threads, --run-dir, --resume, --progress"""


def migrate_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A ``config.json`` written before the shared run plumbing in today's names.

    Its run options were flat (lifted into ``run`` by :func:`start_run`) and the threads were
    ``torch_threads``, where 0 meant "auto": it becomes ``threads`` (0 becomes 1, the shared default).
    """
    if "torch_threads" not in saved or "run" in saved:
        return saved
    saved = dict(saved)
    threads = saved.pop("torch_threads")
    saved["threads"] = max(1, threads) if isinstance(threads, int) and not isinstance(threads, bool) else threads
    return saved


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


def check_spaces(env_id: str) -> None:
    """Refuse a non-Atari env that DQN cannot drive: it needs Discrete actions and vector (Box) observations."""
    if is_atari(env_id):
        return
    env = gym.make(env_id)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(act_space, gym.spaces.Discrete) or not isinstance(obs_space, gym.spaces.Box) \
            or len(obs_space.shape) == 3:
        raise HeedError(f"dqn takes a Discrete action space and vector (Box) observations (or an Atari id); "
                        f"'{env_id}' has actions {act_space} and observations {obs_space}")


def make_train_envs(cfg: Config) -> gym.vector.VectorEnv:
    """``num_envs`` envs with next-step autoreset: ale-py's vector env for Atari, ``gym.make_vec`` otherwise."""
    if is_atari(cfg.env):
        from heed.envs.atari import make_vector_env

        return make_vector_env(cfg.env, cfg.num_envs, sticky_actions=cfg.sticky_actions,
                               max_episode_steps=cfg.max_episode_steps or ATARI_EPISODE_STEPS)
    limit = {} if cfg.max_episode_steps is None else {"max_episode_steps": cfg.max_episode_steps}
    return gym.make_vec(cfg.env, num_envs=cfg.num_envs, vectorization_mode="sync", **limit)


def start_dqn_run(cfg: Config) -> Run[Config]:
    """:func:`start_run` for DQN. A new run gets its env id resolved, its default budget and its env
    checked before a run folder is made; a resumed one its saved config (old flat ones migrated)."""
    if cfg.run.resume is None:
        cfg = dataclasses.replace(cfg, env=resolve_env_id(cfg.env),
                                  total_steps=cfg.total_steps if cfg.total_steps is not None else DEFAULT_TOTAL_STEPS)
        require(cfg.buffer_size >= cfg.batch_size, "--buffer-size must be at least --batch-size")
        check_spaces(cfg.env)
    run = start_run(RUN_KIND, cfg, name=cfg.env, checkpoint_kind=KIND, metric_tags=("eval/return",),
                    migrate=migrate_config)
    require(run.cfg.buffer_size >= run.cfg.batch_size, "--buffer-size must be at least --batch-size")
    return run


class DQNTrainer:
    """The training loop as an object: ``advance(until_step)`` may be called in windows (the benchmark does).

    Construction opens the envs, builds the networks, restores ``run.checkpoint`` (on --resume) and
    allocates the replay (after every size was checked by :func:`start_run`).
    """

    def __init__(self, run: Run[Config]) -> None:
        self.run = run
        self.cfg = cfg = run.cfg
        self.total = cfg.total_steps if cfg.total_steps is not None else DEFAULT_TOTAL_STEPS
        self.device = run.device
        self.atari = is_atari(resolve_env_id(cfg.env))
        self.vec = vec = make_train_envs(cfg)
        obs_space = vec.single_observation_space
        self.q_net = build_q_network(tuple(obs_space.shape), int(vec.single_action_space.n)).to(self.device)
        if self.atari and cfg.channels_last:
            self.q_net.to(memory_format=torch.channels_last)
        self.q_target = copy.deepcopy(self.q_net).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.learning_rate, eps=cfg.adam_eps,
                                          **adam_kwargs())
        self.learner = DQNLearner(self.q_net, self.q_target, self.optimizer, cfg.double_q, cfg.max_grad_norm)
        self.step, self.episodes, self.best_eval = 0, 0, -math.inf
        if run.checkpoint is not None:
            self._restore(run.checkpoint)
        self.saved_at = self.step if run.resumed else -1
        self.last_eval: float | None = None
        self.stats = None  # UpdateStats of the latest update
        self.bar = None
        self.finished = self.step >= self.total
        if self.finished:
            return
        n, seed = cfg.num_envs, cfg.run.seed
        self.buffer = FrameReplayBuffer(cfg.buffer_size, n, tuple(obs_space.shape), obs_space.dtype,
                                        frame_stack=obs_space.shape[0] if self.atari else 1, n_steps=cfg.n_steps,
                                        gamma=cfg.gamma, device=self.device, prioritized=cfg.prioritized,
                                        alpha=cfg.per_alpha, seed=seed)
        self.rng = np.random.default_rng(seed + 10_000 * self.episodes)
        self.obs, info = vec.reset(seed=seed + 1000 * self.episodes)
        self.lives = info["lives"].copy() if self.atari else np.zeros(n)
        self.ep_return, self.ep_len = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.was_done = np.zeros(n, dtype=bool)
        self.recent: deque[float] = deque(maxlen=20)
        self.updates_due = 0.0
        # a fresh buffer (also after a resume) holds learning_starts steps before updates start
        self.learn_from = self.step + cfg.learning_starts
        self.log_due, self.eval_due, self.checkpoint_due = (
            Every(k, self.step) for k in (cfg.log_interval, cfg.eval_interval, cfg.checkpoint_interval))
        self.sps_time, self.sps_step = time.perf_counter(), self.step
        if cfg.run.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.step, unit="step", dynamic_ncols=True, smoothing=0.05)

    def _restore(self, ckpt: Checkpoint) -> None:
        where = f"'{ckpt.path}'"
        online = {k[6:]: v for k, v in ckpt.tensors.items() if k.startswith("q_net.")}
        target = {k[13:]: v for k, v in ckpt.tensors.items() if k.startswith("q_net_target.")}
        load_module_state(self.q_net, online, where=where)
        load_module_state(self.q_target, target, where=where)
        if ckpt.optimizer_tensors is not None:
            restore_optimizer(self.optimizer, ckpt.optimizer_tensors, ckpt.meta.get("optimizer") or {})
        try:
            counters = ckpt.counters
            self.step, self.episodes = int(counters["global_step"]), int(counters["episodes"])
            self.learner.n_updates = int(counters.get("n_updates", 0))
            self.best_eval = float(counters.get("best_eval", -math.inf))
        except (KeyError, TypeError, ValueError):
            raise HeedError(f"checkpoint {where} holds damaged counters") from None
        require(self.step >= 0 and self.episodes >= 0, f"checkpoint {where} holds negative counters")

    def save(self, reason: str) -> Path | None:
        """Checkpoint online + target nets, the optimizer and the counters (once per step)."""
        if self.saved_at == self.step:
            return None
        net_meta = q_network_meta(self.q_net, self.cfg.env)
        counters = {"global_step": self.step, "episodes": self.episodes, "n_updates": self.learner.n_updates,
                    "best_eval": self.best_eval}
        tensors = {**{f"q_net.{k}": v for k, v in self.q_net.state_dict().items()},
                   **{f"q_net_target.{k}": v for k, v in self.q_target.state_dict().items()}}
        path = self.run.save(self.step, tensors, net_meta["config"], counters, self.optimizer, kind=KIND,
                             train_config=config_to_dict(self.cfg), reason=reason)
        self.saved_at = self.step
        return path

    def advance(self, until_step: int) -> None:
        """Act, store and learn until ``until_step`` agent steps (or the run's total) are reached."""
        cfg, buffer, run = self.cfg, self.buffer, self.run
        until_step = min(until_step, self.total)
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
                run.log_scalars("charts", {"episodic_return": self.ep_return[i], "episodic_length": self.ep_len[i]},
                                self.step)
                self.ep_return[i], self.ep_len[i] = 0.0, 0
            self.was_done = done
            n_live = int(live.sum())
            prev_step, self.step = self.step, self.step + n_live
            if self.bar is not None:
                self.bar.update(n_live)
            if self.step >= self.learn_from:
                self.updates_due += n_live / cfg.train_freq
                beta = linear_schedule(self.step, cfg.per_beta0, 1.0, self.total)
                for _ in range(int(self.updates_due)):
                    self.stats = self.learner.update(buffer, cfg.batch_size, beta)
                self.updates_due -= int(self.updates_due)
            if target_update_due(prev_step, self.step, cfg.target_update_interval):
                update_target(self.q_net, self.q_target)
            if self.log_due.due(self.step):  # a NaN/inf loss stops the run here
                self._log(eps)
            if self.eval_due.due(self.step) or self.step >= self.total:
                self._evaluate()
            if self.checkpoint_due.due(self.step):
                self.save("interval")

    def _log(self, eps: float) -> None:
        now = time.perf_counter()
        sps = (self.step - self.sps_step) / max(now - self.sps_time, 1e-9)
        self.sps_time, self.sps_step = now, self.step
        charts = {"sps": sps, "epsilon": eps}
        if self.stats is not None:
            self.run.log_scalars("losses", {"td_loss": self.stats.loss}, self.step)
            charts["q_values"] = float(self.stats.q_mean)
        self.run.log_scalars("charts", charts, self.step)
        if self.bar is not None:
            ret = f"{np.mean(self.recent):.1f}" if self.recent else "-"
            self.bar.set_postfix(sps=f"{sps:.0f}", ret=ret, eps=f"{eps:.3f}", refresh=False)

    def _evaluate(self) -> None:
        """Play ``eval_episodes`` full games; a new best return replaces ``best/`` (never with a diverged net)."""
        cfg = self.cfg
        if self.stats is not None:  # a diverged network is neither scored nor kept as the best
            check_finite({"losses/td_loss": self.stats.loss}, self.step, str(self.run.dir))
        games = play_games(self.q_net, cfg.env, cfg.eval_episodes, cfg.eval_epsilon, cfg.run.seed + self.step,
                           cfg.sticky_actions)
        returns = [g.total for g in games]
        mean, std = float(np.mean(returns)), float(np.std(returns))
        self.run.log_scalars("eval", {"return": mean, "return_std": std}, self.step)
        self.last_eval = mean
        if mean >= self.best_eval:
            self.best_eval = mean
            save_q_network(self.run.dir / "best", self.q_net, cfg.env,
                           extra={"counters": {"global_step": self.step, "eval_return": mean}, "run_id": self.run.run_id})
        message = f"step {self.step:,}: eval return {mean:.1f} ± {std:.1f} over {len(returns)} games"
        print(message, file=sys.stderr) if self.bar is None else self.bar.write(message)

    def close(self) -> None:
        """Close the progress bar and the envs (the run's writer is closed by ``Run.finish``)."""
        if self.bar is not None:
            self.bar.close()
        self.vec.close()


def main(cfg: Config) -> Path:
    """Train (or resume) and return the run dir. Ctrl-C or SIGTERM checkpoints before leaving (exit 130)."""
    run = start_dqn_run(cfg)
    trainer = DQNTrainer(run)
    cfg = run.cfg
    if trainer.finished:
        trainer.close()
        print(f"run '{run.dir}' already has {trainer.step:,} steps >= --total-steps {trainer.total:,}; nothing to do")
        run.finish(None, "--total-steps", trainer.step)
        return run.dir
    if trainer.learn_from >= trainer.total:
        print(f"warning: this run ends at step {trainer.total:,} before learning starts at step "
              f"{trainer.learn_from:,} (--learning-starts {cfg.learning_starts:,}): it collects experience "
              "but trains nothing", file=sys.stderr)
    try:
        with run.interruptible(lambda: trainer.save("interrupted"), "--total-steps"):
            trainer.advance(trainer.total)
            trainer.save("end")
    finally:
        trainer.close()
    final = {"eval/return": trainer.last_eval} if trainer.last_eval is not None else None
    run.finish(final, "--total-steps", trainer.step)
    return run.dir
