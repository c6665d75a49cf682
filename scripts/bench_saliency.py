"""Benchmark every saliency method on the shipped Pong agent (object focus and speed), and the sensitivity matrix.

    OMP_NUM_THREADS=1 nice -n 10 python scripts/bench_saliency.py

A. The shipped Pong agent (``--checkpoint``) plays ``--steps`` steps (epsilon 0.01, seed ``--seed``).
   For every method of :data:`heed.analysis.SALIENCY_METHODS` (heed's batched implementations),
   the value and advantage maps of every step (:func:`heed.analysis.agent_video.stream_saliency`,
   batches of ``--batch-size``, default map options: newest frame, magnitude) are scored with the
   object-focus measure (:mod:`heed.analysis.focus`): focus on the ball + agent paddle (1 = chance),
   peak on an object in frames with the ball in play, value/advantage map correlation. Speed:
   frames/s (both maps) in process CPU time, and the ratio to the per-frame Captum equivalent
   (:data:`heed.analysis.saliency_methods.CAPTUM_EQUIVALENT`, one frame per call, one call per
   stream) timed on ``--captum-frames`` frames in the same run, alternating with heed. Sanity check
   (Adebayo et al. 2018, model randomisation): the same focus for a randomly initialised network of
   the same architecture on the first ``--sanity-steps`` frames, and the cascading version: only the
   value and advantage heads re-initialised (trunk kept), with the correlation of those maps to the
   trained ones. A method whose maps hardly change when the heads are random shows what the shared
   trunk sees, not what either stream uses.
B. The ``[T, T]`` sensitivity matrix of an ``nn.LSTM`` (hidden 128, T = 256, D inputs) for one
   sequence: :func:`heed.analysis.sensitivity_matrix` vs one backward pass per output step
   (timed on ``naive_steps`` evenly spaced output steps and scaled to T). ``--no-sensitivity`` skips it.

Prints markdown tables; ``--json-out`` keeps every number (an existing file there is replaced only
when heed wrote it, or with ``--overwrite``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.safe_io import claim_output_file, disk_errors, write_json_atomic
from heed.agents.common.validate import Range, SeedRange, validate


@dataclass(frozen=True)
class Config:
    checkpoint: Path = Path("agents/pretrained/pong")
    """the dueling agent whose maps are measured (Pong, Breakout or Enduro get object focus)"""
    steps: Annotated[int, Range(1, 100_000)] = 300
    """agent steps played and explained by every method"""
    methods: tuple[str, ...] = field(default_factory=tuple)
    """methods to measure (default: all of heed's, not the captum-* references)"""
    replacements: tuple[Literal["background", "blur"], ...] = ("background", "blur")
    """perturbation is measured once per replacement (heed.analysis.agent_video.stream_saliency's replace)"""
    captum_frames: Annotated[int, Range(1, 100_000)] = 4
    """frames per timing window of each per-frame Captum equivalent"""
    sanity_steps: Annotated[int, Range(0, 100_000)] = 60
    """frames explained again with randomly initialised weights (0: skip the check)"""
    rounds: Annotated[int, Range(1, 1000)] = 2
    """alternating timing windows (heed on all frames, then Captum on --captum-frames)"""
    batch_size: Annotated[int, Range(1, 4096)] = 32
    """observations per heed saliency call"""
    sensitivity: bool = True
    """also run part B (the LSTM sensitivity matrix)"""
    lstm_rounds: Annotated[int, Range(1, 1000)] = 2
    """alternating windows for the sensitivity matrix"""
    hidden: Annotated[int, Range(1, 4096)] = 128
    """LSTM hidden size (= outputs K)"""
    seq_steps: Annotated[int, Range(1, 10_000)] = 256
    """sequence length T"""
    inputs: Annotated[int, Range(1, 4096)] = 8
    """LSTM input size D"""
    naive_steps: Annotated[int, Range(1, 10_000)] = 8
    """output steps the naive loop is timed on (scaled to T)"""
    threads: Annotated[int, Range(1, 1024)] = 1
    """torch CPU threads"""
    seed: Annotated[int, SeedRange] = 0
    """seed of the game, the epsilon draws, the LSTM and its inputs"""
    json_out: Path | None = None
    """also write every measurement here"""
    overwrite: bool = False
    """let --json-out replace an existing file that heed did not write"""


def _cpu(fn) -> float:
    c = time.process_time()
    fn()
    return time.process_time() - c


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):.4g} ({min(values):.4g}-{max(values):.4g})"


def record(cfg: Config):
    """``(net, env_id, recording)``: the agent plays ``cfg.steps`` steps."""
    from heed.agents.dqn import load_q_network
    from heed.analysis.agent_video import greedy_policy, play
    from heed.envs.atari import make_atari_env

    net, meta = load_q_network(cfg.checkpoint, "cpu")
    env_id = meta.get("config", {}).get("env_id", "ALE/Pong-v5")
    env = make_atari_env(env_id, training=False, render_mode="rgb_array")
    try:
        rec = play(env, greedy_policy(net, 0.01, np.random.default_rng(cfg.seed)), cfg.steps, seed=cfg.seed, progress=False)
    finally:
        env.close()
    return net.eval(), env_id, rec


def random_heads(net):
    """A copy of ``net`` with its value and advantage heads re-initialised (None if it has no such heads)."""
    import copy

    heads = [getattr(net, "value_net", None), getattr(net, "advantage_net", None)]
    if any(h is None for h in heads):
        return None
    out = copy.deepcopy(net)
    for head in (out.value_net, out.advantage_net):
        for module in head.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return out.eval()


def bench_methods(cfg: Config) -> list[dict]:
    from heed.agents.networks import build_q_network
    from heed.analysis.agent_video import DEFAULT_REPLACE, stream_saliency
    from heed.analysis.focus import focus_summary, map_correlation
    from heed.analysis.saliency_methods import CAPTUM_EQUIVALENT, SALIENCY_METHODS, get_saliency_method

    net, env_id, rec = record(cfg)
    names = cfg.methods or tuple(m for m in SALIENCY_METHODS if not m.startswith("captum-"))
    for m in names:
        get_saliency_method(m)
    obs = np.asarray(rec.obs)
    torch.manual_seed(cfg.seed)
    random_net = build_q_network(tuple(net.observation_space.shape), int(net.action_space.n)).eval()
    heads_net = random_heads(net)
    runs = [(n, r) for n in names for r in (cfg.replacements if n == "perturbation" else (DEFAULT_REPLACE,))]
    rows = []
    for name, replace in runs:
        captum = CAPTUM_EQUIVALENT.get(name, name)
        label = f"{name} ({replace})" if name == "perturbation" else name
        maps: dict = {}

        def sal(model, frames, name=name, replace=replace):
            return stream_saliency(model, frames, name, batch_size=cfg.batch_size, progress=False, replace=replace)

        def heed(maps=maps, sal=sal):
            maps["value"], maps["advantage"] = sal(net, obs)

        def per_frame(captum=captum):
            stream_saliency(net, obs[: cfg.captum_frames], captum, batch_size=1, progress=False)

        heed_cpu, captum_cpu = [], []
        for _ in range(cfg.rounds):
            heed_cpu.append(len(obs) / _cpu(heed))
            captum_cpu.append(cfg.captum_frames / _cpu(per_frame))
        focus = focus_summary(env_id, rec.frames, {"value": maps["value"], "advantage": maps["advantage"]})
        row = {"method": label, "captum_equivalent": captum, "fps": heed_cpu, "captum_fps": captum_cpu, "focus": focus}
        if cfg.sanity_steps > 0:
            n = min(cfg.sanity_steps, len(obs))
            v, a = sal(random_net, obs[:n])
            row["random_weights_focus"] = focus_summary(env_id, rec.frames[:n], {"value": v, "advantage": a})
            if heads_net is not None:
                v, a = sal(heads_net, obs[:n])
                row["random_heads"] = {
                    "focus": focus_summary(env_id, rec.frames[:n], {"value": v, "advantage": a}),
                    "corr_value": map_correlation(v, maps["value"][:n]),
                    "corr_advantage": map_correlation(a, maps["advantage"][:n]),
                }
        rows.append(row)
        print(f"  measured {label}: {statistics.median(heed_cpu):.3g} frames/s", flush=True)
    return rows


def print_methods(rows: list[dict]) -> None:
    def pct(x):
        return "-" if x is None else f"{x:.0%}"

    def num(x):
        return "-" if x is None else f"{x:.2f}"

    print("| method | focus ball + agent paddle: value / adv. | ball / agent paddle / opponent (adv.) |"
          " peak on object (ball in play): value / adv. | V/A correlation | random weights: focus value / adv. |"
          " random heads: focus value / adv.; corr. with trained maps | frames/s (CPU) | per-frame Captum equivalent | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = r["focus"]
        v, a = f["value"], f["advantage"]
        objs = " / ".join(num(a["objects"][k]["focus"]) for k in a["objects"])
        fps, cfps = statistics.median(r["fps"]), statistics.median(r["captum_fps"])
        rnd = r.get("random_weights_focus")
        rnd = f"{num(rnd['value']['key']['focus'])} / {num(rnd['advantage']['key']['focus'])}" if rnd else "-"
        hd = r.get("random_heads")
        hd = (f"{num(hd['focus']['value']['key']['focus'])} / {num(hd['focus']['advantage']['key']['focus'])};"
              f" {hd['corr_value']:.2f} / {hd['corr_advantage']:.2f}") if hd else "-"
        print(f"| {r['method']} | {num(v['key']['focus'])} / {num(a['key']['focus'])} | {objs} |"
              f" {pct(v['peak_on_object'])} / {pct(a['peak_on_object'])} | {f['value_advantage_correlation']:.2f} | {rnd} | {hd} |"
              f" {_stats(r['fps'])} | {r['captum_equivalent']}: {_stats(r['captum_fps'])} | {fps / cfps:.1f}x |")


def bench_sensitivity(cfg: Config) -> list[dict]:
    from heed.analysis import sensitivity_matrix

    torch.manual_seed(cfg.seed)
    lstm = torch.nn.LSTM(cfg.inputs, cfg.hidden, batch_first=True).eval()
    x = torch.randn(1, cfg.seq_steps, cfg.inputs)
    picks = torch.linspace(0, cfg.seq_steps - 1, cfg.naive_steps).long().tolist()

    def heed():
        sensitivity_matrix(lstm, x)

    def naive():
        xr = x.clone().requires_grad_(True)
        y = lstm(xr)[0]
        eye = torch.eye(cfg.hidden)[:, None, :]
        for t in picks:
            (g,) = torch.autograd.grad(y[:, t], xr, eye, retain_graph=True, is_grads_batched=True)
            g.pow(2).sum((0, 3)).sqrt()

    scale = cfg.seq_steps / len(picks)
    cpu: dict[str, list[float]] = {"heed": [], "naive": []}
    for _ in range(cfg.lstm_rounds):
        cpu["heed"].append(_cpu(heed))
        cpu["naive"].append(_cpu(naive) * scale)
    return [
        {"method": "heed sensitivity_matrix (forward mode, vmapped JVPs)", "cpu_s": cpu["heed"]},
        {"method": f"naive: one backward per output step (timed on {len(picks)} steps, x{scale:g})", "cpu_s": cpu["naive"]},
    ]


def main(cfg: Config) -> dict:
    """Run the benchmarks and print markdown tables."""
    from heed.analysis.saliency import AnalysisError
    from heed.analysis.saliency_methods import get_saliency_method

    validate(cfg)
    try:
        for method in cfg.methods:
            get_saliency_method(method)
    except AnalysisError as exc:
        raise HeedError(str(exc)) from None
    json_out = claim_output_file(cfg.json_out, cfg.overwrite, "--json-out") if cfg.json_out is not None else None
    torch.set_num_threads(cfg.threads)
    result: dict = {"config": {k: str(v) for k, v in vars(cfg).items()}}
    result["methods"] = bench_methods(cfg)
    print_methods(result["methods"])
    if cfg.sensitivity:
        sens = bench_sensitivity(cfg)
        result["sensitivity"] = sens
        print(f"\n| [T, T] sensitivity, LSTM hidden {cfg.hidden}, T={cfg.seq_steps}, D={cfg.inputs} |"
              " CPU seconds: median (min-max) | this / heed |")
        print("|---|---|---|")
        base = statistics.median(sens[0]["cpu_s"])
        for row in sens:
            print(f"| {row['method']} | {_stats(row['cpu_s'])} | {statistics.median(row['cpu_s']) / base:.1f}x |")
    if json_out is not None:
        with disk_errors(json_out):
            write_json_atomic(json_out, result)
    return result


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="bench_saliency.py", description=__doc__)))
