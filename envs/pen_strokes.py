"""Letter strokes from the Hershey 'cursive' face, and which of them are delayed.

The Hershey fonts (PyPI ``Hershey-Fonts``, MIT licence) store each glyph as polylines ("strokes") in
integer font units, y pointing down, with the lowercase x-height from y = 0 (top) to y = 9 (the
baseline). The 'cursive' face's lowercase letters are joined script: every letter enters and leaves
at the joining height y = 4 on its left and right side, so letters written one after another make a
connected word. (The 'scripts' face has the same lowercase strokes; 'scriptc' draws every line twice
to thicken it, which is no pen trajectory, so one face is used.)

Units here: x-heights, y up, the baseline at y = 0 (font ``(x, y)`` becomes ``(x / 9, (9 - y) / 9)``).

**Delayed strokes**, the rule (checked by the tests on every letter): a stroke of a glyph is delayed
when

1. it is a *dot*: its bounding box is smaller than :data:`DOT_SIZE` x-heights both ways (the i and j
   dots, which the font stores as the glyph's FIRST stroke), or
2. it comes after the glyph's *exit stroke*, the stroke that ends on the glyph's right side at the
   joining height, where the next letter starts (the t-bar and the x-cross).

In this face that makes exactly i, j (dot), t (bar) and x (cross) the letters with delayed strokes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

#: the font face used for every letter
FACE = "cursive"
#: font units per x-height (lowercase letters span y = 0 .. 9 in the Hershey script faces)
FONT_X_HEIGHT = 9.0
#: the joining height in font units (y = 4: letters enter and leave there)
JOIN_Y = 4
#: a stroke whose bounding box is below this many x-heights both ways is a dot (delayed)
DOT_SIZE = 0.25


@dataclass(frozen=True)
class Glyph:
    """One letter's strokes in x-height units (y up, baseline 0), with its advance.

    ``strokes``: polylines ``[n_i, 2]`` float64 in the font's drawing order; ``delayed[i]``: whether
    stroke i is written after the word's main strokes; ``left``/``right``: the glyph's side bearings
    (the pen enters at ``left`` and leaves at ``right``); ``width = right - left``.
    """

    char: str
    strokes: tuple[np.ndarray, ...]
    delayed: tuple[bool, ...]
    left: float
    right: float

    @property
    def width(self) -> float:
        return self.right - self.left


def _to_units(points: list[tuple[int, int]]) -> np.ndarray:
    xy = np.asarray(points, np.float64).reshape(-1, 2)
    return np.stack([xy[:, 0] / FONT_X_HEIGHT, (FONT_X_HEIGHT - xy[:, 1]) / FONT_X_HEIGHT], axis=1)


def delayed_flags(strokes: list[list[tuple[int, int]]], right: int) -> list[bool]:
    """Which font strokes (font units, y down) are delayed, by the rule in the module docstring."""
    flags = []
    for points in strokes:
        xy = np.asarray(points, np.float64).reshape(-1, 2)
        extent = (xy.max(0) - xy.min(0)) / FONT_X_HEIGHT
        flags.append(bool(np.all(extent < DOT_SIZE)))
    exits = [i for i, points in enumerate(strokes) if tuple(points[-1]) == (right, JOIN_Y) and not flags[i]]
    if exits:
        for i in range(exits[-1] + 1, len(strokes)):
            flags[i] = True
    return flags


@functools.cache
def glyphs(chars: str) -> dict[str, Glyph]:
    """The :class:`Glyph` of every character of ``chars`` (a space has no strokes)."""
    from HersheyFonts import HersheyFonts

    font = HersheyFonts()
    font.load_default_font(FACE)
    table = font.all_glyphs
    out = {}
    for char in chars:
        glyph = table[char]
        strokes = [list(s) for s in glyph.strokes]
        left, right = glyph.left_offset, glyph.left_offset + glyph.char_width
        out[char] = Glyph(
            char=char,
            strokes=tuple(_to_units(s) for s in strokes),
            delayed=tuple(delayed_flags(strokes, right)),
            left=left / FONT_X_HEIGHT,
            right=right / FONT_X_HEIGHT,
        )
    return out


def resample(vertices: np.ndarray, labels: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step`` of arc length along one pen-down polyline, each piece kept.

    Args:
        vertices: ``[n, 2]`` the polyline's corners.
        labels: ``[n]`` int the character each corner belongs to; the segment into corner i is
            drawn for ``labels[i]``.
        step: the arc length between points (x-heights).

    Returns:
        ``(points [m, 2], labels [m])``: for every run of segments with one label (a *piece*),
        ``max(1, round(length / step))`` points evenly spaced from the piece's start; then the
        polyline's last corner. So every character drawn by the polyline gets at least one point.
    """
    seg = np.diff(vertices, axis=0)  # [n-1, 2]
    seg_len = np.linalg.norm(seg, axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg_len)])  # arc length at every corner
    seg_labels = labels[1:]
    points, out_labels = [], []
    start = 0
    while start < len(seg_labels):
        end = start
        while end + 1 < len(seg_labels) and seg_labels[end + 1] == seg_labels[start]:
            end += 1
        s0, s1 = cum[start], cum[end + 1]
        count = max(1, int(round((s1 - s0) / step)))
        where = s0 + (s1 - s0) * np.arange(count) / count
        points.append(np.stack([np.interp(where, cum, vertices[:, 0]), np.interp(where, cum, vertices[:, 1])], 1))
        out_labels.append(np.full(count, seg_labels[start], np.int64))
        start = end + 1
    points.append(vertices[-1:])
    out_labels.append(labels[-1:].astype(np.int64))
    return np.concatenate(points), np.concatenate(out_labels)
