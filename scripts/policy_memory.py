"""What a trained policy remembers: the sequential Jacobian of its action logits over an episode.

    python scripts/policy_memory.py --run runs/bench_ppo_memory/ntm_L8_s1 --out-dir docs/figures --prefix ppo_ntm_L8

For a PPO run (or checkpoint) it plays greedy episodes, computes ``S[t, s] = ||d logits_t / d obs_s||``
for every action step t and every observation step s (the sequential Jacobian, Graves) and writes

- ``<prefix>_sensitivity.png``: the row-normalised matrix and the decision step's profile
  (first episode, plus every episode's profile and their mean);
- ``<prefix>_sensitivity.mp4``: a video aligned with the first episode (``--no-video`` skips it);
- ``<prefix>_weightings.png``: the read/write weightings over the episode (NTM and DNC policies);
- ``<prefix>.json``: per episode, the input step where the decision's sensitivity peaks, and the return.

Derivatives are taken with respect to the observations the policy sees (normalised, if the run used
``--norm-obs``). ``--prefix`` is a plain file name prefix: every output stays in ``--out-dir``, and
files of these names there are replaced only when heed wrote them (or with ``--overwrite``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch

from heed.agents.common.checkpoint import load_checkpoint
from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.safe_io import OutputFolder, check_file_name, disk_errors
from heed.agents.common.validate import Range, SeedRange, config_from_dict, validate
from heed.agents.ppo import RecurrentPPO
from heed.analysis import policy_figures as pf


@dataclass(frozen=True)
class Config:
    """Sequential-Jacobian analysis of a recurrent PPO policy."""

    run: Path
    """A ppo run dir (its latest checkpoint) or a checkpoint dir."""
    env: str | None = None
    """Env id (default: the run's)."""
    memory_length: Annotated[int | None, Range(0, 1_000_000)] = None
    """heed/MemoryLength-v0: override the run's L."""
    episodes: Annotated[int, Range(1, 10_000)] = 8
    """Greedy episodes to analyse (the figure and video show the first)."""
    max_steps: Annotated[int, Range(1, 10_000)] = 200
    """Cut episodes longer than this."""
    seed: Annotated[int, SeedRange] = 0
    """Env seed of the first episode (episode i uses seed + i)."""
    out_dir: Path | None = None
    """Where the outputs go (default: RUN/analysis)."""
    prefix: str = "policy_memory"
    """File name prefix (a plain name: the files stay in --out-dir)."""
    video: bool = True
    """Write the mp4."""
    fps: Annotated[int, Range(1, 240)] = 2
    """Video frame rate."""
    overwrite: bool = False
    """replace existing files of the output names that heed did not write"""


def _trainer_options(saved: Any, where: str):
    """The env, L and observation normalisation a PPO checkpoint was trained with, types and ranges checked."""
    from heed.agents.trainers import ppo as trainer

    if not isinstance(saved, dict):
        raise HeedError(f"{where}: 'trainer' is not an object")
    wanted = {k: saved[k] for k in ("env", "memory_length", "norm_obs") if k in saved}
    return config_from_dict(trainer.Config, wanted, f"{where}: trainer")


def _normaliser(model: RecurrentPPO, norm_obs: bool):
    """SB3 VecNormalize's observation transform from the saved statistics (identity if none)."""
    saved = model.saved_normalizer
    if not norm_obs or "obs_rms.mean" not in saved:
        return lambda o: o
    mean, var = saved["obs_rms.mean"].numpy(), saved["obs_rms.var"].numpy()
    return lambda o: np.clip((o - mean) / np.sqrt(var + 1e-8), -10.0, 10.0).astype(np.float32)


@torch.no_grad()
def play(model: RecurrentPPO, env, normalise, seed: int, max_steps: int) -> dict[str, Any]:
    """One greedy episode: observations ``[T, D]`` (as the policy saw them), actions, return, attention."""
    from heed.agents.recurrent_policy import greedy_actions

    policy = model.policy
    obs, _ = env.reset(seed=seed)
    state, start = policy.initial_state(1), torch.ones(1, dtype=torch.bool)
    seen, actions, renders, records, total = [], [], [], {}, 0.0
    for _ in range(max_steps):
        x = torch.as_tensor(normalise(np.asarray(obs, np.float32).reshape(-1)))[None]
        out = policy.step(x, state, start)
        action = greedy_actions(out.logits, policy.action_kind)[0]
        seen.append(x[0])
        actions.append(action.numpy())
        for k, v in out.attention.items():
            records.setdefault(k, []).append(v[0])
        frame = env.render() if env.render_mode == "rgb_array" else None
        if frame is not None:
            renders.append(frame)
        obs, reward, term, trunc, _ = env.step(action.numpy() if action.dim() else int(action))
        total += float(reward)
        state, start = out.state, torch.zeros(1, dtype=torch.bool)
        if term or trunc:
            break
    return {"obs": torch.stack(seen), "actions": np.stack(actions), "return": total,
            "attention": {k: torch.stack(v) for k, v in records.items()}, "renders": renders or None}


def main(cfg: Config) -> dict[str, Any]:
    """Play the episodes, write the figures, video and JSON into ``--out-dir``; return the summary."""
    from heed.envs.registration import make_env

    validate(cfg)
    if cfg.prefix:
        check_file_name(cfg.prefix, "--prefix")  # before any loading: the outputs stay in --out-dir
    torch.set_num_threads(1)
    ckpt = load_checkpoint(str(cfg.run), expect_kind="ppo")
    model = RecurrentPPO.from_checkpoint(ckpt)
    saved = ckpt.config.get("trainer", {})
    trained = _trainer_options(saved, f"checkpoint '{ckpt.path}'")
    env_id = cfg.env or (trained.env if "env" in saved else None)
    if env_id is None:
        raise HeedError("the checkpoint does not name its env: pass --env")
    kwargs = {}
    length = cfg.memory_length if cfg.memory_length is not None else trained.memory_length
    if env_id == "heed/MemoryLength-v0" and length is not None:
        kwargs["memory_length"] = length
    out_dir = Path(cfg.out_dir) if cfg.out_dir is not None else Path(cfg.run) / "analysis"
    folder = OutputFolder(out_dir, cfg.overwrite)
    names = {"figure": "_sensitivity.png", "weightings": "_weightings.png", "json": ".json"}
    names.update({"video": "_sensitivity.mp4"} if cfg.video else {})
    files = {key: folder.claim(cfg.prefix + suffix, "--prefix") for key, suffix in names.items()}
    env = make_env(env_id, **kwargs)
    if "rgb_array" in env.metadata.get("render_modes", []):
        env = make_env(env_id, render_mode="rgb_array", **kwargs)
    model.policy.eval()
    with disk_errors(out_dir):
        return _analyse(cfg, model, env, env_id, kwargs, _normaliser(model, trained.norm_obs), files)


def _analyse(cfg: Config, model: RecurrentPPO, env, env_id: str, kwargs: dict[str, Any], normalise,
             files: dict[str, Path]) -> dict[str, Any]:
    from heed.analysis.sequential import sensitivity_matrix

    length = kwargs.get("memory_length")
    episodes, profiles = [], []
    first: dict[str, Any] = {}
    for i in range(cfg.episodes):
        ep = play(model, env, normalise, cfg.seed + i, cfg.max_steps)
        sens = sensitivity_matrix(model.policy.logits_fn(), ep["obs"][None])[0]  # [T, T]
        decision = sens[-1]
        profiles.append(decision.numpy())
        episodes.append({"seed": cfg.seed + i, "length": int(sens.shape[0]), "return": ep["return"],
                         "peak_step": int(decision.argmax()),
                         "peak_share": float(decision.max() / decision.sum().clamp_min(1e-30))})
        if i == 0:
            first = {"ep": ep, "sens": sens}
    lengths = {len(p) for p in profiles}
    prof = np.stack(profiles) if len(lengths) == 1 else None
    paths = {"figure": str(pf.sensitivity_figure(
        first["sens"], files["figure"], profiles=prof,
        title=f"{model.policy.core_name} policy on {env_id}{f' (L = {length})' if 'memory_length' in kwargs else ''}",
    ))}
    ep = first["ep"]
    heads = pf.split_heads(ep["attention"])
    if heads:
        from heed.analysis.memory_figures import weighting_heatmaps

        paths["weightings"] = str(weighting_heatmaps(heads, files["weightings"],
                                                     title=f"{model.policy.core_name} weightings over the episode"))
    if cfg.video:
        from heed.analysis.video import write_video

        frames = pf.sensitivity_frames(first["sens"], ep["obs"], ep["renders"], ep["actions"])
        paths["video"] = str(write_video(files["video"], frames, fps=cfg.fps))
    summary = {"run": str(cfg.run), "env": env_id, "env_kwargs": kwargs, "core": model.policy.core_name,
               "episodes": episodes, "peak_at_step_0": float(np.mean([e["peak_step"] == 0 for e in episodes])),
               "paths": paths}
    files["json"].write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="policy_memory.py", description=__doc__)))
