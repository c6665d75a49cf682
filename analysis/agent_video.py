"""Play an agent, record what it saw, and turn its value/advantage saliency into a video.

Duck-typed, so ``analysis`` imports nothing from ``agents``: ``env`` is any Gymnasium env with
``render_mode="rgb_array"`` whose observations are the network's input; ``net`` is any module with
``value(obs) -> [B, 1]`` and ``advantage(obs) -> [B, A]`` (and optionally ``streams``), such as
``agents.networks.DuelingQNetwork``.

Pipeline: :func:`play` (keeps the colour frames and observations), :func:`stream_saliency` (batched
Wang et al. 2016 saliency of both streams), :func:`render_recording` (one colour scale per stream
for the whole video), :func:`summarize` (return, length, saliency mass per screen region).
Memory: about 100 kB per recorded step (the 210x160 colour frame) plus 28 kB of observation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from heed.analysis.saliency import AnalysisError, dueling_saliency
from heed.analysis.video import (
    FrameInfo,
    compose_frame,
    percentile_scale,
    region_mass,
    screen_regions,
    stack_to_maps,
    write_video,
)

Policy = Callable[[np.ndarray], tuple[int, float]]  # obs [C, H, W] -> (action, value estimate)


@dataclass
class Recording:
    """What :func:`play` saw: per step a colour frame, the observation, action, value and return so far."""

    frames: list[np.ndarray] = field(default_factory=list)  # [210, 160, 3] uint8 each
    obs: list[np.ndarray] = field(default_factory=list)  # [C, 84, 84] uint8 each
    actions: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)  # return of the current episode before the step
    episode_returns: list[float] = field(default_factory=list)  # finished episodes
    episode_lengths: list[int] = field(default_factory=list)
    partial_return: float = 0.0  # the unfinished episode at the end
    partial_length: int = 0

    def __len__(self) -> int:
        return len(self.frames)


def play(
    env, policy: Policy, steps: int = 0, episodes: int = 0, seed: int = 0, progress: bool = True
) -> Recording:
    """Run ``policy`` in ``env`` for ``steps`` agent steps, or until ``episodes`` episodes end.

    With both given, whichever comes first stops. Frames come from ``env.render()``.
    """
    from tqdm.auto import tqdm

    if steps <= 0 and episodes <= 0:
        raise AnalysisError("give a positive number of steps or episodes to play")
    rec = Recording()
    obs, _ = env.reset(seed=seed)
    ret, length = 0.0, 0
    bar = tqdm(total=steps if steps > 0 else None, desc="play", unit="step", disable=not progress, leave=False)
    while True:
        frame = env.render()
        if frame is None:
            raise AnalysisError("env.render() returned nothing: make the env with render_mode='rgb_array'")
        action, value = policy(np.asarray(obs))
        rec.frames.append(np.asarray(frame, np.uint8))
        rec.obs.append(np.asarray(obs))
        rec.actions.append(int(action))
        rec.values.append(float(value))
        rec.returns.append(ret)
        obs, reward, terminated, truncated, _ = env.step(action)
        ret += float(reward)
        length += 1
        bar.update(1)
        if terminated or truncated:
            rec.episode_returns.append(ret)
            rec.episode_lengths.append(length)
            ret, length = 0.0, 0
            if episodes > 0 and len(rec.episode_returns) >= episodes:
                break
            obs, _ = env.reset()
        if steps > 0 and len(rec) >= steps:
            break
    bar.close()
    rec.partial_return, rec.partial_length = ret, length
    return rec


def greedy_policy(net, epsilon: float, rng: np.random.Generator, device: str | torch.device = "cpu") -> Policy:
    """epsilon-greedy on Q = V + A - mean A (so argmax Q = argmax A); returns ``obs -> (action, V(s))``.

    ``net.streams(obs [1, ...]) -> (V [1, 1], A [1, n_actions])``.
    """

    def policy(obs: np.ndarray) -> tuple[int, float]:
        with torch.no_grad():
            value, adv = net.streams(torch.as_tensor(obs[None], device=device))
        action = int(adv.argmax(dim=1)[0])
        if rng.random() < epsilon:
            action = int(rng.integers(adv.shape[1]))
        return action, float(value[0, 0])

    return policy


def stream_saliency(
    net, obs: np.ndarray | list, batch_size: int = 32, device: str | torch.device = "cpu", progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``|dV/ds|`` and ``|dA(s, argmax A)/ds|`` summed over stacked frames: two ``[N, H, W]`` arrays."""
    from tqdm.auto import tqdm

    arr = np.asarray(obs)
    if arr.ndim < 2 or len(arr) == 0:
        raise AnalysisError("no observations to explain")
    values, advantages = [], []
    streams = getattr(net, "streams", None)
    for start in tqdm(range(0, len(arr), batch_size), desc="saliency", unit="batch", disable=not progress, leave=False):
        x = torch.as_tensor(arr[start : start + batch_size], device=device)
        sal = dueling_saliency(net.value, net.advantage, x, streams_fn=streams)
        values.append(stack_to_maps(sal.value))
        advantages.append(stack_to_maps(sal.advantage))
    return np.concatenate(values), np.concatenate(advantages)


def video_frames(
    rec: Recording,
    sal_value: np.ndarray,
    sal_advantage: np.ndarray,
    mode: str = "panels",
    percentile: float = 99.5,
    action_names: list[str] | None = None,
    indices: list[int] | None = None,
    zoom: int = 2,
) -> Iterator[np.ndarray]:
    """Composed frames (see :func:`analysis.video.compose_frame`) with one colour scale per stream."""
    scales = (percentile_scale(sal_value, percentile), percentile_scale(sal_advantage, percentile))
    for i in range(len(rec)) if indices is None else indices:
        a = rec.actions[i]
        name = action_names[a] if action_names and a < len(action_names) else str(a)
        info = FrameInfo(step=i, episode_return=rec.returns[i], value=rec.values[i], action=name)
        yield compose_frame(rec.frames[i], sal_value[i], sal_advantage[i], scales, info, mode=mode, zoom=zoom)


def render_recording(
    rec: Recording,
    sal_value: np.ndarray,
    sal_advantage: np.ndarray,
    out: str | os.PathLike,
    mode: str = "panels",
    fps: int = 30,
    percentile: float = 99.5,
    action_names: list[str] | None = None,
    max_frames: int | None = None,
    progress: bool = True,
    zoom: int = 2,
) -> Path:
    """Write the saliency video of ``rec`` to ``out`` (``.mp4`` or ``.gif``).

    ``max_frames`` keeps the first ones; ``zoom`` enlarges the 210x160 screen (nearest).
    """
    from tqdm.auto import tqdm

    if len(sal_value) != len(rec) or len(sal_advantage) != len(rec):
        raise AnalysisError(f"{len(rec)} frames but {len(sal_value)}/{len(sal_advantage)} saliency maps")
    n = len(rec) if max_frames is None else min(len(rec), max_frames)
    frames = video_frames(rec, sal_value, sal_advantage, mode, percentile, action_names, list(range(n)), zoom)
    bar = tqdm(frames, total=n, desc=f"write {Path(out).name}", unit="frame", disable=not progress, leave=False)
    return write_video(out, bar, fps=fps)


def summarize(rec: Recording, sal_value: np.ndarray, sal_advantage: np.ndarray, env_id: str) -> dict:
    """Return, length and mean saliency mass of each stream per screen region (JSON-ready)."""
    regions = screen_regions(env_id)
    return {
        "env_id": env_id,
        "steps": len(rec),
        "episodes_finished": len(rec.episode_returns),
        "episode_returns": rec.episode_returns,
        "episode_lengths": rec.episode_lengths,
        "unfinished_episode": {"return": rec.partial_return, "length": rec.partial_length},
        "mean_value_estimate": float(np.mean(rec.values)),
        "regions": {name: list(box) for name, box in regions.items()},
        "saliency_mass": {
            "value": region_mass(sal_value, regions),
            "advantage": region_mass(sal_advantage, regions),
        },
    }


def format_summary(summary: dict) -> str:
    """A short human-readable table of :func:`summarize`'s output."""
    lines = []
    done = summary["episode_returns"]
    if done:
        lines.append(f"episodes: {len(done)}  returns: {done}  lengths: {summary['episode_lengths']}")
    part = summary["unfinished_episode"]
    if part["length"]:
        lines.append(f"unfinished episode: return {part['return']:+g} after {part['length']} steps")
    lines.append(f"steps recorded: {summary['steps']}  mean V: {summary['mean_value_estimate']:+.3f}")
    lines.append(f"{'region':<22}{'area':>7}{'value mass':>12}{'adv. mass':>11}")
    mass = summary["saliency_mass"]
    for name in mass["value"]:
        v, a = mass["value"][name], mass["advantage"][name]
        lines.append(f"{name:<22}{v['area']:>7.3f}{v['mass']:>12.3f}{a['mass']:>11.3f}")
    return "\n".join(lines)


__all__ = ["Recording", "format_summary", "greedy_policy", "play", "render_recording", "stream_saliency", "summarize", "video_frames"]
