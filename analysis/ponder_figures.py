"""Figures for pondering and self-attention; plain arrays in, PNG files out (nothing from ``agents``).

- :func:`ponder_per_step`: ponder time rho_t per input step (the lecture's plot: pondering rises
  where prediction is hard), optionally with a label per step.
- :func:`ponder_by_group`: mean (and spread) of ponder time per group, e.g. per number of non-zero
  parity inputs or per number of supporting facts in bAbI.
- :func:`attention_grid`: attention maps ``[L, H, T, T]``, one panel per layer (row) and head (column).
- :func:`group_stats`: the numbers behind :func:`ponder_by_group`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from heed.analysis.figures import save_figure


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def group_stats(groups: Any, values: Any) -> dict[int, tuple[float, float, int]]:
    """``{group: (mean, std, count)}`` of ``values [N]`` grouped by integer ``groups [N]``."""
    g, v = _np(groups).astype(int).ravel(), _np(values).ravel()
    return {
        int(k): (float(v[g == k].mean()), float(v[g == k].std()), int((g == k).sum())) for k in np.unique(g)
    }


def ponder_per_step(
    ponder: Any,
    path: str | os.PathLike,
    labels: Sequence[str] | None = None,
    title: str = "",
    target: Any | None = None,
) -> Path:
    """Bar plot of ponder time ``rho [T]`` per input step, with step labels and an optional target line.

    Args:
        ponder: ``[T]`` ponder time per input step.
        labels: T tick labels (e.g. tokens); ``target``: optional ``[T]`` series drawn on a twin axis.
    """
    rho = _np(ponder).ravel()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.18 * len(rho)), 3.0))
    ax.bar(np.arange(len(rho)), rho, color="tab:blue")
    ax.set_ylabel("ponder time (N + R)")
    ax.set_xlabel("input step")
    if labels is not None:
        ax.set_xticks(np.arange(len(rho)))
        ax.set_xticklabels(list(labels), rotation=90, fontsize=6)
    if target is not None:
        twin = ax.twinx()
        twin.plot(np.arange(len(rho)), _np(target).ravel(), color="tab:red", lw=1)
        twin.set_ylabel("target", color="tab:red")
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, close=True)


def ponder_by_group(
    groups: Any,
    values: Any,
    path: str | os.PathLike,
    xlabel: str,
    ylabel: str = "ponder time",
    title: str = "",
    second: Any | None = None,
    second_label: str = "",
) -> Path:
    """Mean +- std of ``values`` per integer group (and optionally a second per-item series).

    Args:
        groups: ``[N]`` integer group of every item; ``values``: ``[N]`` (e.g. ponder time).
        second: optional ``[N]`` series (e.g. 0/1 errors) whose group mean goes on a twin axis.
    """
    stats = group_stats(groups, values)
    keys = sorted(stats)
    means = np.array([stats[k][0] for k in keys])
    stds = np.array([stats[k][1] for k in keys])
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    ax.errorbar(keys, means, yerr=stds, fmt="o-", color="tab:blue", capsize=2, ms=3)
    ax.set_xticks(keys)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel, color="tab:blue")
    if second is not None:
        other = group_stats(groups, second)
        twin = ax.twinx()
        twin.plot(keys, [other[k][0] for k in keys], "s--", color="tab:red", ms=3)
        twin.set_ylabel(second_label, color="tab:red")
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, close=True)


def attention_grid(
    maps: Any, path: str | os.PathLike, labels: Sequence[str] | None = None, title: str = ""
) -> Path:
    """Heat maps of attention ``[L, H, T, T]`` (query rows, key columns): layer per row, head per column."""
    a = _np(maps)
    if a.ndim == 3:
        a = a[None]
    layers, heads, steps, _ = a.shape
    size = 2.2 if labels is None or steps <= 30 else 3.2
    fig, axes = plt.subplots(layers, heads, figsize=(size * heads, size * layers), squeeze=False)
    for i in range(layers):
        for h in range(heads):
            ax = axes[i, h]
            ax.imshow(
                a[i, h],
                cmap="viridis",
                vmin=0.0,
                vmax=max(float(a[i, h].max()), 1e-6),
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if labels is not None and i == layers - 1:
                ax.set_xticks(np.arange(steps))
                ax.set_xticklabels(list(labels), rotation=90, fontsize=4)
            ax.set_title(f"layer/step {i + 1}, head {h + 1}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, close=True)
