"""Statistics across seeds: the interquartile mean and percentile-bootstrap confidence intervals.

Agarwal et al. (2021), *Deep RL at the Edge of the Statistical Precipice*, recommend reporting the
interquartile mean (IQM) of a few runs with a bootstrap confidence interval instead of one seed or a
plain mean. The same statistics as ``rliable`` for one task, in a few lines of numpy:

- ``iqm(x)``: sort the n values, drop ``floor(n / 4)`` from each end, average the rest (what
  ``scipy.stats.trim_mean(x, 0.25)`` computes; for n < 4 it is the plain mean);
- ``bootstrap_ci(x, stat)``: draw B resamples of the n seeds with replacement, apply ``stat`` to
  each, and return the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the B values.

Every function works along the seed axis 0 of an array ``[n_seeds, ...]``, so a whole learning
curve ``[n_seeds, n_points]`` gets its band in one call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Statistic = Callable[[np.ndarray], np.ndarray]


def iqm(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean along ``axis``: the mean of the values left after trimming ``floor(n/4)`` per end.

    ``x``: ``[n, ...]`` (seeds first). Returns ``x.shape`` without ``axis``.
    """
    x = np.sort(np.asarray(x, dtype=float), axis=axis)
    n = x.shape[axis]
    cut = n // 4
    return np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def mean(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """The plain mean along ``axis`` (a named statistic beside :func:`iqm`)."""
    return np.asarray(x, dtype=float).mean(axis=axis)


def bootstrap_ci(
    x: np.ndarray, stat: Statistic = iqm, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap confidence interval of ``stat`` over the seeds (axis 0) of ``x``.

    ``x``: ``[n, ...]``. Resample seed indices ``I[b, i] ~ U{0..n-1}`` for ``b < resamples``, compute
    ``s_b = stat(x[I[b]])`` and return ``(quantile(s, (1-level)/2), quantile(s, (1+level)/2))``,
    each of shape ``x.shape[1:]``. ``stat`` must reduce axis 0 (``iqm``, ``mean``). Deterministic for a
    fixed ``seed``.
    """
    x = np.asarray(x, dtype=float)
    if x.shape[0] == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    idx = rng.integers(x.shape[0], size=(resamples, x.shape[0]))  # [B, n]
    samples = np.stack([stat(x[row]) for row in idx])  # [B, ...]
    alpha = (1.0 - level) / 2.0
    return np.quantile(samples, alpha, axis=0), np.quantile(samples, 1.0 - alpha, axis=0)


def summarize(values: np.ndarray, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """IQM and mean of ``values`` ``[n]`` with their bootstrap intervals, as a flat dict of floats."""
    values = np.asarray(values, dtype=float)
    out: dict[str, float] = {"n": float(len(values))}
    for name, stat in (("iqm", iqm), ("mean", mean)):
        low, high = bootstrap_ci(values, stat, level, resamples, seed)
        out.update({name: float(stat(values)), f"{name}_low": float(low), f"{name}_high": float(high)})
    return out
