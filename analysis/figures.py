"""Figures: sequential-Jacobian heatmaps (matplotlib PNG) and images for TensorBoard.

TensorBoard gets stills and figures through ``SummaryWriter.add_image`` (``HWC`` uint8); its
``add_video`` is not used (it needs moviepy 1.x and logs nothing with moviepy 2).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from heed.analysis.saliency import AnalysisError


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, np.float32)


def plot_sensitivity(
    matrix,
    jacobian_t=None,
    t: int | None = None,
    title: str = "sequential Jacobian",
    input_labels: list[str] | None = None,
    marks: dict[str, int] | None = None,
):
    """A matplotlib figure of a sensitivity matrix and, optionally, one output's sequential Jacobian.

    Args:
        matrix: ``[T_out, T_in]``, entry ``(t, s) = ||dy_t / dx_s||`` (one row of
            :func:`analysis.sensitivity_matrix`).
        jacobian_t: optional ``[T_in, D]`` magnitudes ``||dy_t / dx_{s, d}||`` over outputs for output
            time ``t``; drawn as a second panel (input dimension by input time) with its total per
            input time above.
        t: the output time of ``jacobian_t`` (marked on the matrix).
        input_labels: names of the D input dimensions.
        marks: ``{label: input time}`` drawn as vertical lines (e.g. ``{"cue": 0}``).

    Returns the figure (save with :func:`save_figure`).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    mat = _numpy(matrix)
    if mat.ndim != 2:
        raise AnalysisError(f"sensitivity matrix must be [T_out, T_in], got {mat.shape}")
    ncols = 1 if jacobian_t is None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.4), squeeze=False)
    ax = axes[0, 0]
    im = ax.imshow(mat, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_xlabel("input time s")
    ax.set_ylabel("output time t")
    ax.set_title(r"$\|\partial y_t / \partial x_s\|_F$")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if t is not None:
        ax.axhline(t if t >= 0 else mat.shape[0] + t, color="cyan", lw=0.8, ls="--")
    for label, s in (marks or {}).items():
        ax.axvline(s, color="white", lw=0.6, ls=":")
        ax.text(s, mat.shape[0] - 1, f" {label}", color="white", va="top", fontsize=8)
    if jacobian_t is not None:
        jac = _numpy(jacobian_t)
        if jac.ndim != 2 or jac.shape[0] != mat.shape[1]:
            raise AnalysisError(f"jacobian_t must be [T_in={mat.shape[1]}, D], got {jac.shape}")
        ax2 = axes[0, 1]
        im2 = ax2.imshow(jac.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
        ax2.set_xlabel("input time s")
        ax2.set_ylabel("input dimension d")
        if input_labels:
            ax2.set_yticks(range(len(input_labels)), input_labels, fontsize=7)
        ax2.set_title(rf"$\|\partial y_{{t={t}}} / \partial x_{{s,d}}\|$")
        fig.colorbar(im2, ax=ax2, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sequential_jacobian_figure(
    fn,
    inputs: torch.Tensor,
    t: int = -1,
    title: str = "sequential Jacobian",
    input_labels: list[str] | None = None,
    marks: dict[str, int] | None = None,
):
    """Compute and draw the sequential Jacobian of one sequence ``inputs [1, T, D]``.

    Returns ``(figure, S [T_out, T_in], J_t [T_in, D])`` where ``S`` is
    :func:`analysis.sensitivity_matrix` and ``J_t[s, d] = ||dy_t / dx_{s, d}||`` over outputs
    (from :func:`analysis.sequential_jacobian`).
    """
    from heed.analysis.sequential import sensitivity_matrix, sequential_jacobian

    if inputs.dim() != 3 or inputs.shape[0] != 1:
        raise AnalysisError(f"give one sequence shaped [1, T, D], got {tuple(inputs.shape)}")
    matrix = sensitivity_matrix(fn, inputs)[0]
    jac = sequential_jacobian(fn, inputs, t)[0].norm(dim=0)  # [T_in, D]
    t_abs = t if t >= 0 else inputs.shape[1] + t
    fig = plot_sensitivity(matrix, jac, t_abs, title, input_labels, marks)
    return fig, matrix, jac


def figure_to_array(fig, close: bool = True) -> np.ndarray:
    """Render a matplotlib figure to ``[H, W, 3]`` uint8."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    arr = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    if close:
        plt.close(fig)
    return arr


def save_figure(fig, path: str | os.PathLike, dpi: int = 120, close: bool = False) -> Path:
    """Save ``fig`` as PNG (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def log_image(writer, tag: str, image: np.ndarray, step: int = 0) -> None:
    """``writer.add_image`` for an ``[H, W, 3]`` uint8 image (a still or :func:`figure_to_array`)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise AnalysisError(f"images for TensorBoard must be [H, W, 3], got {image.shape}")
    writer.add_image(tag, image, global_step=step, dataformats="HWC")


__all__ = ["figure_to_array", "log_image", "plot_sensitivity", "save_figure", "sequential_jacobian_figure"]
