"""Recurrent PPO over any core of the table of parts (mlp, lstm, gru, rnn, ntm, dnc, act, ...) on a memory env.

    python scripts/train.py ppo --env heed/MemoryLength-v0 --memory-length 8 --total-steps 100000 core:ntm
    python scripts/train.py ppo --total-steps 100000 core:ntm --core.memory-size 32 --core.read-heads 2
    python scripts/train.py ppo --resume runs/ppo__heed-MemoryLength-v0__1__... --total-steps 200000

TensorBoard under the run dir: ``losses/`` (policy_gradient_loss, value_loss, entropy_loss, aux_loss,
approx_kl, clip_fraction), ``charts/`` (ep_rew_mean, ep_len_mean, success_rate, fps,
explained_variance, learning_rate) and ``eval/`` (the greedy evaluation at the end); one row per
iteration in ``metrics.jsonl``. Checkpoints (safetensors+JSON) every ``--checkpoint-every`` env steps
and at the end; Ctrl-C or SIGTERM saves the last completed iteration first. The run plumbing is
:mod:`heed.agents.common.session`'s.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np

from heed.agents.common.errors import HeedError, require, suggest
from heed.agents.common.run import Every, config_to_dict
from heed.agents.common.safe_io import disk_errors, write_json_atomic
from heed.agents.common.session import ResumeOverride, RunConfig, RunFlags, start_run
from heed.agents.common.validate import AtLeastOne, NonNegative, Positive, Range, UnitInterval
from heed.agents.cores.act import ACTConfig
from heed.agents.cores.dnc import DNCConfig
from heed.agents.cores.gru import GRUConfig
from heed.agents.cores.lstm import LSTMConfig
from heed.agents.cores.ntm import NTMConfig
from heed.agents.cores.rnn import RNNConfig
from heed.agents.parts import CORES, core_choice
from heed.agents.ppo import PPOConfig, RecurrentPPO
from heed.agents.recurrent_policy import RecurrentActorCritic

KIND = "ppo"

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
    memory_length: Annotated[int | None, Range(0, 1_000_000)] = None
    """heed/MemoryLength-v0 only: steps between the cue and the query (L)."""
    env_option: tuple[str, ...] = ()
    """Extra gym.make keyword arguments as KEY=VALUE (VALUE parsed as JSON when it can be)."""
    total_steps: Annotated[int | None, AtLeastOne, ResumeOverride] = None
    """Env steps over all envs (default 100000; on --resume, the saved target unless given)."""
    n_envs: Annotated[int, Range(1, 1024)] = 8
    """Parallel envs (SB3 DummyVecEnv)."""
    n_steps: Annotated[int, Range(1, 65_536)] = 64
    """Steps per env per rollout."""
    seq_len: Annotated[int, NonNegative] = 0
    """Truncated-BPTT sequence length (must divide n_steps; 0 = the whole rollout)."""
    n_epochs: Annotated[int, Range(1, 1000)] = 4
    """Passes over each rollout."""
    n_minibatches: Annotated[int, Range(1, 1_000_000)] = 4
    """Minibatches per pass (of sequences)."""
    learning_rate: Annotated[float, Positive] = 1e-3
    """Adam step size."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over total_steps."""
    gamma: Annotated[float, UnitInterval] = 0.99
    """Discount."""
    gae_lambda: Annotated[float, UnitInterval] = 0.95
    """GAE lambda."""
    clip_range: Annotated[float, Positive] = 0.2
    """PPO ratio clip epsilon."""
    ent_coef: float = 0.01
    """Entropy bonus weight (any finite number)."""
    vf_coef: Annotated[float, NonNegative] = 0.5
    """Value loss weight."""
    max_grad_norm: Annotated[float, Positive] = 0.5
    """Global gradient-norm clip."""
    target_kl: Annotated[float, NonNegative] = 0.0
    """Stop an update early when approx KL exceeds 1.5x this (0 = never)."""
    norm_obs: bool = False
    """Normalise observations with running statistics (SB3 VecNormalize)."""
    norm_reward: bool = False
    """Scale rewards by the running std of the discounted return (SB3 VecNormalize)."""
    eval_episodes: Annotated[int, Range(0, 1_000_000), ResumeOverride] = 200
    """Greedy evaluation episodes at the end (0 = none)."""
    checkpoint_every: Annotated[int, AtLeastOne, ResumeOverride] = 50_000
    """Save a checkpoint every this many env steps."""
    run: RunFlags = field(default_factory=RunConfig)
    """--seed (torch, the envs, the minibatch order), --device, --threads, --run-dir, --resume, --progress"""


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


def probe_env(env_id: str, kwargs: dict[str, Any]) -> bool:
    """Check that PPO can drive ``env_id`` (Discrete or 1-D MultiBinary actions); whether to flatten its observations."""
    import gymnasium as gym

    from heed.envs.registration import make_env

    probe = make_env(env_id, **kwargs)
    try:
        space = probe.action_space
        if not isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiBinary)) or (
            isinstance(space, gym.spaces.MultiBinary) and len(space.shape) != 1
        ):
            raise HeedError(f"recurrent PPO supports Discrete and 1-D MultiBinary actions; '{env_id}' has {space}")
        return not (isinstance(probe.observation_space, gym.spaces.Box) and len(probe.observation_space.shape) == 1)
    finally:
        probe.close()


def make_vec_env(
    env_id: str, n_envs: int, seed: int, kwargs: dict[str, Any] | None = None, norm_obs: bool = False,
    norm_reward: bool = False, gamma: float = 0.99,
):
    """SB3 ``DummyVecEnv`` of flattened-observation envs + ``VecMonitor`` (+ ``VecNormalize``)."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

    from heed.envs.registration import make_env

    kwargs = dict(kwargs or {})
    flat = probe_env(env_id, kwargs)

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


def _check(cfg: Config) -> dict[str, Any]:
    """What the ranges cannot say: --seq-len divides --n-steps and the env options parse; returns them."""
    require(cfg.seq_len == 0 or cfg.n_steps % cfg.seq_len == 0, "--seq-len must divide --n-steps (or be 0)")
    return env_kwargs(cfg)


#: the loss terms of PPO's update stats (logged as losses/, where a NaN stops the run); the rest are charts/
LOSS_STATS = ("policy_gradient_loss", "value_loss", "entropy_loss", "aux_loss", "approx_kl", "clip_fraction")


def main(cfg: Config) -> dict[str, Any]:
    """Train (or resume with ``--resume``) and evaluate; returns the final evaluation and the run dir."""
    from tqdm import tqdm

    if cfg.run.resume is None:
        probe_env(cfg.env, _check(cfg))  # a bad env or option is refused before a run folder is made
    run = start_run(KIND, cfg, name=cfg.env, metric_tags=("eval/mean_return", "eval/success_rate"))
    cfg = run.cfg
    kwargs = _check(cfg)
    total = cfg.total_steps if cfg.total_steps is not None else DEFAULT_TOTAL_STEPS
    if run.checkpoint is not None:
        model = RecurrentPPO.from_checkpoint(run.checkpoint, device=run.device)
        venv = make_vec_env(cfg.env, cfg.n_envs, cfg.run.seed + model.iterations, kwargs, cfg.norm_obs,
                            cfg.norm_reward, cfg.gamma)
        model.attach_env(venv)
    else:
        import gymnasium as gym

        venv = make_vec_env(cfg.env, cfg.n_envs, cfg.run.seed, kwargs, cfg.norm_obs, cfg.norm_reward, cfg.gamma)
        space = venv.action_space
        bits = isinstance(space, gym.spaces.MultiBinary)
        policy = RecurrentActorCritic(
            int(np.prod(venv.observation_space.shape)), int(space.n if not bits else space.shape[0]), cfg.core,
            action_kind="multibinary" if bits else "discrete",
        )
        ppo_cfg = PPOConfig(
            n_steps=cfg.n_steps, n_epochs=cfg.n_epochs, n_minibatches=cfg.n_minibatches, seq_len=cfg.seq_len,
            learning_rate=cfg.learning_rate, anneal_lr=cfg.anneal_lr, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
            clip_range=cfg.clip_range, ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
            target_kl=cfg.target_kl,
        )
        model = RecurrentPPO(policy, venv, ppo_cfg, run.device, seed=cfg.run.seed)

    saved_at = [run.start_step if run.resumed else -1]

    def save() -> None:
        """Checkpoint the last completed iteration (once per step)."""
        if saved_at[0] == model.num_timesteps:
            return
        tensors, meta = model.checkpoint_payload()
        run.save(model.num_timesteps, tensors, {**meta["config"], "trainer": config_to_dict(cfg)}, meta["counters"],
                 model.optimizer)
        saved_at[0] = model.num_timesteps

    checkpoint_due = Every(cfg.checkpoint_every, model.num_timesteps)
    bar = tqdm(total=total, initial=min(model.num_timesteps, total), disable=not cfg.run.progress, unit="step",
               desc=f"ppo {cfg.core.name}")

    def callback(m: RecurrentPPO, stats: dict[str, float]) -> None:
        step = m.num_timesteps
        run.log_scalars("losses", {k: v for k, v in stats.items() if k in LOSS_STATS}, step)  # NaN stops here
        run.log_scalars("charts", {**{k: v for k, v in stats.items() if k not in LOSS_STATS},
                                   "learning_rate": m.optimizer.param_groups[0]["lr"]}, step)
        run.append_metrics(step, {"iterations": m.iterations, **stats})
        bar.update(min(step, total) - bar.n)
        bar.set_postfix({k: f"{stats[k]:.2f}" for k in ("ep_rew_mean", "success_rate") if k in stats})
        if checkpoint_due.due(step):
            save()

    started = time.perf_counter()
    with run.interruptible(save, "--total-steps"), bar:
        model.learn(total, callback)
    save()
    result: dict[str, Any] = {"run_dir": str(run.dir), "num_timesteps": model.num_timesteps,
                              "train_seconds": time.perf_counter() - started}
    final: dict[str, float] = {}
    if cfg.eval_episodes > 0:
        result["eval"] = evaluate(model, cfg.env, kwargs, cfg.eval_episodes, seed=cfg.run.seed + 10_000)
        run.log_scalars("eval", result["eval"], model.num_timesteps)
        with disk_errors(run.dir / "eval.json"):
            write_json_atomic(run.dir / "eval.json", result)
        final = {f"eval/{k}": result["eval"][k] for k in ("mean_return", "success_rate") if k in result["eval"]}
    venv.close()
    run.finish(final, "--total-steps", model.num_timesteps)
    return result
