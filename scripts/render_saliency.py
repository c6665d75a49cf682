"""Play a dueling DQN agent and write its value/advantage saliency video (Wang et al. 2016).

Examples::

    python scripts/render_saliency.py --checkpoint agents/pretrained/pong --steps 600 --out saliency.mp4
    python scripts/render_saliency.py --checkpoint runs/pong --episodes 1 --mode overlay --out pong.gif

Writes the video, a JSON summary next to it (return, length, mean saliency mass of each stream in a
few screen regions) and, with ``--tensorboard DIR``, a few stills as TensorBoard images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch


@dataclass(frozen=True)
class Config:
    checkpoint: Path
    """a dueling Q-network checkpoint: a checkpoint dir, a training run dir, or agents/pretrained/<game>"""
    steps: int = 600
    """agent steps to play (0: play --episodes full episodes)"""
    episodes: int = 0
    """stop after this many finished episodes (0: only --steps counts)"""
    out: Path = Path("saliency.mp4")
    """video path, .mp4 (H.264) or .gif"""
    mode: Literal["panels", "overlay"] = "panels"
    """panels: value | advantage, saliency in red (Wang et al.); overlay: value red, advantage blue (Greydanus et al.)"""
    device: str = "auto"
    """auto, cpu or cuda"""
    epsilon: float = 0.01
    """probability of a random action at each step"""
    seed: int = 0
    """seed of the env reset and of the epsilon draws"""
    fps: int = 30
    """frames per second of the video"""
    batch_size: int = 32
    """observations per batched saliency pass"""
    percentile: float = 99.5
    """each stream's saliency is divided by this percentile of its values over the whole video"""
    summary: Path | None = None
    """where to write the JSON summary (default: the video path with .json)"""
    tensorboard: Path | None = None
    """also log stills to a TensorBoard run in this directory"""
    stills: int = 4
    """number of evenly spaced stills logged to TensorBoard"""
    threads: int = 0
    """torch CPU threads (0: leave torch's default)"""
    progress: bool = True
    """show progress bars"""


def record_agent(net, env_id: str, cfg, device: torch.device, rng: np.random.Generator):
    """Play ``net`` in ``env_id`` and return ``(recording, value maps, advantage maps, action names)``."""
    from heed.analysis.agent_video import greedy_policy, play, stream_saliency
    from heed.envs.atari import make_atari_env

    env = make_atari_env(env_id, training=False, render_mode="rgb_array")
    try:
        expected = tuple(net.observation_space.shape)
        if tuple(env.observation_space.shape) != expected:
            from heed.agents.common.errors import HeedError

            raise HeedError(
                f"the checkpoint's network takes observations {expected}, '{env_id}' gives {env.observation_space.shape}"
            )
        names = list(env.unwrapped.get_action_meanings())
        rec = play(env, greedy_policy(net, cfg.epsilon, rng, device), cfg.steps, cfg.episodes, cfg.seed, cfg.progress)
    finally:
        env.close()
    sal_v, sal_a = stream_saliency(net, rec.obs, cfg.batch_size, device, cfg.progress)
    return rec, sal_v, sal_a, names


def log_stills(writer, rec, sal_v, sal_a, mode: str, names: list[str], count: int, percentile: float) -> None:
    """``count`` evenly spaced composed frames as TensorBoard images ``saliency/<mode>`` (step = frame)."""
    from heed.analysis.agent_video import video_frames
    from heed.analysis.figures import log_image

    idx = sorted({int(i) for i in np.linspace(0, len(rec) - 1, max(1, count))})
    for i, frame in zip(idx, video_frames(rec, sal_v, sal_a, mode, percentile, names, idx)):
        log_image(writer, f"saliency/{mode}", frame, step=i)


def run(cfg: Config, net=None, env_id: str | None = None) -> dict:
    """Load (or take) the network, play, write video + summary; returns the summary dict."""
    from heed.agents.common.device import resolve_device
    from heed.agents.common.errors import HeedError, require
    from heed.agents.dqn import load_q_network
    from heed.analysis.agent_video import format_summary, render_recording, summarize
    from heed.analysis.saliency import AnalysisError

    require(cfg.steps >= 0 and cfg.episodes >= 0, "--steps and --episodes must not be negative")
    require(cfg.steps > 0 or cfg.episodes > 0, "give --steps N or --episodes N (at least one positive)")
    require(0.0 <= cfg.epsilon <= 1.0, f"--epsilon must be in [0, 1], got {cfg.epsilon}")
    require(cfg.out.suffix.lower() in (".mp4", ".gif"), f"--out must end in .mp4 or .gif, got '{cfg.out}'")
    require(cfg.fps >= 1 and cfg.batch_size >= 1, "--fps and --batch-size must be positive")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if net is None:
        net, meta = load_q_network(cfg.checkpoint, device)
        env_id = env_id or meta.get("config", {}).get("env_id")
    require(env_id is not None, f"checkpoint '{cfg.checkpoint}' does not say which env it was trained on")
    net = net.to(device).eval()
    rng = np.random.default_rng(cfg.seed)
    try:
        rec, sal_v, sal_a, names = record_agent(net, env_id, cfg, device, rng)
        video = render_recording(rec, sal_v, sal_a, cfg.out, cfg.mode, cfg.fps, cfg.percentile, names, progress=cfg.progress)
        summary = summarize(rec, sal_v, sal_a, env_id)
        if cfg.tensorboard is not None:
            from heed.agents.common.run import open_writer

            writer = open_writer(cfg.tensorboard)
            log_stills(writer, rec, sal_v, sal_a, cfg.mode, names, cfg.stills, cfg.percentile)
            writer.add_text("saliency/summary", "```\n" + format_summary(summary) + "\n```")
            writer.close()
    except AnalysisError as exc:
        raise HeedError(str(exc)) from None
    summary.update(video=str(video), checkpoint=str(cfg.checkpoint), mode=cfg.mode, epsilon=cfg.epsilon)
    summary_path = cfg.summary or cfg.out.with_suffix(".json")
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2))
    summary["summary_path"] = str(summary_path)
    return summary


def main(cfg: Config) -> dict:
    """Entry point: run and print the summary."""
    from heed.analysis.agent_video import format_summary

    summary = run(cfg)
    print(format_summary(summary))
    print(f"video:   {summary['video']}\nsummary: {summary['summary_path']}")
    if cfg.tensorboard is not None:
        print(f"stills:  tensorboard --logdir {cfg.tensorboard}")
    return summary


if __name__ == "__main__":
    import tyro

    from heed.agents.common.errors import cli_main

    config = tyro.cli(Config, description=__doc__)
    cli_main(lambda: main(config))
