"""Benchmark heed's batched saliency and sensitivity matrix against the per-frame / per-step ways.

    nice -n 10 python scripts/bench_saliency.py

A. Value + advantage saliency frames/s on the dueling Nature CNN (``[4, 84, 84]`` uint8, 6 actions):
   heed's :func:`analysis.dueling_saliency` on batches vs Captum ``Saliency`` called per frame
   (one call per stream: Captum takes one target per example) vs Greydanus perturbation saliency
   (one pass per stream, as in the paper's actor and critic maps).
B. The ``[T, T]`` sensitivity matrix of an ``nn.LSTM`` (hidden 128, T = 256, D inputs) for one
   sequence: :func:`analysis.sensitivity_matrix` vs a naive loop of one backward pass per output
   step (``torch.autograd.grad`` of ``y[:, t]`` with its K cotangents, default PyTorch settings).
   The naive loop is timed on ``naive_steps`` evenly spaced output steps and scaled to T (each of
   its backward passes runs through the whole sequence, so every step costs the same).

Methods alternate in windows within one run; each window reports wall time and the process's CPU
time (on a shared machine the CPU time is the steadier number). Prints a markdown table.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Config:
    rounds: int = 3
    """alternating windows per method"""
    heed_frames: int = 64
    """frames per heed window (batches of --batch-size)"""
    captum_frames: int = 16
    """frames per Captum window"""
    perturbation_frames: int = 2
    """frames per perturbation window"""
    batch_size: int = 32
    """heed saliency batch size"""
    lstm_rounds: int = 2
    """alternating windows for the sensitivity matrix"""
    hidden: int = 128
    """LSTM hidden size (= outputs K)"""
    steps: int = 256
    """sequence length T"""
    inputs: int = 8
    """LSTM input size D"""
    naive_steps: int = 8
    """output steps the naive loop is timed on (scaled to T)"""
    threads: int = 1
    """torch CPU threads"""
    seed: int = 0
    """seed of the network and inputs"""


def _timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):.4g} ({min(values):.4g}-{max(values):.4g})"


def bench_saliency(cfg: Config) -> list[dict]:
    from captum.attr import Saliency

    from heed.agents.networks import build_q_network
    from heed.analysis import dueling_saliency, perturbation_saliency

    torch.manual_seed(cfg.seed)
    net = build_q_network((4, 84, 84), 6).eval()
    obs = torch.randint(0, 256, (max(cfg.heed_frames, cfg.captum_frames), 4, 84, 84), dtype=torch.uint8)
    sal_v, sal_a = Saliency(net.value), Saliency(net.advantage)

    def heed():
        for s in range(0, cfg.heed_frames, cfg.batch_size):
            dueling_saliency(net.value, net.advantage, obs[s : s + cfg.batch_size], streams_fn=net.streams)

    def captum():
        for i in range(cfg.captum_frames):
            x = obs[i : i + 1].float().requires_grad_(True)
            with torch.no_grad():
                best = int(net.advantage(x).argmax(1))
            sal_v.attribute(x, target=0)
            sal_a.attribute(x, target=best)

    def perturbation():
        x = obs[: cfg.perturbation_frames]
        perturbation_saliency(net.value, x)
        perturbation_saliency(net.advantage, x)

    methods = {"heed batched (vmap over 2 cotangents)": (heed, cfg.heed_frames),
               "Captum Saliency, per-frame loop": (captum, cfg.captum_frames),
               "perturbation (Greydanus)": (perturbation, cfg.perturbation_frames)}
    heed()  # warm-up (vmap's first call is slow)
    captum()
    wall: dict[str, list[float]] = {k: [] for k in methods}
    cpu: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(cfg.rounds):
        for name, (fn, frames) in methods.items():
            w, c = _timed(fn)
            wall[name].append(frames / w)
            cpu[name].append(frames / c)
    return [{"method": k, "wall_fps": wall[k], "cpu_fps": cpu[k]} for k in methods]


def bench_sensitivity(cfg: Config) -> list[dict]:
    from heed.analysis import sensitivity_matrix

    torch.manual_seed(cfg.seed)
    lstm = torch.nn.LSTM(cfg.inputs, cfg.hidden, batch_first=True).eval()
    x = torch.randn(1, cfg.steps, cfg.inputs)
    picks = torch.linspace(0, cfg.steps - 1, cfg.naive_steps).long().tolist()

    def heed():
        sensitivity_matrix(lstm, x)

    def naive():
        xr = x.clone().requires_grad_(True)
        y = lstm(xr)[0]
        eye = torch.eye(cfg.hidden)[:, None, :]
        for t in picks:
            (g,) = torch.autograd.grad(y[:, t], xr, eye, retain_graph=True, is_grads_batched=True)
            g.pow(2).sum((0, 3)).sqrt()

    scale = cfg.steps / len(picks)
    wall: dict[str, list[float]] = {"heed": [], "naive": []}
    cpu: dict[str, list[float]] = {"heed": [], "naive": []}
    for _ in range(cfg.lstm_rounds):
        for name, fn, mult in (("heed", heed, 1.0), ("naive", naive, scale)):
            w, c = _timed(fn)
            wall[name].append(w * mult)
            cpu[name].append(c * mult)
    return [
        {"method": "heed sensitivity_matrix (forward mode, vmapped JVPs)", "wall_s": wall["heed"], "cpu_s": cpu["heed"]},
        {"method": f"naive: one backward per output step (timed on {len(picks)} steps, x{scale:g})",
         "wall_s": wall["naive"], "cpu_s": cpu["naive"]},
    ]


def main(cfg: Config) -> dict:
    """Run both benchmarks and print markdown tables."""
    torch.set_num_threads(cfg.threads)
    sal = bench_saliency(cfg)
    print("| value + advantage saliency | frames/s, CPU time: median (min-max) | frames/s, wall | heed / this (CPU) |")
    print("|---|---|---|---|")
    heed_cpu = statistics.median(sal[0]["cpu_fps"])
    for row in sal:
        ratio = heed_cpu / statistics.median(row["cpu_fps"])
        print(f"| {row['method']} | {_stats(row['cpu_fps'])} | {_stats(row['wall_fps'])} | {ratio:.1f}x |")
    sens = bench_sensitivity(cfg)
    print(f"\n| [T, T] sensitivity, LSTM hidden {cfg.hidden}, T={cfg.steps}, D={cfg.inputs} |"
          " CPU seconds: median (min-max) | wall seconds | this / heed (CPU) |")
    print("|---|---|---|---|")
    base = statistics.median(sens[0]["cpu_s"])
    for row in sens:
        print(f"| {row['method']} | {_stats(row['cpu_s'])} | {_stats(row['wall_s'])} |"
              f" {statistics.median(row['cpu_s']) / base:.1f}x |")
    return {"saliency": sal, "sensitivity": sens}


if __name__ == "__main__":
    import tyro

    from heed.agents.common.errors import cli_main

    config = tyro.cli(Config, description=__doc__)
    cli_main(lambda: main(config))
