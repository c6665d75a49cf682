"""Pen-trajectory figures: written samples, and a recogniser's sequential Jacobian under the trajectory.

Everything here takes arrays (pen points, sensitivities, output probabilities), never a model, so
the same drawing serves the recogniser and the synthesiser.

A **peak** of a sensitivity series ``m [T]`` over a set of input steps S (the body of an "i", or its
delayed dot) is: ``max_{s in S} m_s`` is above the ``q``-th percentile of ``m`` over all T steps
(:func:`has_peak`, default q = 90).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from heed.analysis.saliency import AnalysisError


def strokes(points: np.ndarray) -> list[slice]:
    """The pen-down strokes of ``points [T, 3]`` (dx, dy, eos) as slices: each ends where ``eos == 1``."""
    ends = np.flatnonzero(np.asarray(points)[:, 2] > 0.5)
    if len(ends) == 0 or ends[-1] != len(points) - 1:
        ends = np.append(ends, len(points) - 1)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [slice(int(s), int(e) + 1) for s, e in zip(starts, ends)]


def draw_pen(ax, points: np.ndarray, values: np.ndarray | None = None, cmap: str = "inferno_r",
             width: float = 2.0, color: str = "black", vmax: float | None = None):
    """Draw the trajectory of ``points [T, 3]`` on ``ax``: pen-down segments only, equal aspect.

    With ``values [T]``, every segment is coloured by the value of the point it leads to (a
    :class:`~matplotlib.collections.LineCollection`, returned for a colour bar) and every point is a
    dot of that colour, so single-point strokes show too.
    """
    from matplotlib.collections import LineCollection

    xy = np.cumsum(np.asarray(points, np.float64)[:, :2], axis=0)
    segments, seg_values = [], []
    for piece in strokes(points):
        run = xy[piece]
        segments.extend(np.stack([run[:-1], run[1:]], 1))
        if values is not None:
            seg_values.extend(np.asarray(values)[piece][1:])
    lines = None
    if values is None:
        ax.add_collection(LineCollection(segments, colors=color, linewidths=width))
        for piece in strokes(points):  # a dot is a stroke too short to see as a line
            if np.ptp(xy[piece], axis=0).max() < 0.15:
                ax.scatter(*xy[piece].mean(0), s=4 * width**2, color=color, zorder=3)
    else:
        top = float(np.max(values)) if vmax is None else vmax
        lines = LineCollection(segments, cmap=cmap, linewidths=width)
        lines.set_array(np.asarray(seg_values))
        lines.set_clim(0, top)
        ax.add_collection(lines)
        ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap=cmap, vmin=0, vmax=top, s=6, zorder=3)
    pad = 0.3
    ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
    ax.set_ylim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    return lines


def samples_figure(rows: Sequence[tuple[str, np.ndarray]], title: str = ""):
    """One row per ``(label, points [T, 3])``: a figure of written samples."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 1.25 * len(rows)), squeeze=False)
    for ax, (label, points) in zip(axes[:, 0], rows):
        draw_pen(ax, points, width=1.4)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        for side in ax.spines.values():
            side.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def has_peak(sensitivity: np.ndarray, where: np.ndarray, q: float = 90.0) -> bool:
    """Whether ``max(sensitivity[where]) > percentile(sensitivity, q)`` (``where`` a ``[T]`` mask; False if empty)."""
    sensitivity, where = np.asarray(sensitivity, np.float64), np.asarray(where, bool)
    if sensitivity.shape != where.shape:
        raise AnalysisError(f"sensitivity {sensitivity.shape} and mask {where.shape} must have the same shape")
    return bool(where.any() and sensitivity[where].max() > np.percentile(sensitivity, q))


def jacobian_figure(points: np.ndarray, sensitivity: np.ndarray, probs: np.ndarray, labels: str,
                    target: int, spike: int, body: np.ndarray, dot: np.ndarray, title: str = ""):
    """The lecture's figure: the trajectory coloured by ``|dy_k^t / dx_s|``, the Jacobian, the output spikes.

    Args:
        points: ``[T, 3]`` the pen input.
        sensitivity: ``[T]`` the magnitude of the chosen output's Jacobian w.r.t. each input step.
        probs: ``[T, K]`` output probabilities (class 0 = blank, class k = ``labels[k - 1]``).
        labels: the characters of classes 1..K-1.
        target: the chosen class k; ``spike``: the output time t it is explained at.
        body, dot: ``[T]`` masks of the chosen character's main-stroke points and delayed points.
    """
    import matplotlib.pyplot as plt

    steps = np.arange(len(points))
    fig, (ax_pen, ax_jac, ax_out) = plt.subplots(3, 1, figsize=(10, 6.4), height_ratios=[1.6, 1, 1.2],
                                                 layout="constrained")
    lines = draw_pen(ax_pen, points, sensitivity, width=2.5)
    xy = np.cumsum(np.asarray(points, np.float64)[:, :2], axis=0)
    if dot.any():
        ax_pen.scatter(xy[dot, 0], xy[dot, 1], s=160, facecolors="none", edgecolors="tab:blue", linewidths=1.5,
                       label="the delayed stroke", zorder=4)
        ax_pen.legend(loc="upper right", fontsize=8, frameon=False)
    fig.colorbar(lines, ax=ax_pen, fraction=0.025, pad=0.01, label="|dz/dx_s|")
    ax_pen.set_title(title, fontsize=10)
    ax_jac.fill_between(steps, sensitivity, color="0.35", step="mid")
    for mask, colour, name in ((body, "tab:orange", "body"), (dot, "tab:blue", "delayed dot")):
        if mask.any():
            ax_jac.bar(steps[mask], sensitivity[mask], width=1.0, color=colour, label=name)
    ax_jac.axvline(spike, color="tab:red", lw=1, ls="--", label=f"output time t = {spike}")
    ax_jac.set_ylabel("|dz_k^t / dx_s|")
    ax_jac.legend(fontsize=8, frameon=False, loc="upper left")
    ax_jac.set_xlim(-0.5, len(points) - 0.5)
    for k in range(1, probs.shape[1]):
        peak = int(np.argmax(probs[:, k]))
        if probs[peak, k] < 0.3:
            continue
        chosen = k == target
        ax_out.plot(steps, probs[:, k], color="tab:red" if chosen else "0.55", lw=1.6 if chosen else 0.8)
        ax_out.text(peak, probs[peak, k] + 0.03, repr(labels[k - 1])[1:-1] or "_", ha="center", fontsize=8,
                    color="tab:red" if chosen else "0.3")
    ax_out.plot(steps, probs[:, 0], color="0.8", lw=0.8, ls=":", label="blank")
    ax_out.set_ylim(0, 1.12)
    ax_out.set_xlim(-0.5, len(points) - 0.5)
    ax_out.set_xlabel("input (pen point) time step s")
    ax_out.set_ylabel("output probability")
    ax_out.legend(fontsize=8, frameon=False, loc="upper right")
    return fig
