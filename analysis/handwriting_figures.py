"""Handwriting-synthesis figures: the window's alignment with the letters, written lines, the pen GIF.

Plain numpy in, figures (matplotlib) or frames (``[H, W, 3]`` uint8) out; nothing here knows the
network (this layer imports nothing from ``heed.agents``). Pen data are offsets ``points [T, 3] =
(dx, dy, eos)`` as :class:`heed.envs.handwriting.PenSample` holds them (``eos = 1``: the pen lifts
after this point); ``phi [T, U + 1]`` is the synthesis window over the letters (the last column is
the position past the last letter, Graves' stop position).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from heed.analysis.figures import figure_to_array, save_figure
from heed.analysis.saliency import AnalysisError


def window_alignment(phi: np.ndarray, char_index: np.ndarray, select: np.ndarray | None = None,
                     tolerance: int = 1) -> float:
    """Share of points whose window peak ``argmax_u phi(t, u)`` lies within ``tolerance`` of the letter drawn.

    Args:
        phi: ``[T, U']`` window weights over the letters (``U' >= 1``; pass only the letter columns).
        char_index: ``[T]`` the index of the letter each point draws (-1: none; such points are skipped).
        select: ``[T]`` bool, the points to count (e.g. not delayed); all by default.
        tolerance: letters of slack either side (1: the letter or a neighbour).

    Returns:
        The share in [0, 1] (0 when no point is counted).
    """
    phi, char_index = np.asarray(phi), np.asarray(char_index)
    if phi.ndim != 2 or len(phi) != len(char_index):
        raise AnalysisError(f"phi must be [T, U] with T = len(char_index); got {phi.shape} and {char_index.shape}")
    keep = char_index >= 0
    if select is not None:
        keep &= np.asarray(select, bool)
    if not keep.any():
        return 0.0
    peak = phi[keep].argmax(-1)
    return float(np.mean(np.abs(peak - char_index[keep]) <= tolerance))


def uniform_pace(points: int, letters: int) -> np.ndarray:
    """The baseline window ``[T, U]``: one-hot on letter ``floor(t U / T)`` (a constant pace over the line)."""
    out = np.zeros((points, letters))
    out[np.arange(points), np.minimum(np.arange(points) * letters // max(points, 1), letters - 1)] = 1.0
    return out


def strokes(points: np.ndarray) -> list[np.ndarray]:
    """Absolute pen positions ``[n, 2]`` of each pen-down stroke of ``points [T, 3]`` (split after eos)."""
    points = np.asarray(points, np.float64)
    xy = np.cumsum(points[:, :2], axis=0)
    ends = np.flatnonzero(points[:, 2] > 0.5) + 1
    return [s for s in np.split(xy, ends) if len(s)]


def draw_line(ax, points: np.ndarray, colours: np.ndarray | None = None, width: float = 1.6) -> None:
    """Draw a line of handwriting on ``ax`` (equal aspect, no axes); ``colours [T, 3|4]`` per point."""
    from matplotlib.collections import LineCollection

    xy = np.cumsum(np.asarray(points, np.float64)[:, :2], axis=0)
    pen_up = np.asarray(points)[:, 2] > 0.5
    segs = np.stack([xy[:-1], xy[1:]], 1)[~pen_up[:-1]]  # no segment from a stroke's end to the next start
    if colours is None:
        ax.add_collection(LineCollection(segs, colors="black", linewidths=width))
    else:
        ax.add_collection(LineCollection(segs, colors=np.asarray(colours)[1:][~pen_up[:-1]], linewidths=width))
    if len(xy):
        pad = 0.3
        ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
        ax.set_ylim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.axis("off")


def _letter_colours(index: np.ndarray, count: int) -> np.ndarray:
    """A colour per point from the letter it is on (``index [T]``, -1: grey)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    out = np.array([cmap(int(i) % 10) if i >= 0 else (0.6, 0.6, 0.6, 1.0) for i in index])
    return out.reshape(len(index), 4) if len(index) else np.zeros((0, 4))


def alignment_figure(points: np.ndarray, phi: np.ndarray, text: str, title: str = "",
                     path: str | os.PathLike | None = None):
    """The lecture's alignment figure: the written line on top, the window ``phi(t, u)`` below it.

    ``phi [T, U + 1]`` (letters ``0 .. U - 1`` of ``text``, then the end position). The line's points are
    coloured by the window's peak letter, so the two panels read together. Returns the figure.
    """
    import matplotlib.pyplot as plt

    phi = np.asarray(phi)
    if phi.shape[0] != len(points) or phi.shape[1] != len(text) + 1:
        raise AnalysisError(f"phi must be [T, U + 1] = [{len(points)}, {len(text) + 1}], got {phi.shape}")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.45 * len(text) + 2), 5.5),
                                      gridspec_kw={"height_ratios": [1, 1.3]})
    draw_line(top, points, _letter_colours(phi[:, :-1].argmax(-1), len(text)))
    top.set_title(title or f'"{text}"')
    bottom.imshow(phi.T, aspect="auto", origin="lower", cmap="magma", interpolation="nearest")
    bottom.set_yticks(range(len(text) + 1), [repr(c)[1:-1] if c != " " else "␣" for c in text] + ["end"])
    bottom.set_xlabel("pen point t")
    bottom.set_ylabel("letter u")
    bottom.set_title("window φ(t, u)")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def samples_figure(lines: Sequence[tuple[np.ndarray, str]], title: str = "",
                   path: str | os.PathLike | None = None):
    """Written lines one under another: ``lines`` of ``(points [T, 3], label)``. Returns the figure."""
    import matplotlib.pyplot as plt

    if not lines:
        raise AnalysisError("no lines to draw")
    fig, axes = plt.subplots(len(lines), 1, figsize=(8, 1.3 * len(lines) + 0.5), squeeze=False)
    widths = [float(np.ptp(np.cumsum(np.asarray(p, np.float64)[:, 0]))) if len(p) else 0.0 for p, _ in lines]
    for ax, (points, label) in zip(axes[:, 0], lines):
        draw_line(ax, points)
        left = ax.get_xlim()[0]
        ax.set_xlim(left, left + max(widths) + 0.6)  # one scale for every line: sizes compare
        ax.set_title(label, fontsize=9, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def writing_frames(points: np.ndarray, phi: np.ndarray, text: str, every: int = 2) -> list[np.ndarray]:
    """Frames of the pen writing ``points`` with the window's current letter highlighted in ``text``.

    One frame per ``every`` points (and the last): the line so far (the newest point red), and the text
    beneath with the letter at ``argmax_u phi(t, u)`` in red, its weight as the bar under it.
    ``[H, W, 3]`` uint8 frames of one size, for :func:`heed.analysis.video.write_video`.
    """
    import matplotlib.pyplot as plt

    points, phi = np.asarray(points), np.asarray(phi)
    xy = np.cumsum(points[:, :2].astype(np.float64), axis=0)
    lo, hi = xy.min(0) - 0.3, xy.max(0) + 0.3
    frames = []
    steps = list(range(0, len(points), max(1, every)))
    if steps and steps[-1] != len(points) - 1:
        steps.append(len(points) - 1)
    for t in steps:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(5.0, 0.4 * len(text) + 2), 3.2),
                                          gridspec_kw={"height_ratios": [2, 1]})
        draw_line(top, points[: t + 1])
        top.plot(*xy[t], "o", color="red", markersize=4)
        top.set_xlim(lo[0], hi[0])
        top.set_ylim(lo[1], hi[1])
        letters = phi[t, : len(text)]
        peak = int(letters.argmax()) if len(letters) else -1
        for u, ch in enumerate(text):
            bottom.text(u, 0.6, ch if ch != " " else "␣", ha="center", va="center", fontsize=14,
                        color="red" if u == peak else "black", fontweight="bold" if u == peak else "normal")
        bottom.bar(range(len(text)), letters / max(float(phi[t].max()), 1e-9) * 0.35, bottom=0.0,
                   color="tab:red", width=0.6)
        bottom.set_xlim(-0.7, len(text) - 0.3)
        bottom.set_ylim(0, 1)
        bottom.axis("off")
        frames.append(figure_to_array(fig))
    return frames
