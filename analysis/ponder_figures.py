"""Figures for pondering and self-attention; plain arrays in, PNG files out (nothing from ``agents``).

- :func:`ponder_per_step`: ponder time rho_t per input step (the lecture's plot: pondering rises
  where prediction is hard), optionally with a label per step.
- :func:`ponder_by_group`: mean (and spread) of ponder time per group, e.g. per number of non-zero
  parity inputs or per number of supporting facts in bAbI.
- :func:`attention_grid`: attention maps ``[L, H, T, T]``, one panel per layer (row) and head (column).
- :func:`group_stats`: the numbers behind :func:`ponder_by_group`.
- :func:`ponder_under_text`, :func:`ponder_by_char_class`: ponder per character of a text under the
  text (Graves 2016, Figs. 23-24) and its mean per character class (:func:`char_classes`).
- :func:`sentence_ponder`, :func:`support_contrast`, :func:`ponder_story`: ponder per sentence of a
  bAbI story, supporting facts against distractors, and the story drawn with its ponder per sentence.
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


#: character classes of :func:`char_classes`, in order (sentence punctuation: ``. , ; : ! ?``)
CHAR_CLASSES = ("letter", "space", "newline", "sentence punctuation", "other symbol", "digit", "ID digit")
_SENTENCE_PUNCTUATION = frozenset(".,;:!?")


def char_classes(text: str, id_digits: Any | None = None) -> np.ndarray:
    """Class index into :data:`CHAR_CLASSES` of every character ``[len(text)]`` int.

    ``id_digits``: optional ``[len(text)]`` bool, True where a digit is part of a random ID (those get
    ``ID digit``; every other digit is ``digit``). Letters are alphabetic characters, ``space`` the
    blank, ``other symbol`` any other printable non-alphanumeric character (markup, brackets, quotes).
    """
    ids = np.zeros(len(text), dtype=int) if id_digits is None else np.asarray(id_digits, dtype=bool)
    out = np.empty(len(text), dtype=int)
    for i, c in enumerate(text):
        if c.isdigit():
            name = "ID digit" if ids[i] else "digit"
        elif c.isalpha():
            name = "letter"
        elif c == " ":
            name = "space"
        elif c == "\n":
            name = "newline"
        else:
            name = "sentence punctuation" if c in _SENTENCE_PUNCTUATION else "other symbol"
        out[i] = CHAR_CLASSES.index(name)
    return out


def ponder_by_char_class(text: str, ponder: Any, id_digits: Any | None = None) -> dict[str, tuple[float, int]]:
    """``{class: (mean ponder, characters)}`` over the classes of :func:`char_classes` that occur.

    Args:
        text: the input characters, one per step; ``ponder``: ``[len(text)]`` ponder time ``rho_t`` at
            the step that reads character t; ``id_digits``: as in :func:`char_classes`.
    """
    rho = _np(ponder).ravel()
    if len(rho) != len(text):
        raise ValueError(f"ponder has {len(rho)} steps for {len(text)} characters")
    stats = group_stats(char_classes(text, id_digits), rho)
    return {CHAR_CLASSES[k]: (mean, count) for k, (mean, _, count) in stats.items()}


def ponder_under_text(
    text: str, ponder: Any, path: str | os.PathLike, per_line: int = 80, title: str = ""
) -> Path:
    """The lecture's ponder figure (Graves 2016, Figs. 23-24): ponder ``rho [len(text)]`` as bars over each
    character, the text wrapped into rows of ``per_line`` characters with a panel per row.
    """
    rho = _np(ponder).ravel()
    rows = max(1, -(-len(text) // per_line))
    top = max(float(rho.max()), 1.0) * 1.05
    fig, axes = plt.subplots(rows, 1, figsize=(0.13 * per_line + 1.0, 1.25 * rows), squeeze=False)
    for r in range(rows):
        ax = axes[r, 0]
        chunk, values = text[r * per_line : (r + 1) * per_line], rho[r * per_line : (r + 1) * per_line]
        ax.bar(np.arange(len(chunk)), values, width=0.8, color="tab:blue")
        ax.set_xlim(-0.6, per_line - 0.4)
        ax.set_ylim(0.0, top)
        ax.set_xticks(np.arange(len(chunk)))
        ax.set_xticklabels(["\u21b5" if c == "\n" else c for c in chunk], fontsize=7, family="monospace",
                           va="baseline")  # one baseline, whatever the letter's height
        ax.tick_params(axis="x", length=0, pad=8)
        ax.tick_params(axis="y", labelsize=6)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0, 0].set_title(title, fontsize=8)
    axes[rows // 2, 0].set_ylabel("ponder time", fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, close=True)


def sentence_ponder(ponder: Any, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mean ponder time per sentence ``[S]``: ``rho_s = mean_{t in [start_s, stop_s)} rho_t``.

    Args:
        ponder: ``[T]`` ponder time per input step of one story.
        spans: S pairs ``(start, stop)`` of input steps, one per sentence (one step each when a
            sentence is one input vector; its words when a word is one step).
    """
    rho = _np(ponder).ravel()
    if any(not 0 <= a < b <= len(rho) for a, b in spans):
        raise ValueError(f"sentence spans {list(spans)} do not fit {len(rho)} steps")
    return np.array([rho[a:b].mean() for a, b in spans])


def support_contrast(per_sentence: Sequence[Any], supports: Sequence[Sequence[int]]) -> dict[str, float]:
    """Ponder on a question's supporting facts against the story's other facts (distractors).

    Args:
        per_sentence: per story, ponder ``[F]`` of its F facts (the question excluded).
        supports: per story, the indices (into its facts) of the supporting facts.

    Returns:
        ``support``/``distractor``: mean ponder over all supporting / distractor facts of all stories;
        ``story_support``/``story_distractor``: the mean over stories of each story's mean;
        ``share_higher``/``share_equal``: the share of stories (with at least one distractor) whose mean
        ponder on supporting facts is above / equal to (within 1e-6) that on their distractors;
        ``stories``: how many stories had distractors.
    """
    sup, dis, story_sup, story_dis = [], [], [], []
    for rho, idx in zip(per_sentence, supports):
        rho = _np(rho).ravel()
        is_sup = np.zeros(len(rho), dtype=bool)
        is_sup[list(idx)] = True
        sup.append(rho[is_sup])
        dis.append(rho[~is_sup])
        if is_sup.any() and (~is_sup).any():
            story_sup.append(rho[is_sup].mean())
            story_dis.append(rho[~is_sup].mean())
    a, b = np.array(story_sup), np.array(story_dis)
    return {
        "support": float(np.concatenate(sup).mean()),
        "distractor": float(np.concatenate(dis).mean()),
        "story_support": float(a.mean()),
        "story_distractor": float(b.mean()),
        "share_higher": float((a > b + 1e-6).mean()),
        "share_equal": float((np.abs(a - b) <= 1e-6).mean()),
        "stories": int(len(a)),
    }


def ponder_story(
    sentences: Sequence[str], ponder: Any, supports: Sequence[int], path: str | os.PathLike, title: str = ""
) -> Path:
    """The UT paper's bAbI figure: ponder time per sentence ``[S]`` as horizontal bars beside the story's
    sentences (the question last), supporting facts (indices ``supports``) marked in colour and with ``*``.
    """
    rho = _np(ponder).ravel()
    count = len(sentences)
    colour = ["tab:orange" if i in supports else "tab:gray" for i in range(count)]
    colour[-1] = "tab:blue"  # the question
    fig, ax = plt.subplots(figsize=(7.0, 0.32 * count + 1.0))
    ax.barh(np.arange(count), rho, color=colour)
    ax.set_yticks(np.arange(count))
    ax.set_yticklabels([("* " if i in supports else "") + s for i, s in enumerate(sentences)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ponder time (N + R)")
    ax.set_xlim(0.0, max(float(rho.max()), 1.0) * 1.1)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or "orange *: supporting fact, grey: distractor, blue: question", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, close=True)
