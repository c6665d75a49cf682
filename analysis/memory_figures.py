"""Figures and videos of a memory model at work: weighting heatmaps over time, the lecture's copy
figure (inputs/outputs above, write and read weightings below) and the memory contents as a video.

Plain functions on tensors or arrays (batch dimension already removed); imports nothing from
``agents``. Time runs left to right; memory rows run top to bottom. The frames of
:func:`memory_frames` are written with :func:`heed.analysis.video.write_video`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from heed.analysis.figures import save_figure


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def weighting_image(weights: Any) -> np.ndarray:
    """A weighting over time ``[T, N]`` as a uint8 image ``[N, T]`` (white = weight 1, black = 0)."""
    w = np.clip(_np(weights), 0.0, 1.0).T
    return (w * 255.0 + 0.5).astype(np.uint8)


def _weighting_panel(ax: Any, weights: np.ndarray, name: str) -> None:
    """Draw a weighting ``[T, N]`` on ``ax``: time left to right, memory rows top to bottom, 0 black, 1 white."""
    ax.imshow(weights.T, aspect="auto", cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(name)
    ax.set_xlabel("time")
    ax.set_ylabel("memory location")


def weighting_heatmaps(weightings: dict[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """One heatmap per entry ``name -> [T, N]`` (e.g. ``read_0``, ``write_0``), side by side; saves a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(weightings)
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(3.2 * max(len(names), 1), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        _weighting_panel(ax, _np(weightings[name]), name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, close=True)


def copy_figure(
    inputs: Any,
    outputs: Any,
    targets: Any,
    write: Any | None,
    read: Any | None,
    path: str | os.PathLike,
    rows: slice | None = None,
    title: str = "",
) -> Path:
    """The lecture's copy figure: inputs and outputs (top), write and read weightings (bottom).

    Args:
        inputs ``[T, D]``, outputs (probabilities) ``[T, K]``, targets ``[T, K]``; write and read
        weightings ``[T, N]`` (or ``None`` for a core without memory); ``rows``: memory rows to show
        (default: the rows any head touched with weight > 0.01).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("inputs", _np(inputs)), ("targets", _np(targets)), ("outputs", _np(outputs))]
    heads = [(name, _np(w)) for name, w in (("write weightings", write), ("read weightings", read)) if w is not None]
    if heads and rows is None:
        touched = np.nonzero(np.max(np.stack([h for _, h in heads]), axis=(0, 1)) > 0.01)[0]
        rows = slice(int(touched.min()), int(touched.max()) + 1) if len(touched) else slice(None)
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), squeeze=False)
    for ax, (name, data) in zip(axes[0], panels):
        ax.imshow(data.T, aspect="auto", cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("time")
    for ax in axes[1]:
        ax.axis("off")
    for ax, (name, data) in zip(axes[1], heads):
        ax.axis("on")
        _weighting_panel(ax, data[:, rows], name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, close=True)


def memory_frames(memory: Any, read: Any | None = None, write: Any | None = None, scale: int = 4) -> np.ndarray:
    """RGB frames ``[T, H, W, 3]`` uint8 of the memory ``[T, N, M]`` (grey, scaled to its range over
    the episode), with the write weighting (red) and read weighting (green) as columns on its right."""
    mem = _np(memory)
    T, N, _ = mem.shape
    lo, hi = float(mem.min()), float(mem.max())
    grey = (mem - lo) / (hi - lo + 1e-12)
    frames = [np.repeat(grey[..., None], 3, axis=-1)]
    gap = np.ones((T, N, 1, 3), np.float32) * 0.3
    for weights, channel in ((write, 0), (read, 1)):
        if weights is None:
            continue
        col = np.zeros((T, N, 2, 3), np.float32)
        col[..., channel] = np.clip(_np(weights), 0, 1)[:, :, None]
        frames += [gap, col]
    frame = np.concatenate(frames, axis=2)
    frame = frame.repeat(scale, axis=1).repeat(scale, axis=2)
    return (frame * 255.0 + 0.5).astype(np.uint8)
