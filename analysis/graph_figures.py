"""Figures of the DNC graph tasks: the DNC's memory while it answers, the answer drawn on the map, and
the curriculum curve of a run. Recordings come in as arrays (``heed.analysis`` imports no agent code).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from heed.envs.errors import HeedError, check_regular_file  # noqa: E402


def memory_figure(write: np.ndarray, read: np.ndarray, usage: np.ndarray, link: np.ndarray,
                  phases: Mapping[str, tuple[int, int]], path: str | os.PathLike, title: str = "") -> Path:
    """The DNC at work over one episode.

    Args:
        write: ``[T, N]`` write weighting per step; read: ``[T, R, N]`` read weightings;
        usage: ``[T, N]`` usage ``u_t``; link: ``[N, N]`` the temporal link matrix ``L_T`` at the end
        (``L[i, j]``: how much row i was written right after row j);
        phases: name -> ``(first step, end step)`` (graph, query, planning, answer), shaded on the time axis.
    """
    T, N = write.shape
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.6), gridspec_kw={"width_ratios": [1, 1, 1, 0.9]})
    panels = [("write weighting $w^w_t$", write), ("read weightings $w^r_t$ (heads summed)", read.sum(1).clip(0, 1)),
              ("usage $u_t$", usage)]
    for ax, (name, values) in zip(axes[:3], panels):
        ax.imshow(values.T, aspect="auto", origin="lower", cmap="magma", vmin=0, vmax=max(float(values.max()), 1e-6),
                  interpolation="nearest")
        ax.set(title=name, xlabel="step t", ylabel="memory row")
        for k, (phase, (lo, hi)) in enumerate(phases.items()):
            if hi > lo:
                ax.axvspan(lo - 0.5, hi - 0.5, ymin=0, ymax=0.03, color=f"C{k}", label=phase)
    axes[0].legend(loc="upper left", fontsize=7, framealpha=0.8)
    im = axes[3].imshow(link, cmap="viridis", origin="lower", interpolation="nearest")
    axes[3].set(title="temporal links $L_T$ (row i after row j)", xlabel="j", ylabel="i")
    fig.colorbar(im, ax=axes[3], fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def map_figure(pos: np.ndarray, edges: Sequence[tuple[int, int]], names: Sequence[str],
               answer: Sequence[tuple[int, int, bool]], path: str | os.PathLike, title: str = "",
               start: int | None = None) -> Path:
    """A graph on its map with an answered path drawn over it.

    Args:
        pos: ``[N, 2]`` x/y of the nodes; edges: ``(source, destination)`` pairs (drawn once per pair);
        names: node names; answer: ``(from, to, correct)`` per answered step (green when correct,
        red when not); start: the node the question starts from (ringed).
    """
    fig, ax = plt.subplots(figsize=(12, 7.5))
    for a, b in {tuple(sorted(e)) for e in edges}:
        ax.plot(*pos[[a, b]].T, color="0.8", lw=1.2, zorder=1)
    ax.scatter(*pos.T, s=14, color="0.35", zorder=2)
    for i, name in enumerate(names):
        ax.annotate(name, pos[i], fontsize=6, color="0.3", xytext=(2, 2), textcoords="offset points")
    for k, (a, b, ok) in enumerate(answer):
        ax.annotate("", xy=pos[b], xytext=pos[a], zorder=3,
                    arrowprops={"arrowstyle": "-|>", "color": "tab:green" if ok else "tab:red", "lw": 2.2})
        ax.annotate(str(k + 1), (pos[a] + pos[b]) / 2, fontsize=8, weight="bold", zorder=4)
    if start is not None:
        ax.scatter(*pos[start], s=160, facecolors="none", edgecolors="tab:blue", lw=2, zorder=4)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def read_curriculum(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """The curriculum of a supervised run from its ``metrics.jsonl`` (one row per evaluation).

    Returns:
        ``{"sequences", "cpu_seconds", "lesson", "accuracy", "digit_accuracy"}``, each ``[E]`` over the
        E evaluations, measured on the lesson the run was in: accuracy = 1 - ``eval_error_rate`` (answer
        triples with all 9 digits right), digit accuracy = 1 - ``eval_digit_error_rate`` (NaN where absent).
    """
    path = Path(run_dir) / "metrics.jsonl"
    check_regular_file(path, None, "the run's metrics file")
    keys = ("sequences", "cpu_seconds", "lesson", "eval_error_rate", "eval_digit_error_rate")
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append([float(row[k]) for k in keys[:4]] + [float(row.get(keys[4], "nan"))])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise HeedError(f"'{path}' line {number} is not an evaluation of a curriculum run "
                            f"(wants {', '.join(keys[:4])})") from None
    if not rows:
        raise HeedError(f"'{path}' has no evaluations yet")
    values = np.asarray(rows)
    return {"sequences": values[:, 0], "cpu_seconds": values[:, 1], "lesson": values[:, 2],
            "accuracy": 1.0 - values[:, 3], "digit_accuracy": 1.0 - values[:, 4]}


def curriculum_curve(runs: Mapping[str, Mapping[str, Sequence[float]]], path: str | os.PathLike,
                     title: str = "") -> Path:
    """Lesson (top) and accuracy (bottom: answer triples solid, digits dashed when given) against
    training sequences (left) and training CPU-seconds (right), one colour per run.

    Args:
        runs: run name -> ``{"sequences": [...], "cpu_seconds": [...], "lesson": [...], "accuracy": [...]}``
            (as :func:`read_curriculum` returns; accuracy in 0-1, measured on the lesson the run was in).
    """
    fig, axes = plt.subplots(2, 2, figsize=(12, 6), sharex="col", sharey="row")
    for col, x in enumerate(("sequences", "cpu_seconds")):
        top, bottom = axes[:, col]
        for k, (name, values) in enumerate(runs.items()):
            top.step(values[x], values["lesson"], where="post", color=f"C{k}", label=name)
            bottom.plot(values[x], 100 * np.asarray(values["accuracy"]), color=f"C{k}", label=name)
            if "digit_accuracy" in values:
                bottom.plot(values[x], 100 * np.asarray(values["digit_accuracy"]), color=f"C{k}", ls="--", lw=0.9)
        top.yaxis.get_major_locator().set_params(integer=True)
        bottom.set(xlabel={"sequences": "training sequences", "cpu_seconds": "training CPU-seconds"}[x], ylim=(0, 100))
    top_lesson = max([float(np.max(v["lesson"])) for v in runs.values()], default=1.0)
    axes[0, 0].set(ylabel="lesson", ylim=(0.5, max(top_lesson, 2.0) + 0.5))
    axes[1, 0].set(ylabel="accuracy on the lesson (%)\n(solid: triples, dashed: digits)")
    axes[0, 0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
