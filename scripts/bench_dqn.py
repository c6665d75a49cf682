"""Agent steps/s while learning: heed's Dueling DQN trainer against Stable-Baselines3's stock DQN.

    python scripts/bench_dqn.py --rounds 5 --window-steps 2000
    python scripts/bench_dqn.py --ablation --rounds 7     # the update alone, four ways (CPU ms)

Both learn Pong with batch 32, one gradient step per 4 agent steps, Adam, the same replay size and
warm-up. SB3 runs its standard Atari pipeline (``make_atari_env`` + ``VecFrameStack``, one env as
in the RL Zoo) with a Nature-CNN whose dense layer is 1,024 wide, so that its Q-network has the same
size and cost as heed's dueling network (two 512-wide streams on the same convolutions). After a
warm-up, contenders take turns: each round every contender advances ``window_steps`` agent steps,
so machine noise hits all of them alike. Reported: median and min-max of steps/s over rounds, and
the ratio to SB3. The compute floor is the pure update (forward of target and online nets on s',
forward + backward + Adam on s) timed in the same rounds: floor steps/s = train_freq / t_update.
Everything runs on one torch thread by default (``--threads``), so that a busy second core does not
decide the result.

Contenders with dueling + prioritized replay (``--contenders tianshou torchrl``; each is skipped with
one line when its package is not importable, ``pip install tianshou torchrl``): Tianshou's ``DQN``
(its Collector, a ``PrioritizedVectorReplayBuffer`` storing only the newest frame, its Atari recipe)
and TorchRL's ``DQNLoss`` (its ``Collector`` over a ``GymWrapper``, a
``TensorDictPrioritizedReplayBuffer``, ``HardUpdate``), against heed's trainer with ``--prioritized``.
All three get heed's env (``heed.envs.atari.make_atari_env``) and heed's dueling network (same
size, channels-last weights), so the rows differ only in the frameworks' loops, buffers and
losses; shared hyperparameters: batch 32, one update per 4 agent steps, Adam (lr 1e-4, eps 1.5e-4),
gamma 0.99, 1-step double-Q Huber targets, target copy every 2,000 steps, PER alpha 0.5 / beta 0.4,
epsilon 0.01 after the (random) warm-up.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Literal

import numpy as np
import torch

from heed.agents.common.errors import require
from heed.agents.common.validate import Range, validate


@dataclass(frozen=True)
class Config:
    """Side-by-side training-speed benchmark."""

    env: str = "ALE/Pong-v5"
    """Atari id."""
    rounds: Annotated[int, Range(1, 1000)] = 5
    """Alternating rounds."""
    window_steps: Annotated[int, Range(1, 10_000_000)] = 2000
    """Agent steps per contender per round."""
    warmup: Annotated[int, Range(1, 10_000_000)] = 5000
    """Agent steps of experience before learning (not timed)."""
    buffer_size: Annotated[int, Range(32, 10_000_000)] = 50_000
    """Replay capacity (same for all)."""
    threads: Annotated[int, Range(1, 1024)] = 1
    """torch threads (the same for every contender)."""
    heed_envs: Annotated[tuple[int, ...], Range(1, 256)] = (1, 4)
    """heed vector-env sizes to run."""
    out: Path | None = None
    """Write the table (markdown) here as well."""
    contenders: tuple[Literal["tianshou", "torchrl"], ...] = ()
    """Other libraries' dueling + prioritized DQN to run beside heed with ``--prioritized`` (skipped,
    with one line, when not importable)."""
    ablation: bool = False
    """Time only heed's update (sampling included, random frames, no env; CPU ms of this process) four
    ways, alternating: as shipped, as before session 7 (SB3's x / 255 and a float conversion per pass, torch's
    clip), with torch's default Adam loop, and with the online net's passes on s and s' as one batch."""


def heed_contender(cfg: Config, num_envs: int, workdir: Path, prioritized: bool = False):
    from heed.agents.common.session import RunConfig
    from heed.agents.trainers.dqn import Config as TrainConfig
    from heed.agents.trainers.dqn import DQNTrainer, start_dqn_run

    name = f"heed{num_envs}{'-per' if prioritized else ''}"
    flags = RunConfig(seed=0, device="cpu", threads=cfg.threads, run_dir=workdir / name, progress=False)
    trainer = DQNTrainer(start_dqn_run(TrainConfig(
        env=cfg.env, total_steps=10**9, num_envs=num_envs, buffer_size=cfg.buffer_size, learning_starts=cfg.warmup,
        eval_interval=0, checkpoint_interval=0, n_steps=1, prioritized=prioritized, run=flags,
    )))
    trainer.advance(cfg.warmup + 4)

    def run(steps: int) -> float:
        start, t = trainer.step, time.perf_counter()
        trainer.advance(trainer.step + steps)
        return (trainer.step - start) / (time.perf_counter() - t)

    return run, trainer


def sb3_contender(cfg: Config, heed_learner: bool = False):
    """SB3's ``learn()`` on SB3's Atari pipeline: stock ``DQN``, or heed's ``DuelingDQN`` (heed's replay and update)."""
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from heed.agents.dqn import DuelingDQN
    from heed.envs.atari import check_atari_id

    env = VecFrameStack(make_atari_env(check_atari_id(cfg.env), n_envs=1, seed=0,
                                       env_kwargs={"frameskip": 1, "repeat_action_probability": 0.0}), 4)
    common = dict(buffer_size=cfg.buffer_size, learning_starts=cfg.warmup, batch_size=32, train_freq=4,
                  gradient_steps=1, target_update_interval=2000, learning_rate=1e-4, seed=0, device="cpu")
    if heed_learner:
        model = DuelingDQN("CnnPolicy", env, frame_stack=4, **common)
    else:
        model = DQN("CnnPolicy", env, policy_kwargs={"features_extractor_kwargs": {"features_dim": 1024}}, **common)
    model.learn(cfg.warmup + 4)

    def run(steps: int) -> float:
        start, t = model.num_timesteps, time.perf_counter()
        model.learn(steps, reset_num_timesteps=False)
        return (model.num_timesteps - start) / (time.perf_counter() - t)

    return run, model


def _shared_network(n_actions: int) -> torch.nn.Module:
    """heed's dueling network (the contenders' Q-network too), channels-last weights as heed's trainer uses."""
    from heed.agents.networks import build_q_network

    torch.manual_seed(0)
    return build_q_network((4, 84, 84), n_actions).to(memory_format=torch.channels_last)


def tianshou_contender(cfg: Config):
    """Tianshou's DQN (double Q, Huber) with prioritized replay on heed's env and network."""
    from tianshou.algorithm.modelfree.dqn import DQN as TianshouDQN
    from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.data import Collector, PrioritizedVectorReplayBuffer
    from tianshou.env import DummyVectorEnv
    from tianshou.utils.torch_utils import policy_within_training_step, torch_train_mode

    from heed.envs.atari import make_atari_env

    class QModel(torch.nn.Module):  # Tianshou's model contract: (obs, state, info) -> (Q [B, A], state)
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, obs, state=None, info=None, **kwargs):
            return self.net(torch.as_tensor(obs)), state

    env = DummyVectorEnv([lambda: make_atari_env(cfg.env, training=True)])
    probe = make_atari_env(cfg.env, training=True)
    policy = DiscreteQLearningPolicy(model=QModel(_shared_network(probe.action_space.n)), action_space=probe.action_space,
                                     observation_space=probe.observation_space, eps_training=0.01)
    probe.close()
    algo = TianshouDQN(policy=policy, optim=AdamOptimizerFactory(lr=1e-4, eps=1.5e-4), gamma=0.99,
                       n_step_return_horizon=1, target_update_freq=2000 // 4, is_double=True, huber_loss_delta=1.0)
    buffer = PrioritizedVectorReplayBuffer(cfg.buffer_size, 1, alpha=0.5, beta=0.4, ignore_obs_next=True,
                                           save_only_last_obs=True, stack_num=4)
    collector = Collector(algo, env, buffer, exploration_noise=True)
    collector.reset()
    collector.collect(n_step=cfg.warmup, random=True)
    steps_done = [0]

    def run(steps: int) -> float:
        t = time.perf_counter()
        with policy_within_training_step(policy):
            for _ in range(steps // 4):
                with torch_train_mode(policy, False):
                    collector.collect(n_step=4)
                with torch_train_mode(policy):
                    algo.update(buffer=buffer, sample_size=32)
        steps_done[0] += steps // 4 * 4
        return steps // 4 * 4 / (time.perf_counter() - t)

    return run, env, "Tianshou DQN, dueling + PER (1 env)"


def torchrl_contender(cfg: Config):
    """TorchRL's DQNLoss (double Q, Huber) with a prioritized TensorDict replay buffer on heed's env and network."""
    from tensordict.nn import TensorDictSequential
    try:
        from torchrl.collectors import Collector
    except ImportError:  # TorchRL < 0.11 names it SyncDataCollector
        from torchrl.collectors import SyncDataCollector as Collector
    from torchrl.data import LazyTensorStorage, TensorDictPrioritizedReplayBuffer, TensorDictReplayBuffer
    from torchrl.envs import GymWrapper
    from torchrl.modules import EGreedyModule, QValueActor
    from torchrl.objectives import DQNLoss, HardUpdate

    from heed.envs.atari import make_atari_env

    class QModel(torch.nn.Module):  # the collector steps one unbatched env: obs [4, 84, 84] -> Q [A]
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.net(obs[None])[0] if obs.ndim == 3 else self.net(obs)

    env = GymWrapper(make_atari_env(cfg.env, training=True))
    actor = QValueActor(QModel(_shared_network(env.action_spec.shape[-1])), in_keys=["observation"], spec=env.action_spec)
    explore = TensorDictSequential(actor, EGreedyModule(env.action_spec, eps_init=0.01, eps_end=0.01))
    loss = DQNLoss(actor, loss_function="smooth_l1", delay_value=True, double_dqn=True, action_space=env.action_spec)
    loss.make_value_estimator(gamma=0.99)
    target = HardUpdate(loss, value_network_update_interval=2000 // 4)
    optim = torch.optim.Adam(loss.parameters(), lr=1e-4, eps=1.5e-4)
    label = "TorchRL DQN, dueling + PER (1 env)"
    try:
        buffer = TensorDictPrioritizedReplayBuffer(alpha=0.5, beta=0.4, storage=LazyTensorStorage(cfg.buffer_size),
                                                   batch_size=32, priority_key="td_error")
    except RuntimeError:  # its segment trees live in a C++ extension built for one torch version
        print(f"TorchRL's prioritized replay does not load with torch {torch.__version__}: TorchRL runs with uniform replay")
        buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(cfg.buffer_size), batch_size=32)
        label = "TorchRL DQN, dueling, uniform replay (its PER does not load with this torch) (1 env)"
    collector = Collector(env, explore, frames_per_batch=4, total_frames=-1, init_random_frames=cfg.warmup)
    batches = iter(collector)
    for _ in range(cfg.warmup // 4):
        buffer.extend(next(batches).reshape(-1))

    def run(steps: int) -> float:
        t = time.perf_counter()
        for _ in range(steps // 4):
            buffer.extend(next(batches).reshape(-1))
            sample = buffer.sample()
            out = loss(sample)
            optim.zero_grad()
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(loss.parameters(), 10.0)
            optim.step()
            if hasattr(buffer, "update_tensordict_priority"):
                buffer.update_tensordict_priority(sample)
            target.step()
        return steps // 4 * 4 / (time.perf_counter() - t)

    return run, SimpleNamespace(close=collector.shutdown), label


#: contender name -> builder ``cfg -> (run(steps) -> steps/s, handle with close(), row label)``
CONTENDERS = {"tianshou": tianshou_contender, "torchrl": torchrl_contender}


def update_timer(trainer, train_freq: int = 4, updates: int = 20):
    """Steps/s if the loop did nothing but heed's update (sampling included) and, separately, the bare network update."""
    learner, buffer = trainer.learner, trainer.buffer
    obs = torch.randint(0, 255, (32, 4, 84, 84), dtype=torch.uint8)

    def full() -> float:
        t = time.perf_counter()
        for _ in range(updates):
            learner.update(buffer, 32)
        return train_freq * updates / (time.perf_counter() - t)

    def bare() -> float:
        opt = learner.optimizer
        t = time.perf_counter()
        for _ in range(updates):
            with torch.no_grad():
                learner.q_target(obs)
                learner.q_net(obs)
            loss = learner.q_net(obs).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return train_freq * updates / (time.perf_counter() - t)

    return full, bare


def update_ablation(cfg: Config, updates: int = 10) -> str:
    """ms per update for variants of the same update, each timed in turn per round (medians)."""
    import copy

    import torch.nn.functional as F

    from heed.agents.dqn import DQNLearner, adam_kwargs, td_targets
    from heed.agents.networks import build_q_network
    from heed.agents.replay import FrameReplayBuffer

    rng = np.random.default_rng(0)
    buffer = FrameReplayBuffer(cfg.buffer_size, 4, (4, 84, 84), np.uint8, frame_stack=4, n_steps=3, seed=0)
    obs = rng.integers(0, 255, (4, 4, 84, 84), dtype=np.uint8)
    for _ in range(min(cfg.warmup, cfg.buffer_size // 4)):
        nxt = rng.integers(0, 255, (4, 4, 84, 84), dtype=np.uint8)
        buffer.store(obs, nxt, rng.integers(0, 6, 4), rng.normal(size=4), rng.random(4) < 0.01, np.zeros(4, bool))
        obs = nxt

    def learner(**adam) -> DQNLearner:
        torch.manual_seed(0)
        net = build_q_network((4, 84, 84), 6).to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(net.parameters(), lr=1e-4, eps=1.5e-4, **adam)
        return DQNLearner(net, copy.deepcopy(net).requires_grad_(False), opt)

    def one_batch_update(lrn: DQNLearner) -> None:  # the online net on [s; s'] in one pass with grad
        b = buffer.sample(32)
        with torch.no_grad():
            next_target = lrn.q_target(b.next_observations)
        q_both = lrn.q_net(torch.cat([b.observations, b.next_observations]))
        best = q_both[32:].detach().argmax(dim=1, keepdim=True)
        y = b.rewards + (1 - b.dones) * b.discounts * next_target.gather(1, best)
        stock_step(lrn, F.smooth_l1_loss(q_both[:32].gather(1, b.actions), y))

    def legacy_update(lrn: DQNLearner) -> None:  # before session 7: SB3's x / 255 and a float conversion per pass
        b = buffer.sample(32)
        y = td_targets(lrn.q_net, lrn.q_target, b.rewards, b.next_observations, b.dones, b.discounts)
        stock_step(lrn, F.smooth_l1_loss(lrn.q_net(b.observations).gather(1, b.actions), y))

    def stock_step(lrn: DQNLearner, loss: torch.Tensor) -> None:  # backward, torch's own clip, Adam
        lrn.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lrn.q_net.parameters(), lrn.max_grad_norm)
        lrn.optimizer.step()

    shipped, loop, joint, legacy = learner(**adam_kwargs()), learner(), learner(**adam_kwargs()), learner(**adam_kwargs())
    for net in (legacy.q_net, legacy.q_target):  # SB3's own path: obs.float() / 255, then the convolutions
        net.features = lambda obs, net=net: net.extract_features(obs, net.features_extractor)
    variants = {
        "heed update as shipped (fused Adam)": lambda: shipped.update(buffer, 32),
        "before session 7: x / 255 and a float conversion per pass, stock clip": lambda: legacy_update(legacy),
        "torch's default Adam (a loop over parameters)": lambda: loop.update(buffer, 32),
        "online net on s and s' as one batch (fused Adam)": lambda: one_batch_update(joint),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(cfg.rounds):
        for name, fn in variants.items():
            t = time.process_time()  # this process's CPU time: less hit by other jobs' time slices
            for _ in range(updates):
                fn()
            times[name].append((time.process_time() - t) / updates * 1000)
    base = times["heed update as shipped (fused Adam)"]
    lines = [f"| update variant | CPU ms per update, median (min–max) over {cfg.rounds} rounds | time / shipped (median of per-round ratios) |",
             "|---|---|---|"]
    for name, values in times.items():
        ratio = statistics.median(np.array(values) / np.array(base))
        lines.append(f"| {name} | {statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f}) | {ratio:.2f}× |")
    return "\n".join(lines)


def main(cfg: Config) -> str:
    validate(cfg)
    require(len(cfg.heed_envs) > 0, "--heed-envs needs at least one size")
    torch.set_num_threads(cfg.threads)
    if cfg.ablation:
        table = update_ablation(cfg)
        print(table)
        if cfg.out is not None:
            cfg.out.write_text(table + "\n")
        return table
    work = Path(tempfile.mkdtemp(prefix="bench_dqn_"))
    contenders: dict[str, object] = {}
    print("warming up (filling replay buffers) ...", flush=True)
    contenders["SB3 DQN (1 env)"], _ = sb3_contender(cfg)
    contenders["heed DuelingDQN in SB3's learn() (1 env)"], _ = sb3_contender(cfg, heed_learner=True)
    trainers = {}
    for n in cfg.heed_envs:
        contenders[f"heed Dueling DQN ({n} env{'s' if n > 1 else ''})"], trainers[n] = heed_contender(cfg, n, work)
    closers = list(trainers.values())
    if cfg.contenders:
        import importlib.util

        contenders["heed Dueling DQN + PER (1 env)"], per = heed_contender(cfg, 1, work, prioritized=True)
        closers.append(per)
        for key in dict.fromkeys(cfg.contenders):
            if importlib.util.find_spec(key) is None:
                print(f"skipping {key}: it is not installed (pip install {key})")
                continue
            run, handle, label = CONTENDERS[key](cfg)
            contenders[label] = run
            closers.append(handle)
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
        lines.append(f"| {name} | {statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g}) | {ratio:.2f}× |")
    table = "\n".join(lines)
    print(table)
    if cfg.out is not None:
        cfg.out.write_text(table + "\n")
    for handle in closers:
        handle.close()
    return table


if __name__ == "__main__":
    from heed.agents.common.cli import parse_config
    from heed.agents.common.errors import cli_main

    cli_main(lambda: main(parse_config(Config, prog="bench_dqn.py", description=__doc__)))
