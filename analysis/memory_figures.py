"""Figures and videos of a memory model at work: weighting heatmaps over time, the lecture's copy
figure (inputs/outputs above, write and read weightings below) and the memory contents as a video.

Plain functions on tensors or arrays (batch dimension already removed); imports nothing from
``agents``. Time runs left to right; memory rows run top to bottom. The frames of
:func:`memory_frames` are written with :func:`heed.analysis.video.write_video`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

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


def touched_rows(weightings: list[Any], threshold: float = 0.01) -> np.ndarray:
    """The memory rows ``[n]`` (int) of the shortest circular run that holds every row any weighting
    ``[T, N]`` gave more than ``threshold``, in order (e.g. ``[127, 0, 1, 2]``: the NTM's shifts wrap
    around); all ``N`` rows when none did."""
    peak = np.max(np.stack([_np(w) for w in weightings]), axis=(0, 1))  # [N]
    n = peak.shape[0]
    touched = np.nonzero(peak > threshold)[0]
    if len(touched) == 0:
        return np.arange(n)
    gaps = np.diff(np.append(touched, touched[0] + n))  # gap after each touched row, the last one wrapping
    widest = int(np.argmax(gaps))
    start = int(touched[(widest + 1) % len(touched)])
    return (start + np.arange(n - int(gaps[widest]) + 1)) % n


def copy_figure(
    inputs: Any,
    outputs: Any,
    targets: Any,
    write: Any | None,
    read: Any | None,
    path: str | os.PathLike,
    rows: slice | np.ndarray | None = None,
    title: str = "",
) -> Path:
    """The lecture's copy figure: inputs and outputs (top), write and read weightings (bottom).

    Args:
        inputs ``[T, D]``, outputs (probabilities) ``[T, K]``, targets ``[T, K]``; write and read
        weightings ``[T, N]`` (or ``None`` for a core without memory); ``rows``: memory rows to show
        (default: :func:`touched_rows`, the rows any head touched with weight > 0.01).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("inputs", _np(inputs)), ("targets", _np(targets)), ("outputs", _np(outputs))]
    heads = [(name, _np(w)) for name, w in (("write weightings", write), ("read weightings", read)) if w is not None]
    if heads and rows is None:
        rows = touched_rows([h for _, h in heads])
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


class CopyDiagonal(NamedTuple):
    """The lag diagonal of a copying model's sequential Jacobian (:func:`copy_source_share`)."""

    share: np.ndarray  # [n] per answer step (sorted by output step): S[t, s(t)] / sum_s S[t, s]
    mean_share: float  # share averaged over the answer steps
    peak_rate: float  # fraction of answer steps whose largest entry is the copied input s(t)


def copy_source_share(matrix: Any, sources: dict[int, int]) -> CopyDiagonal:
    """How cleanly a copying model's outputs look at the inputs they copy (the sequential Jacobian's
    lag diagonal).

    For a sensitivity matrix ``S [T_out, T_in]`` (``S[t, s] = ||dy_t / dx_s||``, e.g.
    :func:`heed.analysis.sequential.sensitivity_matrix` without its batch dimension) and, per scored
    output step ``t``, the input step ``s(t)`` it copies::

        share_t = S[t, s(t)] / sum_s S[t, s]        (0 when the row is all zero)

    1 means output ``t`` is sensitive only to the input it copies; ``1 / T_in`` is a flat row.
    ``peak_rate`` counts the steps with ``argmax_s S[t, s] = s(t)``.
    """
    s = _np(matrix)
    if s.ndim != 2:
        raise ValueError(f"the sensitivity matrix must be [T_out, T_in], got shape {s.shape}")
    if not sources:
        raise ValueError("give at least one (output step -> copied input step) pair")
    rows = sorted(sources)
    for t in rows:
        if not (0 <= t < s.shape[0] and 0 <= sources[t] < s.shape[1]):
            raise ValueError(f"pair ({t}, {sources[t]}) is outside the matrix of shape {s.shape}")
    cols = np.array([sources[t] for t in rows])
    block = np.abs(s[rows])  # [n, T_in]
    totals = block.sum(axis=1)
    picked = block[np.arange(len(rows)), cols]
    share = np.where(totals > 0, picked / np.where(totals > 0, totals, 1.0), 0.0)
    peak = (totals > 0) & (block.argmax(axis=1) == cols)
    return CopyDiagonal(share, float(share.mean()), float(peak.mean()))


def generalisation_figure(
    panels: dict[int, dict[str, Any]], path: str | os.PathLike, title: str = ""
) -> Path:
    """The NTM paper's length-generalisation figure (Graves et al. 2014, Figs. 4 and 5).

    Args:
        panels: ``{length: {row name: [L, K] array}}``, e.g. ``{10: {"targets": ..., "NTM": ...,
            "LSTM": ...}}``: the answer phase of one sequence per length (time left to right, bits
            top to bottom, 0 black, 1 white). Every length needs the same row names; columns are
            as wide as their length.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted(panels)
    if not lengths:
        raise ValueError("give at least one length")
    names = list(panels[lengths[0]])
    if any(list(panels[n]) != names for n in lengths):
        raise ValueError("every length needs the same rows, in the same order")
    fig, axes = plt.subplots(
        len(names), len(lengths), squeeze=False, figsize=(2.0 + 0.09 * sum(lengths), 1.1 * len(names) + 0.9),
        gridspec_kw={"width_ratios": [max(n, 4) for n in lengths]},
    )
    for j, length in enumerate(lengths):
        for i, name in enumerate(names):
            ax = axes[i][j]
            ax.imshow(_np(panels[length][name]).T, aspect="auto", cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center")
            if i == 0:
                ax.set_title(f"length {length}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, close=True)


def memory_still(
    memory: Any, write: Any | None, read: Any | None, path: str | os.PathLike, title: str = ""
) -> Path:
    """A still of an episode's memory: the memory at the last step ``memory[-1] [N, M]`` (rows top to
    bottom, scaled to its range) beside the write and read weightings over time ``[T, N]``, all on the
    rows the write weighting (else the read weighting) gave more than 0.1 (:func:`touched_rows`); the
    companion PNG of the :func:`memory_frames` video."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem = _np(memory)[-1]
    heads = [(name, _np(w)) for name, w in (("write weightings", write), ("read weightings", read)) if w is not None]
    rows = touched_rows([heads[0][1]], threshold=0.1) if heads else np.arange(mem.shape[0])  # rows written (or read)
    fig, axes = plt.subplots(1, 1 + len(heads), figsize=(3.2 * (1 + len(heads)), 4), squeeze=False)
    panels = [("memory at the last step", mem[rows], "memory column", {})]
    panels += [(name, data[:, rows].T, "time", {"vmin": 0, "vmax": 1}) for name, data in heads]
    ticks = np.unique(np.linspace(0, len(rows) - 1, min(len(rows), 8)).round().astype(int))
    for ax, (name, image, xlabel, scale) in zip(axes[0], panels):
        ax.imshow(image, aspect="auto", cmap="gray", interpolation="nearest", **scale)
        ax.set_yticks(ticks, [str(int(rows[i])) for i in ticks])
        ax.set_title(name)
        ax.set_xlabel(xlabel)
    axes[0][0].set_ylabel("memory location")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, close=True)


def ngram_figure(
    targets: Any,
    predictions: dict[str, Any],
    excess_bits: dict[str, Any],
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """The NTM paper's dynamic n-gram figure: one sequence's next-bit predictions per model (top),
    and each model's mean cost above the Bayes-optimal predictor per step (bottom).

    Args:
        targets: the sequence's bits ``[T]`` (0/1), the bit each prediction is for.
        predictions: ``name -> P(bit = 1) [T]`` for each predictor, the Bayes optimum among them;
            drawn as rows of grey cells (white = 1) under the targets.
        excess_bits: ``name -> [T]`` mean over many sequences of ``cost_model - cost_Bayes`` in bits
            per step; drawn as curves.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("targets", _np(targets))] + [(name, _np(p)) for name, p in predictions.items()]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5.5), gridspec_kw={"height_ratios": [1, 1.3]})
    top.imshow(np.stack([r for _, r in rows]), aspect="auto", cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    top.set_yticks(range(len(rows)), [name for name, _ in rows])
    top.set_xlabel("time step")
    top.set_title("one test sequence: next bit and P(next bit = 1)")
    for name, values in excess_bits.items():
        bottom.plot(_np(values), label=name, lw=1)
    bottom.axhline(0.0, color="black", lw=0.8, ls="--", label="Bayes-optimal")
    bottom.set_xlabel("time step")
    bottom.set_ylabel("bits above Bayes-optimal (mean)")
    bottom.legend(loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, close=True)
