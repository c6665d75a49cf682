"""Agent steps/s while learning: heed's Dueling DQN trainer against Stable-Baselines3's stock DQN.

    python scripts/bench_dqn.py --rounds 5 --window-steps 2000

Both learn Pong with batch 32, one gradient step per 4 agent steps, Adam, the same replay size and
warm-up. SB3 runs its standard Atari pipeline (``make_atari_env`` + ``VecFrameStack``, one env as
in the RL Zoo) with a Nature-CNN whose dense layer is 1,024 wide, so that its Q-network has the same
size and cost as heed's dueling network (two 512-wide streams on the same convolutions). After a
warm-up, contenders take turns: each round every contender advances ``window_steps`` agent steps,
so machine noise hits all of them alike. Reported: median and min-max of steps/s over rounds, and
the ratio to SB3. The compute floor is the pure update (forward of target and online nets on s',
forward + backward + Adam on s) timed in the same rounds: floor steps/s = train_freq / t_update.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro


@dataclass(frozen=True)
class Config:
    """Side-by-side training-speed benchmark."""

    env: str = "ALE/Pong-v5"
    """Atari id."""
    rounds: int = 5
    """Alternating rounds."""
    window_steps: int = 2000
    """Agent steps per contender per round."""
    warmup: int = 5000
    """Agent steps of experience before learning (not timed)."""
    buffer_size: int = 50_000
    """Replay capacity (same for all)."""
    threads: int = 2
    """torch threads."""
    heed_envs: tuple[int, ...] = (1, 4)
    """heed vector-env sizes to run."""
    out: Path | None = None
    """Write the table (markdown) here as well."""


def heed_contender(cfg: Config, num_envs: int, workdir: Path):
    from heed.agents.trainers.dqn import AtariDQNTrainer
    from heed.agents.trainers.dqn import Config as TrainConfig

    trainer = AtariDQNTrainer(TrainConfig(
        env=cfg.env, total_steps=10**9, seed=0, device="cpu", run_dir=workdir / f"heed{num_envs}",
        num_envs=num_envs, buffer_size=cfg.buffer_size, learning_starts=cfg.warmup, eval_interval=0,
        checkpoint_interval=0, progress=False, torch_threads=cfg.threads, n_steps=1,
    ))
    trainer.advance(cfg.warmup + 4)

    def run(steps: int) -> float:
        start, t = trainer.step, time.perf_counter()
        trainer.advance(trainer.step + steps)
        return (trainer.step - start) / (time.perf_counter() - t)

    return run, trainer


def sb3_contender(cfg: Config):
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from heed.envs.atari import check_atari_id

    env = VecFrameStack(make_atari_env(check_atari_id(cfg.env), n_envs=1, seed=0,
                                       env_kwargs={"frameskip": 1, "repeat_action_probability": 0.0}), 4)
    model = DQN("CnnPolicy", env, buffer_size=cfg.buffer_size, learning_starts=cfg.warmup, batch_size=32,
                train_freq=4, gradient_steps=1, target_update_interval=2000, learning_rate=1e-4,
                policy_kwargs={"features_extractor_kwargs": {"features_dim": 1024}}, seed=0, device="cpu")
    model.learn(cfg.warmup + 4)

    def run(steps: int) -> float:
        start, t = model.num_timesteps, time.perf_counter()
        model.learn(steps, reset_num_timesteps=False)
        return (model.num_timesteps - start) / (time.perf_counter() - t)

    return run, model


def update_timer(trainer, train_freq: int = 4, updates: int = 20):
    """Steps/s if the loop did nothing but heed's update (sampling included) and, separately, the bare network update."""
    model = trainer.model
    obs = torch.randint(0, 255, (32, 4, 84, 84), dtype=torch.uint8)

    def full() -> float:
        t = time.perf_counter()
        model.train(updates, 32)
        return train_freq * updates / (time.perf_counter() - t)

    def bare() -> float:
        opt = model.policy.optimizer
        t = time.perf_counter()
        for _ in range(updates):
            with torch.no_grad():
                model.q_net_target(obs)
                model.q_net(obs)
            loss = model.q_net(obs).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return train_freq * updates / (time.perf_counter() - t)

    return full, bare


def main(cfg: Config) -> str:
    torch.set_num_threads(cfg.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_dqn_"))
    contenders: dict[str, object] = {}
    print("warming up (filling replay buffers) ...", flush=True)
    contenders["SB3 DQN (1 env)"], _ = sb3_contender(cfg)
    trainers = {}
    for n in cfg.heed_envs:
        contenders[f"heed Dueling DQN ({n} env{'s' if n > 1 else ''})"], trainers[n] = heed_contender(cfg, n, work)
    full, bare = update_timer(trainers[cfg.heed_envs[0]])
    contenders["floor: heed update incl. sampling"] = lambda steps: full()
    contenders["floor: bare network update"] = lambda steps: bare()
    results: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(cfg.rounds):
        for name, run in contenders.items():
            results[name].append(run(cfg.window_steps))
        print(f"round {r + 1}/{cfg.rounds}: " + ", ".join(f"{k}: {v[-1]:.0f}" for k, v in results.items()), flush=True)
    base = results["SB3 DQN (1 env)"]
    lines = [
        f"| contender | agent steps/s while learning, median (min–max) over {cfg.rounds} rounds | ratio to SB3 (median of per-round ratios) |",
        "|---|---|---|",
    ]
    for name, values in results.items():
        ratio = statistics.median(np.array(values) / np.array(base))
        lines.append(f"| {name} | {statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f}) | {ratio:.2f}× |")
    table = "\n".join(lines)
    print(table)
    if cfg.out is not None:
        cfg.out.write_text(table + "\n")
    for t in trainers.values():
        t.close()
    return table


if __name__ == "__main__":
    from heed.agents.common.errors import cli_main

    cli_main(lambda: main(tyro.cli(Config)))
