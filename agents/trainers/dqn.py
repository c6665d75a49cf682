"""Dueling Double DQN on Atari: heed's fast training loop around the Stable-Baselines3 algorithm.

The learner is :class:`agents.dqn.DuelingDQN` (its ``train()`` does the update); this loop replaces
SB3's rollout collection with what is cheap on a CPU: ale-py's native vector env stepping
``num_envs`` games in C++ threads, one batched forward pass for the actions of all games, and
:class:`agents.frame_replay.FrameReplayBuffer`, which stores each 84x84 frame once.

    python scripts/train.py dqn --env ALE/Pong-v5 --total-steps 2000000 --seed 1 --device auto --run-dir runs/pong
    python scripts/train.py dqn --resume runs/pong --total-steps 3000000

Steps are agent steps (one action = 4 emulator frames). ``--resume`` restores the networks, the
optimizer, the step counter, the epsilon schedule and the TensorBoard curves; the replay buffer is
not saved (it is ~0.7 GB): a resumed run refills ``learning_starts`` steps with its current
epsilon-greedy policy before updates continue.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

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
from heed.agents.common.errors import HeedError, require
from heed.agents.common.run import config_to_dict, default_run_dir, open_writer, prepare_run_dir, save_config
from heed.agents.dqn import KIND, DuelingDQN, greedy_actions, play_atari, q_network_meta, save_q_network
from heed.agents.frame_replay import FrameReplayBuffer

DEFAULT_TOTAL_STEPS = 2_000_000


@dataclass(frozen=True)
class Config:
    """Dueling Double DQN on an Atari game (DeepMind preprocessing, ale-py vector env)."""

    env: str = "ALE/Pong-v5"
    """Atari id, e.g. ALE/Pong-v5 or ALE/Breakout-v5."""
    total_steps: int | None = None
    """Agent steps to train for (each is 4 frames); default 2,000,000. With --resume, the new total."""
    seed: int = 1
    """Seed for the envs, the network initialisation and exploration."""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N."""
    run_dir: Path | None = None
    """Where TensorBoard events, config.json and checkpoints go (default runs/dqn__<env>__<seed>__<time>)."""
    resume: Path | None = None
    """Continue the run in this folder from its last checkpoint (options other than --total-steps and --device are taken from the run)."""
    num_envs: int = 4
    """Games stepped in parallel (ale-py vector env)."""
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
    """ALE repeat-action probability (0 as in the Nature DQN)."""
    max_episode_steps: int = 27_000
    """Agent steps before a game is cut (27,000 = 30 minutes of play)."""
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
    """torch CPU threads (0: torch's default)."""
    channels_last: bool = True
    """Channels-last convolutions (measured ~20% faster updates on this CPU)."""
    progress: bool = True
    """Show a progress bar."""


def validate(cfg: Config) -> None:
    """One-line errors for nonsense values."""
    if cfg.total_steps is not None:
        require(cfg.total_steps > 0, f"--total-steps must be positive, got {cfg.total_steps}")
    for name in ("num_envs", "buffer_size", "batch_size", "n_steps", "train_freq", "target_update_interval",
                 "eval_episodes", "max_episode_steps", "log_interval"):
        require(getattr(cfg, name) > 0, f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    for name in ("learning_starts", "exploration_steps", "eval_interval", "checkpoint_interval", "torch_threads"):
        require(getattr(cfg, name) >= 0, f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    require(cfg.learning_rate > 0, f"--learning-rate must be positive, got {cfg.learning_rate}")
    require(0 < cfg.gamma <= 1, f"--gamma must be in (0, 1], got {cfg.gamma}")
    for name in ("final_epsilon", "eval_epsilon", "sticky_actions"):
        require(0 <= getattr(cfg, name) <= 1, f"--{name.replace('_', '-')} must be in [0, 1]")
    require(cfg.buffer_size >= cfg.batch_size, "--buffer-size must be at least --batch-size")


def epsilon_at(cfg: Config, step: int) -> float:
    """Linear decay from 1 to ``final_epsilon`` over ``exploration_steps`` agent steps."""
    if cfg.exploration_steps == 0:
        return cfg.final_epsilon
    frac = min(1.0, step / cfg.exploration_steps)
    return 1.0 + frac * (cfg.final_epsilon - 1.0)


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
    except (json.JSONDecodeError, TypeError) as exc:
        raise HeedError(f"cannot resume '{run_dir}': config.json is unreadable ({exc})") from None
    total = cfg.total_steps if cfg.total_steps is not None else old.total_steps
    return dataclasses.replace(old, total_steps=total, device=cfg.device, run_dir=run_dir, resume=run_dir,
                               progress=cfg.progress), run_dir


def build_model(cfg: Config, device: torch.device) -> DuelingDQN:
    """The SB3 algorithm object (policy, target net, optimizer); its own replay buffer is a stub."""
    from stable_baselines3.common.logger import configure

    from heed.envs.atari import make_atari_env

    spaces_env = make_atari_env(cfg.env, training=True, sticky_actions=cfg.sticky_actions)
    model = DuelingDQN(
        "CnnPolicy",
        spaces_env,
        learning_rate=cfg.learning_rate,
        buffer_size=1,
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        gamma=cfg.gamma,
        train_freq=cfg.train_freq,
        target_update_interval=cfg.target_update_interval,
        max_grad_norm=cfg.max_grad_norm,
        double_q=cfg.double_q,
        per_beta0=cfg.per_beta0,
        policy_kwargs={"optimizer_kwargs": {"eps": cfg.adam_eps}},
        device=device,
        seed=cfg.seed,
    )
    spaces_env.close()
    if cfg.channels_last:
        model.policy.to(memory_format=torch.channels_last)
    model.set_logger(configure(folder=None, format_strings=[]))
    return model


def checkpoint_tensors(model: DuelingDQN) -> dict[str, torch.Tensor]:
    online = {f"q_net.{k}": v for k, v in model.q_net.state_dict().items()}
    target = {f"q_net_target.{k}": v for k, v in model.q_net_target.state_dict().items()}
    return {**online, **target}


def evaluate(net, env_id: str, episodes: int, epsilon: float, seed: int, sticky_actions: float = 0.0) -> list[float]:
    """Play ``episodes`` full games (unclipped reward) and return their returns."""
    return [g.total for g in play_atari(net, env_id, episodes, epsilon, seed, sticky_actions=sticky_actions)]


class AtariDQNTrainer:
    """The training loop as an object: ``advance(until_step)`` can be called in windows (benchmarks do).

    Construction resolves the config, builds (or restores) the model and opens the envs and the writer.
    """

    def __init__(self, cfg: Config) -> None:
        validate(cfg)
        cfg, run_dir = resolve_config(cfg)
        from heed.envs.atari import check_atari_id, make_vector_env

        check_atari_id(cfg.env)
        self.device = resolve_device(cfg.device)
        prepare_run_dir(run_dir)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        self.cfg, self.run_dir = cfg, run_dir
        self.model = model = build_model(cfg, self.device)
        self.step, self.episodes, self.best_eval = 0, 0, -math.inf
        purge = None
        if cfg.resume is not None:
            self._restore()
            purge = self.step
        self.finished = self.step >= cfg.total_steps
        if self.finished:
            return
        save_config(run_dir, cfg)
        self.writer = open_writer(run_dir, cfg, purge_step=purge)
        self.vec = make_vector_env(cfg.env, cfg.num_envs, sticky_actions=cfg.sticky_actions,
                                   max_episode_steps=cfg.max_episode_steps)
        n = cfg.num_envs
        self.buffer = FrameReplayBuffer(cfg.buffer_size, n, n_steps=cfg.n_steps, gamma=cfg.gamma,
                                        device=self.device, prioritized=cfg.prioritized, alpha=cfg.per_alpha,
                                        seed=cfg.seed)
        model.replay_buffer = self.buffer  # DuelingDQN.train() samples from it
        self.rng = np.random.default_rng(cfg.seed + 10_000 * self.episodes)
        self.obs, info = self.vec.reset(seed=cfg.seed + 1000 * self.episodes)
        self.buffer.add_reset(self.obs)
        self.lives = info["lives"].copy()
        self.ep_return, self.ep_len = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.was_done = np.zeros(n, dtype=bool)
        self.recent: deque[float] = deque(maxlen=20)
        self.updates_due = 0.0
        step = self.step
        # after a resume the buffer is empty: refill it before updates continue
        self.warmup_until = step + cfg.learning_starts
        self.next_target = step + cfg.target_update_interval
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
        load_module_state(self.model.q_net, online, where=f"'{ckpt_dir}'")
        load_module_state(self.model.q_net_target, target, where=f"'{ckpt_dir}'")
        if ckpt.optimizer_tensors is not None:
            restore_optimizer(self.model.policy.optimizer, ckpt.optimizer_tensors, ckpt.meta["optimizer"])
        counters = ckpt.counters
        self.step, self.episodes = int(counters["global_step"]), int(counters["episodes"])
        self.model._n_updates = int(counters.get("n_updates", 0))
        self.best_eval = float(counters.get("best_eval", -math.inf))

    def save(self, reason: str) -> Path:
        """Checkpoint online + target nets, the optimizer and the counters."""
        model = self.model
        meta = q_network_meta(model.q_net, self.cfg.env, {"train_config": config_to_dict(self.cfg), "reason": reason})
        meta["counters"] = {"global_step": self.step, "episodes": self.episodes, "n_updates": model._n_updates,
                            "best_eval": self.best_eval}
        return save_run_checkpoint(self.run_dir, self.step, checkpoint_tensors(model), meta, model.policy.optimizer)

    def advance(self, until_step: int) -> None:
        """Act, store and learn until ``until_step`` agent steps (or the run's total) are reached."""
        cfg, model, buffer, writer = self.cfg, self.model, self.buffer, self.writer
        until_step = min(until_step, cfg.total_steps)
        while self.step < until_step:
            eps = epsilon_at(cfg, self.step)
            actions = greedy_actions(model.q_net, self.obs, eps, self.rng)
            self.obs, rewards, terminated, truncated, info = self.vec.step(actions)
            life_lost = (info["lives"] < self.lives) & ~self.was_done
            self.lives = info["lives"].copy()
            # slots that were done last step were auto-reset now: their row starts an episode
            buffer.add(self.obs, actions, np.sign(rewards), terminated | life_lost, truncated, self.was_done)
            live = ~self.was_done
            self.ep_return[live] += rewards[live]
            self.ep_len[live] += 1
            done = terminated | truncated
            for i in np.flatnonzero(done):
                self.episodes += 1
                self.recent.append(float(self.ep_return[i]))
                writer.add_scalar("charts/episodic_return", self.ep_return[i], self.step)
                writer.add_scalar("charts/episodic_length", self.ep_len[i], self.step)
                self.ep_return[i], self.ep_len[i] = 0.0, 0
            self.was_done = done
            n_live = int(live.sum())
            self.step += n_live
            if self.bar is not None:
                self.bar.update(n_live)
            if self.step >= self.warmup_until and self.step >= cfg.learning_starts:
                model._current_progress_remaining = 1.0 - self.step / cfg.total_steps
                self.updates_due += n_live / cfg.train_freq
                k = int(self.updates_due)
                if k:
                    model.train(k, cfg.batch_size)
                    self.updates_due -= k
            if self.step >= self.next_target:
                model.q_net_target.load_state_dict(model.q_net.state_dict())
                self.next_target += cfg.target_update_interval
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
        writer, model = self.writer, self.model
        writer.add_scalar("charts/sps", sps, self.step)
        writer.add_scalar("charts/epsilon", eps, self.step)
        if model.last_td_loss is not None:
            writer.add_scalar("losses/td_loss", model.last_td_loss, self.step)
            writer.add_scalar("charts/q_values", model.last_q_value, self.step)
        if self.bar is not None:
            ret = f"{np.mean(self.recent):.1f}" if self.recent else "-"
            self.bar.set_postfix(sps=f"{sps:.0f}", ret=ret, eps=f"{eps:.3f}", refresh=False)
        self.next_log += self.cfg.log_interval

    def _evaluate(self) -> None:
        cfg = self.cfg
        returns = evaluate(self.model.q_net, cfg.env, cfg.eval_episodes, cfg.eval_epsilon, cfg.seed + self.step,
                           cfg.sticky_actions)
        mean, std = float(np.mean(returns)), float(np.std(returns))
        self.writer.add_scalar("eval/return", mean, self.step)
        self.writer.add_scalar("eval/return_std", std, self.step)
        if mean >= self.best_eval:
            self.best_eval = mean
            save_q_network(self.run_dir / "best", self.model.q_net, cfg.env,
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
    trainer = AtariDQNTrainer(cfg)
    if trainer.finished:
        print(f"run '{trainer.run_dir}' already has {trainer.step:,} steps >= --total-steps "
              f"{trainer.cfg.total_steps:,}; nothing to do")
        return trainer.run_dir

    def on_sigterm(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    old_handler = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        trainer.advance(trainer.cfg.total_steps)
        trainer.save("end")
    except KeyboardInterrupt:
        trainer.save("interrupted")
        raise
    finally:
        signal.signal(signal.SIGTERM, old_handler)
        trainer.close()
    print(f"done: {trainer.step:,} steps in '{trainer.run_dir}'. TensorBoard: tensorboard --logdir {trainer.run_dir.parent}")
    return trainer.run_dir
