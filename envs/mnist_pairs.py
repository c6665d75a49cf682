"""Two MNIST digits on one canvas (Ba, Mnih & Kavukcuoglu 2014, "MNIST pairs"): where they go, and which
comes first.

The ``mnist-pairs`` dataset of :mod:`heed.envs.mnist` places two 28x28 digits on a 60x60 canvas so that
their 28x28 boxes do not overlap: one axis (columns or rows, each with probability 1/2) is chosen, and
along it the two boxes are drawn uniformly among the placements at least 28 pixels apart; along the other
axis each box is placed uniformly and independently. The boxes therefore never share a pixel, and the
digits never overlap.

Order (the label order a model must emit): **left to right; boxes that share a column are ordered top to
bottom**. That is, box ``a`` comes before box ``b`` when ``a`` ends left of ``b``'s left edge
(``x_a + 28 <= x_b``), or, when neither ends left of the other, when ``a`` is above ``b``. The sum task's
label is the sum of the two digits (0..18).

Pure geometry and index sampling: this module imports nothing else of heed, so :mod:`heed.envs.mnist`
can use it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: side of a digit's box
DIGIT = 28
#: digits per canvas
OBJECTS = 2


def precedes(a: tuple[int, int], b: tuple[int, int], side: int = DIGIT) -> bool:
    """Whether box ``a = (top, left)`` comes before box ``b`` in the pairs' order (module docstring)."""
    if a[1] + side <= b[1]:
        return True
    if b[1] + side <= a[1]:
        return False
    return a[0] < b[0]


def pair_boxes(size: int, rng: np.random.Generator, side: int = DIGIT) -> np.ndarray:
    """Top-left corners ``[2, 2]`` (rows: ``(top, left)``) of two non-overlapping ``side``-boxes on a
    ``size``-canvas, first box first in the pairs' order.

    Raises ``ValueError`` when two boxes cannot fit side by side (``size < 2 * side``).
    """
    room = size - side  # corners run over 0 .. room
    if room < side:
        raise ValueError(f"a {size}x{size} canvas cannot hold two {side}x{side} boxes apart")
    apart = _apart(room, side)
    p, q = apart[int(rng.integers(len(apart)))]
    free = rng.integers(0, room + 1, size=2)
    if rng.random() < 0.5:  # apart along the columns
        boxes = np.array([[free[0], p], [free[1], q]])
    else:  # apart along the rows
        boxes = np.array([[p, free[0]], [q, free[1]]])
    a, b = (int(boxes[0, 0]), int(boxes[0, 1])), (int(boxes[1, 0]), int(boxes[1, 1]))
    return boxes if precedes(a, b, side) else boxes[::-1].copy()


@lru_cache(maxsize=8)
def _apart(room: int, side: int) -> tuple[tuple[int, int], ...]:
    """Every ``(p, q)`` in ``0..room`` with ``|p - q| >= side``: corners of two boxes apart along one axis."""
    return tuple((p, q) for p in range(room + 1) for q in range(room + 1) if abs(p - q) >= side)


def pair_indices(n: int, count: int, rng: np.random.Generator, distinct_first: bool = False) -> np.ndarray:
    """``[count, 2]`` indices of two *different* source digits out of ``n`` (``n >= 2``).

    ``distinct_first``: the first digits are a random permutation (each source digit once, ``count <= n``),
    as the fixed test set uses; otherwise they are drawn with replacement (training batches).
    """
    if n < 2:
        raise ValueError("pairs need at least two source digits")
    if distinct_first:
        first = rng.permutation(n)[:count]
    else:
        first = rng.integers(n, size=count)
    second = (first + rng.integers(1, n, size=len(first))) % n  # any digit but the first
    return np.stack([first, second], 1).astype(np.int64)
