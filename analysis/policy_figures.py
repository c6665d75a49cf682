"""What a recurrent policy remembers: sequential-Jacobian figures and videos aligned with an episode.

Plain functions on arrays or tensors (batch dimension removed); imports nothing from ``agents``.
The input is a sensitivity matrix ``S [T_out, T_in]`` with ``S[t, s] = ||d logits_t / d x_s||``
(see :func:`analysis.sequential.sensitivity_matrix`): row t says how much the action logits at step
t depend on the observation of every step s <= t (entries with s > t are zero for a causal policy).
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


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def normalised_rows(sensitivity: Any) -> np.ndarray:
    """Each row of ``S [T_out, T_in]`` divided by its maximum (rows of zeros stay zero)."""
    s = _np(sensitivity)
    peak = s.max(axis=1, keepdims=True)
    return np.divide(s, peak, out=np.zeros_like(s), where=peak > 0)


def sensitivity_figure(
    sensitivity: Any,
    path: str | os.PathLike,
    decision_step: int | None = None,
    profiles: Any | None = None,
    mark_step: int | None = 0,
    title: str = "",
) -> Path:
    """Heatmap of the row-normalised sensitivity (output step vs input step) and the profile of one row.

    Args:
        sensitivity: ``[T, T]`` for one episode.
        path: the PNG to write.
        decision_step: the row drawn as a profile below (default: the last step).
        profiles: optional ``[E, T]`` decision-step profiles of several episodes (drawn thin, mean thick).
        mark_step: an input step to mark with a dashed line (the cue), or ``None``.
        title: figure title.
    """
    plt = _plt()
    s = _np(sensitivity)
    T = s.shape[0]
    row = T - 1 if decision_step is None else decision_step
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), gridspec_kw={"height_ratios": [3, 1.4]})
    im = top.imshow(normalised_rows(s), origin="upper", cmap="magma", aspect="auto", interpolation="nearest",
                    vmin=0, vmax=1)
    top.set_xlabel("observation step s")
    top.set_ylabel("action step t")
    top.set_title(title or "||d logits_t / d obs_s||, each row / its max")
    fig.colorbar(im, ax=top, fraction=0.046)
    steps = np.arange(T)
    if profiles is not None:
        prof = _np(profiles)
        prof = prof / np.maximum(prof.max(axis=1, keepdims=True), 1e-30)
        for p in prof:
            bottom.plot(steps[: len(p)], p, color="0.75", lw=0.8)
        bottom.plot(steps[: prof.shape[1]], prof.mean(0), color="C3", lw=2, label=f"mean of {len(prof)} episodes")
    bottom.plot(steps[: row + 1], s[row, : row + 1] / max(float(s[row].max()), 1e-30), "o-", color="C0", ms=3,
                label=f"this episode, t = {row}")
    if mark_step is not None:
        for ax in (top, bottom):
            ax.axvline(mark_step, color="C2", ls="--", lw=1)
    bottom.set_xlabel("observation step s")
    bottom.set_ylabel("sensitivity / max")
    bottom.set_xlim(-0.5, T - 0.5)
    bottom.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return save_figure(fig, path, close=True)


def sensitivity_frames(
    sensitivity: Any, observations: Any, renders: Any | None = None, actions: Any | None = None,
    size: tuple[float, float] = (8.0, 3.2), dpi: int = 80,
) -> np.ndarray:
    """One RGB frame per step ``[T, H, W, 3]`` uint8, for a video aligned with the episode.

    Frame t shows the observations so far (left: a ``[D, t]`` image, or the env's own render when
    ``renders [T, h, w, 3]`` is given) and the sensitivity of the logits at t to every observation
    step s <= t (right: bars, normalised by the row's maximum).
    """
    plt = _plt()
    s, obs = _np(sensitivity), _np(observations)
    T = s.shape[0]
    frames = []
    lo, hi = float(obs.min()), float(obs.max())
    for t in range(T):
        fig, (left, right) = plt.subplots(1, 2, figsize=size, dpi=dpi)
        if renders is not None:
            left.imshow(np.asarray(renders[t]))
            left.axis("off")
        else:
            shown = np.full((obs.shape[1], T), np.nan, np.float32)
            shown[:, : t + 1] = obs[: t + 1].T
            left.imshow(shown, cmap="coolwarm", vmin=min(lo, -1e-3), vmax=max(hi, 1e-3), aspect="auto",
                        interpolation="nearest")
            left.set_yticks(range(obs.shape[1]))
            left.set_xlabel("step")
            left.set_ylabel("observation entry")
        act = "" if actions is None else f", action {int(np.asarray(actions)[t])}"
        left.set_title(f"step {t}{act}", fontsize=9)
        row = s[t, : t + 1] / max(float(s[t].max()), 1e-30)
        right.bar(np.arange(t + 1), row, color="C3", width=0.8)
        right.set_xlim(-0.5, T - 0.5)
        right.set_ylim(0, 1.05)
        right.set_xlabel("observation step s")
        right.set_title(f"what the action at step {t} depends on", fontsize=9)
        fig.tight_layout()
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    return np.stack(frames)


def split_heads(attention: dict[str, Any]) -> dict[str, np.ndarray]:
    """``{"read": [T, R, N], "write": [T, W, N]}`` -> ``{"read_0": [T, N], ..., "write_0": [T, N]}``."""
    out: dict[str, np.ndarray] = {}
    for name in ("write", "read"):
        if name not in attention:
            continue
        w = _np(attention[name])
        if w.ndim == 2:
            w = w[:, None]
        for h in range(w.shape[1]):
            out[f"{name}_{h}"] = w[:, h]
    return out
