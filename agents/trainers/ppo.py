"""Recurrent PPO over any core of the table of parts (mlp, lstm, gru, rnn, ntm, dnc, act, ...) on a memory env.

    python scripts/train.py ppo --env heed/MemoryLength-v0 --memory-length 8 --total-steps 100000 core:ntm
    python scripts/train.py ppo --total-steps 100000 core:ntm --core.memory-size 32 --core.read-heads 2
    python scripts/train.py ppo --resume runs/ppo__heed-MemoryLength-v0__1__... --total-steps 200000

Logs go to TensorBoard under the run dir (SB3's tags: rollout/, train/, time/, eval/); checkpoints
(safetensors+JSON) every ``--checkpoint-every`` env steps and at the end; Ctrl-C saves one first.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heed.agents.common.checkpoint import latest_checkpoint, save_run_checkpoint, write_json_atomic
from heed.agents.common.device import resolve_device
from heed.agents.common.errors import HeedError, require, suggest
from heed.agents.common.run import default_run_dir, open_writer, prepare_run_dir, save_config
from heed.agents.cores.act import ACTConfig
from heed.agents.cores.dnc import DNCConfig
from heed.agents.cores.gru import GRUConfig
from heed.agents.cores.lstm import LSTMConfig
from heed.agents.cores.ntm import NTMConfig
from heed.agents.cores.rnn import RNNConfig
from heed.agents.parts import CORES, core_choice, part_from_dict
from heed.agents.ppo import PPOConfig, RecurrentPPO
from heed.agents.recurrent_policy import RecurrentActorCritic

#: PPO's starting point for each core where it differs from the core's own defaults: a 64-unit
#: controller and a 16 x 8 memory (the settings of the results in RESULTS.md)
PPO_CORE_DEFAULTS = {
    "lstm": LSTMConfig(hidden_size=64),
    "gru": GRUConfig(hidden_size=64),
    "rnn": RNNConfig(hidden_size=64),
    "ntm": NTMConfig(hidden_size=64, memory_size=16, memory_width=8),
    "dnc": DNCConfig(hidden_size=64, memory_size=16, memory_width=8, read_heads=1),
    "act": ACTConfig(hidden_size=64),
}
PPOCore = core_choice(PPO_CORE_DEFAULTS)


def core_config(name: str):
    """PPO's default config of core ``name`` (:data:`PPO_CORE_DEFAULTS`, else the core's own)."""
    if name not in CORES:
        raise HeedError(f"unknown core '{name}'.{suggest(name, CORES)} Cores: {', '.join(CORES)}")
    return PPO_CORE_DEFAULTS.get(name) or CORES[name][0]()


@dataclass(frozen=True)
class Config:
    """Recurrent PPO (heed): any core as a policy on any discrete-action Gymnasium env."""

    env: str = "heed/MemoryLength-v0"
    """Gymnasium id (heed/MemoryLength-v0, heed/CartPoleNoVel-v0, heed/Copy-v0, popgym-..., CartPole-v1)."""
    core: PPOCore = field(default_factory=lambda: PPO_CORE_DEFAULTS["lstm"])
    """Policy core, chosen last on the command line: core:NAME [--core.FIELD VALUE ...] (mlp is the
    feedforward baseline; act adds its ponder cost to the PPO loss)."""
    memory_length: int | None = None
    """heed/MemoryLength-v0 only: steps between the cue and the query (L)."""
    env_option: tuple[str, ...] = ()
    """Extra gym.make keyword arguments as KEY=VALUE (VALUE parsed as JSON when it can be)."""
    total_steps: int | None = None
    """Env steps over all envs (default 100000; on --resume, the saved target unless given)."""
    n_envs: int = 8
    """Parallel envs (SB3 DummyVecEnv)."""
    n_steps: int = 64
    """Steps per env per rollout."""
    seq_len: int = 0
    """Truncated-BPTT sequence length (must divide n_steps; 0 = the whole rollout)."""
    n_epochs: int = 4
    """Passes over each rollout."""
    n_minibatches: int = 4
    """Minibatches per pass (of sequences)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over total_steps."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO ratio clip epsilon."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float = 0.0
    """Stop an update early when approx KL exceeds 1.5x this (0 = never)."""
    norm_obs: bool = False
    """Normalise observations with running statistics (SB3 VecNormalize)."""
    norm_reward: bool = False
    """Scale rewards by the running std of the discounted return (SB3 VecNormalize)."""
    eval_episodes: int = 200
    """Greedy evaluation episodes at the end (0 = none)."""
    checkpoint_every: int = 50_000
    """Save a checkpoint every this many env steps."""
    seed: int = 1
    """Seeds torch, the envs and the minibatch order."""
    device: str = "cpu"
    """cpu, cuda or auto (small recurrent policies are usually fastest on the CPU)."""
    threads: int = 1
    """torch CPU threads (the machine is shared: keep it small)."""
    run_dir: Path | None = None
    """Where logs and checkpoints go (default runs/ppo__ENV__SEED__TIME)."""
    resume: Path | None = None
    """Continue the run in this dir from its latest checkpoint (its saved config is used)."""
    progress: bool = True
    """Show a tqdm progress bar."""


DEFAULT_TOTAL_STEPS = 100_000


def env_kwargs(cfg: Config) -> dict[str, Any]:
    """The gym.make keyword arguments of ``cfg`` (``--memory-length`` and ``--env-option``)."""
    kwargs: dict[str, Any] = {}
    if cfg.memory_length is not None:
        kwargs["memory_length"] = cfg.memory_length
    for item in cfg.env_option:
        require("=" in item, f"--env-option wants KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


def make_vec_env(
    env_id: str, n_envs: int, seed: int, kwargs: dict[str, Any] | None = None, norm_obs: bool = False,
    norm_reward: bool = False, gamma: float = 0.99,
):
    """SB3 ``DummyVecEnv`` of flattened-observation envs + ``VecMonitor`` (+ ``VecNormalize``)."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

    from heed.envs.registration import make_env

    kwargs = dict(kwargs or {})
    probe = make_env(env_id, **kwargs)
    if not isinstance(probe.action_space, (gym.spaces.Discrete, gym.spaces.MultiBinary)) or (
        isinstance(probe.action_space, gym.spaces.MultiBinary) and len(probe.action_space.shape) != 1
    ):
        raise HeedError(f"recurrent PPO supports Discrete and 1-D MultiBinary actions; '{env_id}' has {probe.action_space}")
    flat = not (isinstance(probe.observation_space, gym.spaces.Box) and len(probe.observation_space.shape) == 1)
    probe.close()

    def factory():
        env = make_env(env_id, **kwargs)
        return gym.wrappers.FlattenObservation(env) if flat else env

    venv = VecMonitor(DummyVecEnv([factory] * n_envs))
    venv.seed(seed)
    if norm_obs or norm_reward:
        venv = VecNormalize(venv, norm_obs=norm_obs, norm_reward=norm_reward, gamma=gamma)
    return venv


def evaluate(model: RecurrentPPO, env_id: str, kwargs: dict[str, Any], n_episodes: int, seed: int,
             n_envs: int = 8, deterministic: bool = True) -> dict[str, float]:
    """Greedy episodes on fresh envs: mean return, mean length and success rate (if the env reports it)."""
    venv = make_vec_env(env_id, n_envs, seed, kwargs)
    obs, state = venv.reset(), None
    starts = np.ones(n_envs, dtype=bool)
    returns, lengths, successes = [], [], []
    while len(returns) < n_episodes:
        actions, state = model.predict(obs, state, starts, deterministic=deterministic)
        obs, _, done, infos = venv.step(actions)
        starts = done
        for info in infos:
            if "episode" in info and len(returns) < n_episodes:
                returns.append(info["episode"]["r"])
                lengths.append(info["episode"]["l"])
                if "is_success" in info:
                    successes.append(float(info["is_success"]))
    venv.close()
    out = {"mean_return": float(np.mean(returns)), "mean_length": float(np.mean(lengths)), "episodes": len(returns)}
    if successes:
        out["success_rate"] = float(np.mean(successes))
    return out


def _resolve(cfg: Config) -> Config:
    """On ``--resume``, the saved config with the new ``total_steps`` (if given) and the run dir."""
    if cfg.resume is None:
        return cfg
    run_dir = Path(cfg.resume)
    saved_path = run_dir / "config.json"
    require(saved_path.exists(), f"cannot resume '{run_dir}': it has no config.json (not a ppo run dir?)")
    saved = json.loads(saved_path.read_text())
    names = {f.name for f in dataclasses.fields(Config)}
    saved = {k: v for k, v in saved.items() if k in names}
    saved["env_option"] = tuple(saved.get("env_option", ()))
    saved["core"] = part_from_dict(saved["core"])
    saved.update(run_dir=run_dir, resume=run_dir, progress=cfg.progress)
    if cfg.total_steps is not None:
        saved["total_steps"] = cfg.total_steps
    return Config(**saved)


def main(cfg: Config) -> dict[str, Any]:
    """Train (or resume) and evaluate; returns the final evaluation and the run dir."""
    from tqdm import tqdm

    cfg = _resolve(cfg)
    require(cfg.n_envs >= 1 and cfg.n_steps >= 1, "--n-envs and --n-steps must be at least 1")
    require(cfg.seq_len == 0 or cfg.n_steps % cfg.seq_len == 0, "--seq-len must divide --n-steps (or be 0)")
    total = cfg.total_steps if cfg.total_steps is not None else DEFAULT_TOTAL_STEPS
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    kwargs = env_kwargs(cfg)
    run_dir = prepare_run_dir(cfg.run_dir or default_run_dir("ppo", cfg.env, cfg.seed))
    ckpt = latest_checkpoint(run_dir) if cfg.resume is not None else None
    if cfg.resume is not None and ckpt is None:
        raise HeedError(f"cannot resume '{run_dir}': it has no checkpoint yet")
    save_config(run_dir, dataclasses.replace(cfg, run_dir=run_dir, resume=None, total_steps=total))

    ppo_cfg = PPOConfig(
        n_steps=cfg.n_steps, n_epochs=cfg.n_epochs, n_minibatches=cfg.n_minibatches, seq_len=cfg.seq_len,
        learning_rate=cfg.learning_rate, anneal_lr=cfg.anneal_lr, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
        clip_range=cfg.clip_range, ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
        target_kl=cfg.target_kl,
    )
    if ckpt is not None:
        model = RecurrentPPO.load(str(ckpt), env=None, device=device)
        venv = make_vec_env(cfg.env, cfg.n_envs, cfg.seed + model.iterations, kwargs, cfg.norm_obs, cfg.norm_reward,
                            cfg.gamma)
        model.attach_env(venv)
    else:
        venv = make_vec_env(cfg.env, cfg.n_envs, cfg.seed, kwargs, cfg.norm_obs, cfg.norm_reward, cfg.gamma)
        import gymnasium as gym

        space = venv.action_space
        bits = isinstance(space, gym.spaces.MultiBinary)
        policy = RecurrentActorCritic(
            int(np.prod(venv.observation_space.shape)), int(space.n if not bits else space.shape[0]), cfg.core,
            action_kind="multibinary" if bits else "discrete",
        )
        model = RecurrentPPO(policy, venv, ppo_cfg, device, seed=cfg.seed)

    writer = open_writer(run_dir, cfg, purge_step=model.num_timesteps if ckpt is not None else None)
    bar = tqdm(total=total, initial=min(model.num_timesteps, total), disable=not cfg.progress, unit="step",
               desc=f"ppo {cfg.core.name}")
    last_save = [model.num_timesteps]

    def save() -> None:
        tensors, meta = model.checkpoint_payload()
        meta["config"]["trainer"] = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
        save_run_checkpoint(run_dir, model.num_timesteps, tensors, meta, model.optimizer)
        last_save[0] = model.num_timesteps

    def callback(m: RecurrentPPO, stats: dict[str, float]) -> None:
        step = m.num_timesteps
        for key, value in stats.items():
            group = "rollout" if key in ("ep_rew_mean", "ep_len_mean", "success_rate") else (
                "time" if key == "fps" else "train")
            writer.add_scalar(f"{group}/{key}", value, step)
        bar.update(min(step, total) - bar.n)
        bar.set_postfix({k: f"{stats[k]:.2f}" for k in ("ep_rew_mean", "success_rate") if k in stats})
        if step - last_save[0] >= cfg.checkpoint_every:
            save()

    started = time.perf_counter()
    try:
        model.learn(total, callback)
    except KeyboardInterrupt:
        save()
        raise
    finally:
        bar.close()
    save()
    result: dict[str, Any] = {"run_dir": str(run_dir), "num_timesteps": model.num_timesteps,
                              "train_seconds": time.perf_counter() - started}
    if cfg.eval_episodes > 0:
        result["eval"] = evaluate(model, cfg.env, kwargs, cfg.eval_episodes, seed=cfg.seed + 10_000)
        for key, value in result["eval"].items():
            writer.add_scalar(f"eval/{key}", value, model.num_timesteps)
        write_json_atomic(run_dir / "eval.json", result)
    writer.close()
    venv.close()
    return result
