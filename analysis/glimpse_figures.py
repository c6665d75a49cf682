"""The glimpse path drawn on the image: a still figure and a video (the lecture's RAM/DRAW figure).

Plain arrays in, pictures out; nothing here knows about models::

    image      float [H, W] in [0, 1]
    locations  float [T, 2], (x, y) in [-1, 1]^2 (x over columns, (-1, -1) the top-left corner)
    widths     float [T, S] side in pixels of each of S nested boxes per glimpse (RAM's retina
               scales, or one box N * delta wide for a DRAW read)

The frames of :func:`glimpse_frames` are written with :func:`heed.analysis.video.write_video`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import cv2
import numpy as np

from heed.analysis.figures import save_figure

PATH_COLOUR = (255, 200, 0)
BOX_COLOUR = (0, 200, 255)
CURRENT_COLOUR = (255, 40, 40)


def to_pixels(locations: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[T, 2]`` locations in ``[-1, 1]`` -> continuous pixel centres ``[T, 2]`` as ``(x, y)``."""
    loc = np.asarray(locations, dtype=np.float64)
    return np.stack([(loc[:, 0] + 1) / 2 * width, (loc[:, 1] + 1) / 2 * height], axis=-1)


def draw_frame(
    image: np.ndarray, locations: np.ndarray, widths: np.ndarray, upto: int, scale: int = 4, caption: str = ""
) -> np.ndarray:
    """One RGB frame ``[H * scale, W * scale, 3]`` uint8: the path of glimpses ``0..upto`` on the image.

    Earlier glimpses show as dots joined by a line; glimpse ``upto`` shows its nested boxes in red.
    """
    h, w = image.shape
    grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    frame = cv2.resize(
        np.repeat(grey[:, :, None], 3, axis=2), (w * scale, h * scale), interpolation=cv2.INTER_NEAREST
    )
    frame = np.ascontiguousarray(frame)
    centres = to_pixels(locations, h, w) * scale
    widths = np.asarray(widths, dtype=np.float64).reshape(len(locations), -1) * scale
    pts = [(round(c[0]), round(c[1])) for c in centres[: upto + 1]]
    for a, b in itertools.pairwise(pts):
        cv2.line(frame, a, b, PATH_COLOUR, 1, cv2.LINE_AA)
    for i, p in enumerate(pts):
        cv2.circle(frame, p, 2, PATH_COLOUR if i < upto else CURRENT_COLOUR, -1)
    for size in widths[upto]:
        x0, y0 = round(centres[upto, 0] - size / 2), round(centres[upto, 1] - size / 2)
        cv2.rectangle(frame, (x0, y0), (x0 + round(size), y0 + round(size)), CURRENT_COLOUR, 1)
    if caption:
        cv2.putText(frame, caption, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


def glimpse_frames(
    image: np.ndarray, locations: np.ndarray, widths: np.ndarray, scale: int = 4, caption: str = ""
) -> list[np.ndarray]:
    """A frame per glimpse (see :func:`draw_frame`), caption suffixed with ``t=1..T``."""
    return [
        draw_frame(image, locations, widths, t, scale, f"{caption} t={t + 1}".strip())
        for t in range(len(locations))
    ]


def path_figure(
    images: Sequence[np.ndarray],
    locations: Sequence[np.ndarray],
    widths: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
):
    """A row of panels, each an image with its whole glimpse path (numbered; innermost boxes, last retina whole).

    Returns the matplotlib ``Figure``; saves it as PNG when ``path`` is given.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.8), squeeze=False)
    for k, ax in enumerate(axes[0]):
        img = images[k]
        h, w = img.shape
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, extent=(0, w, h, 0))
        c = to_pixels(locations[k], h, w)
        wid = np.asarray(widths[k], dtype=np.float64).reshape(len(c), -1)
        ax.plot(c[:, 0], c[:, 1], "-", color="gold", lw=1)
        colours = plt.cm.autumn(np.linspace(0, 1, len(c)))
        for t, (x, y) in enumerate(c):
            # every glimpse's innermost box; the whole retina only for the last one (keeps it readable)
            for size in wid[t] if t == len(c) - 1 else wid[t][:1]:
                ax.add_patch(
                    Rectangle((x - size / 2, y - size / 2), size, size, fill=False, ec=colours[t], lw=0.8)
                )
            ax.text(x, y, str(t + 1), color="cyan", fontsize=7, ha="center", va="center")
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles:
            ax.set_title(titles[k], fontsize=8)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def tile_choice_counts(
    tiles: np.ndarray, labels: np.ndarray, num_classes: int = 10, grid: int = 3, skip_first: bool = True
) -> np.ndarray:
    """How often each tile was chosen, per class: ``tiles [B, T]`` (row-major indices), ``labels [B]``
    -> counts ``[num_classes, grid, grid]``. ``skip_first`` leaves out glimpse 0 (the fixed centre tile)."""
    tiles = np.asarray(tiles)[:, 1:] if skip_first else np.asarray(tiles)
    counts = np.zeros((num_classes, grid * grid), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.asarray(labels), tiles.shape[1]), tiles.ravel()), 1)
    return counts.reshape(num_classes, grid, grid)


def tile_heatmap_figure(counts: np.ndarray, title: str = "", path: str | os.PathLike | None = None):
    """One 3x3 heat map per class of the share of choices each tile got (``counts [K, g, g]``).

    Returns the matplotlib ``Figure``; saves it as PNG when ``path`` is given.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    counts = np.asarray(counts, dtype=np.float64)
    share = counts / np.maximum(counts.sum((1, 2), keepdims=True), 1)
    k = len(share)
    rows = 2 if k > 5 else 1
    cols = -(-k // rows)
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols + 1.0, 1.8 * rows + 0.4), squeeze=False)
    for ax in axes.flat[k:]:
        ax.axis("off")
    for c, ax in enumerate(axes.flat[:k]):
        im = ax.imshow(share[c], cmap="magma", vmin=0, vmax=max(share.max(), 1e-9))
        for (r, q), v in np.ndenumerate(share[c]):
            ax.text(q, r, f"{100 * v:.0f}", ha="center", va="center", fontsize=6,
                    color="black" if v > 0.6 * share.max() else "white")
        ax.set_title(f"digit {c}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes.flat), fraction=0.02, pad=0.02, label="share of choices")
    if title:
        fig.suptitle(title, fontsize=9)
    if path is not None:
        save_figure(fig, path)
    return fig


def window_frame(
    canvas: np.ndarray, boxes: Sequence[tuple[float, float, float, tuple[int, int, int]]], scale: int = 4
) -> np.ndarray:
    """An RGB frame ``[H * scale, W * scale, 3]`` uint8 of ``canvas [H, W]`` in [0, 1] with square windows,
    each a box and a cross at its centre (the cross stays visible when the box is wider than the canvas).

    ``boxes`` holds ``(cx, cy, side, colour)`` in continuous pixel units (pixel ``j`` spans ``[j, j + 1)``):
    a DRAW window of ``N`` filters at centre ``g`` (1-indexed) and stride ``delta`` is
    ``(gX - 0.5, gY - 0.5, N * delta, colour)``.
    """
    h, w = canvas.shape
    grey = (np.clip(canvas, 0, 1) * 255).astype(np.uint8)
    frame = np.ascontiguousarray(cv2.resize(
        np.repeat(grey[:, :, None], 3, axis=2), (w * scale, h * scale), interpolation=cv2.INTER_NEAREST))
    for cx, cy, side, colour in boxes:
        x0, y0 = round((cx - side / 2) * scale), round((cy - side / 2) * scale)
        x1, y1 = round((cx + side / 2) * scale), round((cy + side / 2) * scale)
        cv2.rectangle(frame, (x0, y0), (x1, y1), colour, 1)
        cv2.drawMarker(frame, (round(cx * scale), round(cy * scale)), colour, cv2.MARKER_CROSS, 2 * scale, 1)
    return frame
