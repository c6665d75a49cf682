"""Play an agent, record what it saw, and turn its value/advantage saliency into a video.

Duck-typed, so ``analysis`` imports nothing from ``agents``: ``env`` is any Gymnasium env with
``render_mode="rgb_array"`` whose observations are the network's input; ``net`` is any module with
``value(obs) -> [B, 1]`` and ``advantage(obs) -> [B, A]`` (and optionally ``streams``), such as
``agents.networks.DuelingQNetwork``.

Pipeline: :func:`play` (keeps the colour frames and observations), :func:`stream_saliency` (the
value and advantage maps of Wang et al. 2016 by any method of
:data:`heed.analysis.saliency_methods.SALIENCY_METHODS`, batched), :func:`render_recording` (one
colour scale per stream for the whole video, at game speed), :func:`summarize` (return, length and
the object focus of both maps, :mod:`heed.analysis.focus`).
Memory: about 100 kB per recorded step (the 210x160 colour frame) plus 28 kB of observation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from heed.analysis.focus import focus_summary, format_split
from heed.analysis.perturbation import episode_background
from heed.analysis.saliency import AnalysisError
from heed.analysis.saliency_methods import dueling_saliency, get_saliency_method
from heed.analysis.video import (
    GAME_FPS,
    MP4_CRF,
    FrameInfo,
    MapOptions,
    compose_frame,
    percentile_scale,
    smooth_over_time,
    stack_to_maps,
    write_video,
)

DEFAULT_METHOD = "perturbation"
"""The videos' and the demo's method (docs/analysis.md, "Which method": the highest object focus
on the Pong agent at a cost the demo affords)."""

REPLACEMENTS = ("background", "blur")
"""What perturbation replaces a region with (:func:`stream_saliency`'s ``replace``)."""

DEFAULT_REPLACE = "blur"
"""Greydanus et al.'s blur. Towards the background the maps pass the object-focus targets but fail the
model-randomisation check: a randomly initialised network's maps are as focused (docs/analysis.md,
"Which method")."""

BACKGROUND_GRID = {"stride": 4, "radius": 3.0}
"""Perturbation grid towards the background (input pixels): finer than Greydanus et al.'s 5 / 5 (kept
for ``replace="blur"``) so that a map's peak can land on a 2-pixel ball (peak on an object in 60 % of
Pong frames against 38 % at 5 / 5, for 1.5x the passes; docs/analysis.md)."""

BACKGROUND_WINDOW = 512
"""Observations per background block (:func:`heed.analysis.perturbation.episode_background`'s ``window``):
34 s of play, long enough for every moving object to move, short enough to follow a changing scene."""

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
    net,
    obs: np.ndarray | list,
    method: str = DEFAULT_METHOD,
    options: MapOptions | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = True,
    replace: str = DEFAULT_REPLACE,
    **method_options,
) -> tuple[np.ndarray, np.ndarray]:
    """The value and advantage maps of ``obs [N, C, H, W]`` by ``method``: two ``[N, H, W]`` arrays.

    ``net`` has ``value``, ``advantage`` (and optionally ``streams``); ``options`` (default
    :class:`MapOptions`: newest frame, magnitude, no smoothing) turn each attribution into a map,
    including the moving average over consecutive frames; ``method_options`` go to the method.
    ``replace`` (perturbation only): ``"background"`` replaces a region of the shown frames (the
    newest, or the whole stack with ``options.frames == "stack"``) by the same region of the
    recording's background screen (:func:`heed.analysis.perturbation.episode_background` of ``obs``, per
    block of :data:`BACKGROUND_WINDOW` observations), i.e. removes the objects there, on the finer
    :data:`BACKGROUND_GRID`; ``"blur"`` blurs it in every stacked frame (Greydanus et al. 2018).
    """
    from tqdm.auto import tqdm

    get_saliency_method(method)  # an unknown name fails before any work
    if replace not in REPLACEMENTS:
        raise AnalysisError(f"unknown replacement '{replace}': choose from {', '.join(REPLACEMENTS)}")
    opts = options or MapOptions()
    arr = np.asarray(obs)
    if arr.ndim < 2 or len(arr) == 0:
        raise AnalysisError("no observations to explain")
    if batch_size < 1:
        raise AnalysisError(f"batch_size must be positive, got {batch_size}")
    background = None
    if method == "perturbation" and replace == "background" and arr.ndim == 4:
        background = episode_background(arr, window=BACKGROUND_WINDOW)[:, None]  # [N, 1, H, W]
        method_options = {"newest_only": opts.frames == "newest", **BACKGROUND_GRID, **method_options}
    values, advantages = [], []
    streams = getattr(net, "streams", None)
    for start in tqdm(range(0, len(arr), batch_size), desc=method, unit="batch", disable=not progress, leave=False):
        x = torch.as_tensor(arr[start : start + batch_size], device=device)
        if background is not None:
            method_options["background"] = background[start : start + batch_size].to(device)
        sal = dueling_saliency(net.value, net.advantage, x, streams, method, absolute=False, **method_options)
        values.append(stack_to_maps(sal.value, opts))
        advantages.append(stack_to_maps(sal.advantage, opts))
    v, a = np.concatenate(values), np.concatenate(advantages)
    return smooth_over_time(v, opts.time_window), smooth_over_time(a, opts.time_window)


def video_frames(
    rec: Recording,
    sal_value: np.ndarray,
    sal_advantage: np.ndarray,
    mode: str = "panels",
    percentile: float = 99.5,
    action_names: list[str] | None = None,
    indices: list[int] | None = None,
    zoom: int = 2,
    method: str = DEFAULT_METHOD,
) -> Iterator[np.ndarray]:
    """Composed frames (see :func:`analysis.video.compose_frame`) with one colour scale per stream."""
    scales = (percentile_scale(sal_value, percentile), percentile_scale(sal_advantage, percentile))
    for i in range(len(rec)) if indices is None else indices:
        a = rec.actions[i]
        name = action_names[a] if action_names and a < len(action_names) else str(a)
        info = FrameInfo(step=i, episode_return=rec.returns[i], value=rec.values[i], action=name)
        yield compose_frame(rec.frames[i], sal_value[i], sal_advantage[i], scales, info, mode, zoom, method)


def render_recording(
    rec: Recording,
    sal_value: np.ndarray,
    sal_advantage: np.ndarray,
    out: str | os.PathLike,
    mode: str = "panels",
    fps: int = GAME_FPS,
    percentile: float = 99.5,
    action_names: list[str] | None = None,
    max_frames: int | None = None,
    progress: bool = True,
    zoom: int = 2,
    method: str = DEFAULT_METHOD,
    crf: int = MP4_CRF,
) -> Path:
    """Write the saliency video of ``rec`` to ``out`` (``.mp4`` or ``.gif``), one frame per agent step.

    ``fps`` defaults to game speed; ``max_frames`` keeps the first ones; ``zoom`` enlarges the
    210x160 screen (nearest); ``method`` is named on screen.
    """
    from tqdm.auto import tqdm

    if len(sal_value) != len(rec) or len(sal_advantage) != len(rec):
        raise AnalysisError(f"{len(rec)} frames but {len(sal_value)}/{len(sal_advantage)} saliency maps")
    n = len(rec) if max_frames is None else min(len(rec), max_frames)
    frames = video_frames(rec, sal_value, sal_advantage, mode, percentile, action_names, list(range(n)), zoom, method)
    bar = tqdm(frames, total=n, desc=f"write {Path(out).name}", unit="frame", disable=not progress, leave=False)
    return write_video(out, bar, fps=fps, crf=crf)


def summarize(rec: Recording, sal_value: np.ndarray, sal_advantage: np.ndarray, env_id: str) -> dict:
    """Return, length and the object focus of both maps (:func:`heed.analysis.focus.focus_summary`), JSON-ready.

    ``focus`` is None for a game without object masks. Maps are taken as magnitudes here.
    """
    maps = {"value": np.abs(sal_value), "advantage": np.abs(sal_advantage)}
    return {
        "env_id": env_id,
        "steps": len(rec),
        "episodes_finished": len(rec.episode_returns),
        "episode_returns": rec.episode_returns,
        "episode_lengths": rec.episode_lengths,
        "unfinished_episode": {"return": rec.partial_return, "length": rec.partial_length},
        "mean_value_estimate": float(np.mean(rec.values)),
        "focus": focus_summary(env_id, rec.frames, maps),
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
    focus = summary.get("focus")
    if not focus:
        lines.append(f"(no object masks for {summary['env_id']}: no focus measure)")
        return "\n".join(lines)

    def fmt(x: float | None, spec: str) -> str:
        return format("-", spec.split(".")[0]) if x is None else format(x, spec)  # "-" keeps the column's width

    lines.append(f"{'object focus (1 = chance)':<28}{'area':>7}{'value':>8}{'adv.':>8}{'frames':>8}")
    v, a = focus["value"], focus["advantage"]
    key = " + ".join(focus["key_objects"])
    rows = [(name, v["objects"][name], a["objects"][name]) for name in v["objects"]] + [(key, v["key"], a["key"])]
    for name, vs, as_ in rows:
        lines.append(f"{name:<28}{vs['area']:>7.3f}{fmt(vs['focus'], '>8.2f')}{fmt(as_['focus'], '>8.2f')}{vs['frames']:>8}")
    play = f" (frames with the {focus['in_play']} on screen: {v['peak_frames']})" if focus["in_play"] else ""
    lines.append(f"peak on an object{play}: value {fmt(v['peak_on_object'], '.0%')}, advantage {fmt(a['peak_on_object'], '.0%')}")
    lines.append(f"value/advantage map correlation: {focus['value_advantage_correlation']:.2f}")
    if focus.get("split"):
        lines.append(format_split(focus["split"]))
    return "\n".join(lines)


__all__ = ["BACKGROUND_GRID", "BACKGROUND_WINDOW", "DEFAULT_METHOD", "DEFAULT_REPLACE", "REPLACEMENTS", "Recording", "format_summary", "greedy_policy", "play", "render_recording", "stream_saliency", "summarize", "video_frames"]
