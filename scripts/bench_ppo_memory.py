"""The largest memory length each policy core solves under one step budget, and heed vs sb3-contrib.

    python scripts/bench_ppo_memory.py --total-steps 24576 --out docs/figures/ppo_memory_bench.json
    python scripts/bench_ppo_memory.py --cores lstm --sb3-length 8 --no-sweep

For every core (feedforward, LSTM, GRU, NTM, DNC) it trains recurrent PPO on
``heed/MemoryLength-v0`` for L = lengths[0], lengths[1], ... with the same budget and hyperparameters,
evaluates 200 greedy episodes, and stops at the first L below ``--threshold`` success ("largest L
solved" = the last L that passed). Then sb3-contrib's ``RecurrentPPO`` (LSTM) and heed's LSTM train
on the same env, budget and matched hyperparameters in this one process: success and wall-clock.
Results are written to ``--out`` (JSON) after every run and printed as markdown; an existing ``--out``
is replaced only when heed wrote it (or with ``--overwrite``). The runs go to
``RUNS_ROOT/CORE_L{L}_s{seed}`` (and ``RUNS_ROOT/vs_sb3/...``), where ``--runs-root`` defaults to
``runs/bench_ppo_memory/<--out's name without .json>``, so benchmarks written to different ``--out``
files never share a run folder. Every option, and every run folder (it must not hold a run yet), is
checked before the first run starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main, require
from heed.agents.common.safe_io import claim_output_file, disk_errors, write_json_atomic
from heed.agents.common.session import RunConfig, guard_new_run_dir
from heed.agents.common.validate import AtLeastOne, Range, SeedRange, UnitInterval, validate
from heed.agents.trainers import ppo as trainer


@dataclass(frozen=True)
class Config:
    """Memory-length sweep for recurrent PPO."""

    cores: tuple[str, ...] = ("mlp", "lstm", "ntm", "dnc", "gru")
    """Policy cores to sweep."""
    lengths: Annotated[tuple[int, ...], Range(0, 1_000_000)] = (1, 2, 4, 8, 16)
    """Memory lengths L, tried in order until one fails."""
    total_steps: Annotated[int, AtLeastOne] = 24_576
    """Env steps per run (the same for every core and L)."""
    threshold: Annotated[float, UnitInterval] = 0.9
    """Success rate that counts as solved."""
    seed: Annotated[int, SeedRange] = 1
    """Seed of every run."""
    n_envs: Annotated[int, Range(1, 1024)] = 32
    """Parallel envs."""
    n_steps: Annotated[int, Range(1, 65_536)] = 32
    """Steps per env per rollout (one BPTT sequence)."""
    n_minibatches: Annotated[int, Range(1, 1_000_000)] = 2
    """Minibatches per epoch."""
    n_epochs: Annotated[int, Range(1, 1000)] = 4
    """Epochs per rollout."""
    hidden_size: Annotated[int, Range(1, 4096)] = 64
    """Core hidden size (the other core fields: PPO's defaults, agents/trainers/ppo.py PPO_CORE_DEFAULTS)."""
    eval_episodes: Annotated[int, Range(1, 1_000_000)] = 200
    """Greedy evaluation episodes per run."""
    sweep: bool = True
    """Run the sweep over cores and lengths."""
    sb3_length: Annotated[int, Range(-1, 1_000_000)] = 8
    """Memory length of the heed-vs-sb3-contrib LSTM comparison (-1 = skip it)."""
    runs_root: Path | None = None
    """Where the runs go (default: runs/bench_ppo_memory/<the --out file's name without its suffix>)."""
    out: Path = Path("docs/figures/ppo_memory_bench.json")
    """Results JSON (rewritten after each run)."""
    overwrite: bool = False
    """let --out replace an existing file that heed did not write"""


def runs_root(cfg: Config) -> Path:
    """``--runs-root``, or ``runs/bench_ppo_memory/<--out's stem>`` (one folder of runs per results file)."""
    return cfg.runs_root if cfg.runs_root is not None else Path("runs/bench_ppo_memory") / cfg.out.stem


def trial_config(cfg: Config, core: str, length: int, group: str = "") -> trainer.Config:
    """The PPO trainer config of one run of the benchmark (``group``: a subfolder, e.g. ``vs_sb3``)."""
    run_dir = runs_root(cfg) / group / f"{core}_L{length}_s{cfg.seed}"
    return trainer.Config(
        core=replace(trainer.core_config(core), hidden_size=cfg.hidden_size), memory_length=length,
        total_steps=cfg.total_steps, n_envs=cfg.n_envs, n_steps=cfg.n_steps, n_minibatches=cfg.n_minibatches,
        n_epochs=cfg.n_epochs, eval_episodes=cfg.eval_episodes, checkpoint_every=10**9,
        run=RunConfig(seed=cfg.seed, progress=False, run_dir=run_dir),
    )


def check_run_folders(cfg: Config, trials: list[tuple[str, int, str]]) -> None:
    """Refuse, before the first run, a planned run folder that holds a run (or twice the same folder)."""
    seen: set[Path] = set()
    for core, length, group in trials:
        run_dir = trial_config(cfg, core, length, group).run.run_dir
        require(run_dir not in seen, f"--cores and --lengths plan the run '{run_dir}' twice")
        seen.add(run_dir)
        try:
            guard_new_run_dir(run_dir)  # the trainer's own rule, checked for every run up front
        except HeedError:
            raise HeedError(f"the run folder '{run_dir}' is taken (an earlier benchmark's run, or other files); "
                            "give this benchmark another --runs-root (or --out), or move that folder away") from None


def heed_run(cfg: Config, core: str, length: int, group: str = "") -> dict[str, Any]:
    """Train and evaluate one heed policy; returns success rate and train seconds."""
    result = trainer.main(trial_config(cfg, core, length, group))
    return {"core": core, "L": length, "success": result["eval"]["success_rate"],
            "train_seconds": round(result["train_seconds"], 1), "run_dir": result["run_dir"]}


def sb3_run(cfg: Config, length: int) -> dict[str, Any]:
    """sb3-contrib RecurrentPPO (one shared LSTM, linear heads: heed's policy shape) on the same budget."""
    from sb3_contrib import RecurrentPPO as SB3RecurrentPPO

    venv = trainer.make_vec_env("heed/MemoryLength-v0", cfg.n_envs, cfg.seed, {"memory_length": length})
    model = SB3RecurrentPPO(
        "MlpLstmPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.n_envs * cfg.n_steps // cfg.n_minibatches,
        n_epochs=cfg.n_epochs, learning_rate=1e-3, gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.01,
        vf_coef=0.5, max_grad_norm=0.5, seed=cfg.seed, device="cpu", verbose=0,
        policy_kwargs={"lstm_hidden_size": cfg.hidden_size, "n_lstm_layers": 1, "shared_lstm": True,
                       "enable_critic_lstm": False, "net_arch": []},
    )
    start = time.perf_counter()
    model.learn(cfg.total_steps)
    seconds = time.perf_counter() - start
    ev = trainer.evaluate(model, "heed/MemoryLength-v0", {"memory_length": length}, cfg.eval_episodes,
                          seed=cfg.seed + 10_000)
    return {"core": "sb3-contrib RecurrentPPO (lstm)", "L": length, "success": ev["success_rate"],
            "train_seconds": round(seconds, 1)}


def main(cfg: Config) -> dict[str, Any]:
    """Run the sweep and the comparison; write ``--out`` after every run; return the results."""
    validate(cfg)
    trials = [(core, length, "") for core in (cfg.cores if cfg.sweep else ()) for length in cfg.lengths]
    trials += [("lstm", cfg.sb3_length, "vs_sb3")] if cfg.sb3_length >= 0 else []
    for core, length, group in trials:  # unknown cores and out-of-range sizes: refused before the first run
        validate(trial_config(cfg, core, length, group))
    check_run_folders(cfg, trials)
    out = claim_output_file(cfg.out, cfg.overwrite, "--out")
    torch.set_num_threads(1)
    config = {**vars(cfg), "runs_root": runs_root(cfg)}
    results: dict[str, Any] = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in config.items()},
                               "sweep": [], "largest_solved": {}, "sb3": []}

    def dump() -> None:
        with disk_errors(out):
            write_json_atomic(out, results)

    if cfg.sweep:
        for core in cfg.cores:
            solved = 0
            for length in cfg.lengths:
                row = heed_run(cfg, core, length)
                results["sweep"].append(row)
                print(f"{core:5s} L={length:3d} success={row['success']:.3f} ({row['train_seconds']} s)", flush=True)
                if row["success"] < cfg.threshold:
                    break
                solved = length
            results["largest_solved"][core] = solved
            dump()
    if cfg.sb3_length >= 0:
        heed = heed_run(cfg, "lstm", cfg.sb3_length, "vs_sb3")
        sb3 = sb3_run(cfg, cfg.sb3_length)
        results["sb3"] = [heed, sb3]
        for row in results["sb3"]:
            print(f"{row['core']} L={row['L']} success={row['success']:.3f} ({row['train_seconds']} s)", flush=True)
    dump()
    return results


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="bench_ppo_memory.py", description=__doc__)))
