"""Play a dueling DQN agent and write its value/advantage saliency video (Wang et al. 2016) by any method.

Examples::

    python scripts/render_saliency.py --checkpoint agents/pretrained/pong --steps 600 --out saliency.mp4
    python scripts/render_saliency.py --checkpoint agents/pretrained/pong --method gradient --frames stack --out grad.mp4
    python scripts/render_saliency.py --checkpoint runs/pong --episodes 1 --mode overlay --out pong.gif

Writes the video (one frame per agent step, at game speed: 15 frames/s), a JSON summary next to it
(return, length, and the object focus of each stream's map: heed.analysis.focus) and, with
``--tensorboard DIR``, a few stills as TensorBoard images (a re-run replaces the stills it wrote
there). Methods: heed.analysis.SALIENCY_METHODS. An existing video, summary or still is replaced only
when heed wrote it (or with ``--overwrite``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main, require
from heed.agents.common.safe_io import claim_output_file, disk_errors, write_json_atomic
from heed.agents.common.validate import Range, SeedRange, UnitInterval, validate
from heed.analysis.agent_video import DEFAULT_METHOD, DEFAULT_REPLACE

#: the longest recording: frames, observations and both streams' maps are held in memory, about
#: 0.63 MB per step (a whole 9,978-step Enduro game peaked at 6.3 GB), so 30,000 steps stay under 20 GB;
#: one whole Atari episode always fits (ALE v5 truncates at 108,000 frames = 27,000 agent steps)
MAX_STEPS = 30_000
#: steps shown when neither --steps nor --episodes is given
DEFAULT_STEPS = 600


@dataclass(frozen=True)
class Config:
    checkpoint: Path
    """a dueling Q-network checkpoint: a checkpoint dir, a training run dir, or agents/pretrained/<game>"""
    steps: Annotated[int, Range(0, MAX_STEPS)] | None = None
    """agent steps to play (default: 600, or with --episodes until they end; at most 30,000)"""
    episodes: Annotated[int, Range(0, 10_000)] = 0
    """stop after this many finished episodes (0: only --steps counts)"""
    out: Path = Path("saliency.mp4")
    """video path, .mp4 (H.264) or .gif"""
    method: str = DEFAULT_METHOD
    """saliency method: gradient, smoothgrad, integrated-gradients, gradient-x-input, guided-backprop, occlusion,
    perturbation, or a captum-* reference (heed.analysis.SALIENCY_METHODS)"""
    replace: Literal["background", "blur"] = DEFAULT_REPLACE
    """perturbation only: blur each perturbed region in every stacked frame (Greydanus et al. 2018), or replace it
    in the shown frames by the recording's background screen (removes the objects there: sharp maps, but a
    randomly initialised network's look alike; docs/analysis.md "Which method")"""
    mode: Literal["panels", "overlay"] = "panels"
    """panels: value | advantage, saliency in red (Wang et al.); overlay: value red, advantage blue (Greydanus et al.)"""
    frames: Literal["newest", "stack"] = "newest"
    """explain the newest of the 4 stacked frames, or the whole stack (summed)"""
    signed: bool = False
    """show signed attributions (panels: positive red, negative blue) instead of magnitudes"""
    space_sigma: Annotated[float, Range(0, 100)] = 0.0
    """Gaussian blur of each map over space, std in input pixels (0: none)"""
    time_window: Annotated[int, Range(1, 10_000)] = 1
    """moving average of the maps over this many consecutive video frames (1: none)"""
    device: str = "auto"
    """auto, cpu or cuda"""
    epsilon: Annotated[float, UnitInterval] = 0.01
    """probability of a random action at each step"""
    seed: Annotated[int, SeedRange] = 0
    """seed of the env reset and of the epsilon draws"""
    fps: Annotated[int, Range(1, 240)] = 15
    """frames per second of the video (15 = game speed: one frame per agent step of 4 ALE frames at 60 Hz)"""
    crf: Annotated[int, Range(0, 51)] = 23
    """x264 quality of an .mp4 (constant rate factor: lower is better and larger; 23 is x264's default)"""
    batch_size: Annotated[int, Range(1, 4096)] = 32
    """observations per batched saliency pass"""
    percentile: Annotated[float, Range(0, 100, lo_open=True)] = 99.5
    """each stream's saliency is divided by this percentile of its values over the whole video"""
    summary: Path | None = None
    """where to write the JSON summary (default: the video path with .json)"""
    tensorboard: Path | None = None
    """also log stills to a TensorBoard run in this directory"""
    stills: Annotated[int, Range(1, 1000)] = 4
    """number of evenly spaced stills logged to TensorBoard"""
    still: Path | None = None
    """also write one composed frame as a PNG here (step --still-step)"""
    still_step: Annotated[int, Range(-1, MAX_STEPS)] = -1
    """the step shown by --still (-1: the middle of the recording)"""
    zoom: Annotated[int, Range(1, 8)] = 2
    """enlargement of the 210x160 screen in the video (nearest neighbour)"""
    threads: Annotated[int, Range(0, 1024)] = 0
    """torch CPU threads (0: leave torch's default)"""
    progress: bool = True
    """show progress bars"""
    overwrite: bool = False
    """replace an existing video, summary or still that heed did not write"""


def play_steps(cfg: Config) -> int:
    """The step limit of the recording: ``--steps`` when given (positive), else :data:`MAX_STEPS` with
    ``--episodes`` (so ``--episodes 1`` plays one whole episode) and 600 without."""
    if cfg.steps:
        return cfg.steps
    return MAX_STEPS if cfg.episodes > 0 else DEFAULT_STEPS


def record_agent(net, env_id: str, cfg, device: torch.device, rng: np.random.Generator):
    """Play ``net`` in ``env_id`` and return ``(recording, value maps, advantage maps, action names)``."""
    from heed.analysis.agent_video import greedy_policy, play, stream_saliency
    from heed.envs.atari import make_atari_env

    env = make_atari_env(env_id, training=False, render_mode="rgb_array")
    try:
        expected = tuple(net.observation_space.shape)
        if tuple(env.observation_space.shape) != expected:
            raise HeedError(
                f"the checkpoint's network takes observations {expected}, '{env_id}' gives {env.observation_space.shape}"
            )
        names = list(env.unwrapped.get_action_meanings())
        rec = play(env, greedy_policy(net, cfg.epsilon, rng, device), play_steps(cfg), cfg.episodes, cfg.seed, cfg.progress)
    finally:
        env.close()
    sal_v, sal_a = stream_saliency(
        net, rec.obs, cfg.method, map_options(cfg), cfg.batch_size, device, cfg.progress, replace=cfg.replace
    )
    return rec, sal_v, sal_a, names


def map_options(cfg):
    """The :class:`heed.analysis.video.MapOptions` of a config with ``frames``/``signed``/``space_sigma``/``time_window``."""
    from heed.analysis.video import MapOptions

    return MapOptions(cfg.frames, not cfg.signed, cfg.space_sigma, cfg.time_window)


def log_stills(
    writer, rec, sal_v, sal_a, mode: str, names: list[str], count: int, percentile: float, method: str = DEFAULT_METHOD
) -> None:
    """``count`` evenly spaced composed frames as TensorBoard images ``saliency/<mode>`` (step = frame)."""
    from heed.analysis.agent_video import video_frames
    from heed.analysis.figures import log_image

    idx = sorted({int(i) for i in np.linspace(0, len(rec) - 1, max(1, count))})
    for i, frame in zip(idx, video_frames(rec, sal_v, sal_a, mode, percentile, names, idx, method=method)):
        log_image(writer, f"saliency/{mode}", frame, step=i)


def write_still(cfg: Config, rec, sal_v, sal_a, names: list[str]) -> None:
    """The composed frame of step ``cfg.still_step`` (video colour scale) as a PNG at ``cfg.still``."""
    import imageio.v2 as imageio

    from heed.analysis.agent_video import video_frames

    step = len(rec) // 2 if cfg.still_step < 0 else cfg.still_step
    require(step < len(rec), f"--still-step {step} is past the recording's {len(rec)} steps")
    (frame,) = video_frames(rec, sal_v, sal_a, cfg.mode, cfg.percentile, names, [step], cfg.zoom, cfg.method)
    imageio.imwrite(cfg.still, frame)


def run(cfg: Config, net=None, env_id: str | None = None) -> dict:
    """Load (or take) the network, play, write video + summary; returns the summary dict.

    Every option is checked first, then the checkpoint is loaded, then every output path is claimed
    (:func:`heed.agents.common.safe_io.claim_output_file`), all before the agent plays.
    """
    from heed.agents.common.device import resolve_device
    from heed.agents.dqn import load_q_network
    from heed.analysis.agent_video import format_summary, render_recording, summarize
    from heed.analysis.saliency import AnalysisError
    from heed.analysis.saliency_methods import get_saliency_method

    validate(cfg)
    try:
        get_saliency_method(cfg.method)
    except AnalysisError as exc:
        raise HeedError(str(exc)) from None
    require(cfg.steps != 0 or cfg.episodes > 0, "give --steps N or --episodes N (at least one positive)")
    require(cfg.out.suffix.lower() in (".mp4", ".gif"), f"--out must end in .mp4 or .gif, got '{cfg.out}'")
    require(cfg.still is None or cfg.still.suffix.lower() == ".png", f"--still must end in .png, got '{cfg.still}'")
    require(cfg.summary is None or cfg.summary.suffix.lower() == ".json", f"--summary must end in .json, got '{cfg.summary}'")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if net is None:
        net, meta = load_q_network(cfg.checkpoint, device)
        env_id = env_id or meta.get("config", {}).get("env_id")
    require(env_id is not None, f"checkpoint '{cfg.checkpoint}' does not say which env it was trained on")
    summary_path = cfg.summary or cfg.out.with_suffix(".json")
    require(summary_path != cfg.out and summary_path != cfg.still, "--summary must differ from --out and --still")
    out = claim_output_file(cfg.out, cfg.overwrite, "--out")
    summary_path = claim_output_file(summary_path, cfg.overwrite, "--summary")
    still = claim_output_file(cfg.still, cfg.overwrite, "--still") if cfg.still is not None else None
    net = net.to(device).eval()
    rng = np.random.default_rng(cfg.seed)
    try:
        rec, sal_v, sal_a, names = record_agent(net, env_id, cfg, device, rng)
        with disk_errors(out.parent):
            video = render_recording(
                rec, sal_v, sal_a, out, cfg.mode, cfg.fps, cfg.percentile, names, progress=cfg.progress,
                method=cfg.method, crf=cfg.crf, zoom=cfg.zoom,
            )
        if still is not None:
            with disk_errors(still):
                write_still(cfg, rec, sal_v, sal_a, names)
        summary = summarize(rec, sal_v, sal_a, env_id)
        if cfg.tensorboard is not None:
            from heed.agents.common.run import output_event_writer

            with output_event_writer(cfg.tensorboard) as writer:
                log_stills(writer, rec, sal_v, sal_a, cfg.mode, names, cfg.stills, cfg.percentile, cfg.method)
                writer.add_text("saliency/summary", "```\n" + format_summary(summary) + "\n```")
    except AnalysisError as exc:
        raise HeedError(str(exc)) from None
    if still is not None:
        summary["still"] = str(still)
    summary.update(
        video=str(video), checkpoint=str(cfg.checkpoint), mode=cfg.mode, epsilon=cfg.epsilon, method=cfg.method, replace=cfg.replace,
        map_options=vars(map_options(cfg)), fps=cfg.fps,
    )
    with disk_errors(summary_path):
        write_json_atomic(summary_path, summary)
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
    cli_main(lambda: main(parse_config(Config, prog="render_saliency.py", description=__doc__)))
