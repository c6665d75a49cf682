"""Measures and figures for translation-like tasks: BLEU, exact match by length, alignment quality.

- :func:`bleu`: corpus BLEU (Papineni et al. 2002) in percent, up to 4-grams, uniform weights,
  clipped n-gram precisions and the brevity penalty::

      BLEU = BP * exp(sum_n (1/N) log p_n),   p_n = sum clipped matches / sum candidate n-grams,
      BP = 1 if c > r else exp(1 - r / c)    (c, r: total candidate and reference lengths)

  0 when any ``p_n`` is 0 (no smoothing).
- :func:`by_length`: exact match and BLEU per source-length bin (Bahdanau et al. 2014, Fig. 2).
- :func:`alignment_share`: the mean, over target words that have an aligned source word, of the
  weight a map ``[L_target, S]`` (attention, or a gradient map normalised per row) puts on that word.
- :func:`to_words`: a map over characters summed to one over words (character-level models).
- :func:`heatmap_figure`, :func:`length_figure`: the figures; :func:`alignment_frames`: the frames of
  a video of the alignment as the decoder writes (one per output word).

Token sequences are lists of hashable items (words or ids). Imports nothing from :mod:`heed.agents`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np


def _ngrams(tokens: Sequence, n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(candidates: Sequence[Sequence], references: Sequence[Sequence], max_n: int = 4) -> float:
    """Corpus BLEU in percent (one reference per candidate; see the module docstring)."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
    matches, totals = [0] * max_n, [0] * max_n
    c_len = r_len = 0
    for cand, ref in zip(candidates, references):
        c_len, r_len = c_len + len(cand), r_len + len(ref)
        for n in range(1, max_n + 1):
            c, r = _ngrams(cand, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(k, r[g]) for g, k in c.items())
            totals[n - 1] += max(len(cand) - n + 1, 0)
    if c_len == 0 or min(matches) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = 1.0 if c_len > r_len else math.exp(1.0 - r_len / c_len)
    return 100.0 * brevity * math.exp(log_p)


def by_length(
    candidates: Sequence[Sequence],
    references: Sequence[Sequence],
    lengths: Sequence[int],
    edges: Sequence[int],
) -> list[dict]:
    """Per bin ``[edges[i], edges[i+1])`` of source length: ``{"lo", "hi", "count", "exact", "bleu"}``
    (``exact``: share of candidates equal to their reference, in percent); empty bins are left out."""
    rows = []
    lengths = np.asarray(lengths)
    for lo, hi in zip(edges[:-1], edges[1:]):
        idx = np.flatnonzero((lengths >= lo) & (lengths < hi))
        if len(idx) == 0:
            continue
        cands, refs = [candidates[i] for i in idx], [references[i] for i in idx]
        exact = 100.0 * float(np.mean([list(c) == list(r) for c, r in zip(cands, refs)]))
        rows.append(
            {"lo": int(lo), "hi": int(hi), "count": len(idx), "exact": exact, "bleu": bleu(cands, refs)}
        )
    return rows


def alignment_share(weights: np.ndarray, alignment: Sequence[int]) -> float:
    """Mean weight on the aligned source word: ``mean_{i: a_i >= 0} W[i, a_i]``.

    Args:
        weights: ``[L, S]`` rows over source words (attention rows sum to 1; normalise other maps first).
        alignment: ``a_i``, the source index of target word i (``-1``: none); rows beyond ``L`` are ignored.
    """
    weights = np.asarray(weights)
    pairs = [(i, j) for i, j in enumerate(alignment[: weights.shape[0]]) if j >= 0]
    if not pairs:
        return float("nan")
    return float(np.mean([weights[i, j] for i, j in pairs]))


def to_words(weights: np.ndarray, target_words: Sequence[int], source_words: Sequence[int]) -> np.ndarray:
    """A token map ``[L_target, S]`` summed to a word map ``[W_target, W_source]``.

    ``M[i, j] = mean_{t in word i} sum_{s in word j} W[t, s]``: the columns of each source word's
    characters are summed (the weight a target character puts on the word), the rows of each target
    word's characters averaged (so attention rows keep summing to at most 1). Tokens whose word index
    is -1 (the spaces) are left out; rows beyond ``len(target_words)`` and columns beyond
    ``len(source_words)`` are ignored. At word level (both maps the identity) ``M == W``.
    """
    weights = np.asarray(weights, dtype=np.float64)
    tw, sw = np.asarray(target_words), np.asarray(source_words)
    rows, cols = int(tw.max(initial=-1)) + 1, int(sw.max(initial=-1)) + 1
    cols_summed = np.zeros((weights.shape[0], cols))
    for j in range(cols):
        cols_summed[:, j] = weights[:, : len(sw)][:, sw == j].sum(1)
    out = np.zeros((rows, cols))
    for i in range(rows):
        out[i] = cols_summed[: len(tw)][tw == i].mean(0)
    return out


def heatmap_figure(
    weights: np.ndarray,
    source: Sequence[str],
    target: Sequence[str],
    title: str,
    alignment: Sequence[int] | None = None,
    vmax: float | None = None,
    cell: tuple[float, float] = (0.42, 0.36),
):
    """A matplotlib figure of a ``[L_target, S]`` map, target words down, source words across; the
    grammar's alignment (when given) is drawn as small circles. NaN cells are left blank; the grey
    scale runs from 0 to ``vmax`` (default: the map's largest value); ``cell`` is the width and height
    of one cell in inches (smaller for maps over characters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = np.asarray(weights)
    fig, ax = plt.subplots(figsize=(cell[0] * len(source) + 2.5, cell[1] * len(target) + 1.8))
    top = float(np.nanmax(weights)) if vmax is None and np.isfinite(weights).any() else (vmax or 0.0)
    ax.imshow(weights, cmap="gray", vmin=0.0, vmax=max(top, 1e-9), aspect="auto")
    ax.set_xticks(range(len(source)), source, rotation=60, ha="right")
    ax.set_yticks(range(len(target)), target)
    if min(cell) < 0.3:
        ax.tick_params(labelsize=5.5)
    ax.xaxis.tick_top()
    plt.setp(ax.get_xticklabels(), rotation=60, ha="left")
    if alignment is not None:
        ij = [(i, j) for i, j in enumerate(alignment[: len(target)]) if j >= 0]
        ax.scatter(
            [j for _, j in ij], [i for i, _ in ij], s=12, facecolors="none", edgecolors="tab:red", lw=0.8
        )
    ax.set_title(title, fontsize=9, pad=10)
    fig.tight_layout()
    return fig


def alignment_frames(
    weights: np.ndarray,
    source: Sequence[str],
    target: Sequence[str],
    title: str,
    alignment: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """Frames ``[H, W, 3]`` uint8 of the alignment as the decoder writes: frame i shows rows ``0..i``
    of the ``[L_target, S]`` map (later rows blank, their words not yet written), one frame per output
    word, all at the same size and grey scale (0 to the whole map's maximum)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = np.asarray(weights, dtype=np.float64)
    vmax = float(weights.max()) if weights.size else 1.0
    frames = []
    for i in range(len(target)):
        partial = weights.copy()
        partial[i + 1 :] = np.nan
        words = [w if r <= i else "" for r, w in enumerate(target)]
        marks = None if alignment is None else list(alignment[: i + 1])
        fig = heatmap_figure(partial, source, words, f"{title}\nword {i + 1}/{len(target)}: {target[i]}", marks, vmax)
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    return frames


def length_figure(curves: dict[str, list[list[dict]]], key: str = "bleu", label: str = "BLEU"):
    """``key`` against source length: per model, the mean over runs (thick) and each run (thin).

    Args:
        curves: model name -> one :func:`by_length` table per run (same bins in every run).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for (name, runs), color in zip(curves.items(), ("tab:blue", "tab:red", "tab:green", "tab:purple")):
        mids = [(r["lo"] + r["hi"] - 1) / 2 for r in runs[0]]
        values = np.array([[r[key] for r in run] for run in runs])  # [runs, bins]
        for row in values:
            ax.plot(mids, row, color=color, lw=0.7, alpha=0.4)
        ax.plot(
            mids, values.mean(0), color=color, lw=2.2, marker="o", ms=3, label=f"{name} ({len(runs)} runs)"
        )
    ax.set_xlabel("source sentence length (words)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
