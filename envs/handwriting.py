"""Synthetic online handwriting: text -> pen trajectory (dx, dy, pen-up), made offline from a stroke font.

IAM-OnDB cannot be had offline, so heed writes its own pen data from the Hershey 'cursive' face
(:mod:`heed.envs.pen_strokes`: the letters, and which strokes are delayed), varied per writer.

**Units**: one x-height = 1 (the height of an 'o'); y points up and the baseline is y = 0. A letter
is about 1.5 x-heights wide; ascenders reach 1.9, descenders -1.3.

**Writing a word**: the letters are placed one after another (advance = the glyph's width times the
writer's ``width``, plus ``letter_spacing``); the word's main strokes are drawn in order, joined by a
pen-down connecting line when the gap between the end of one stroke and the start of the next is
below the writer's ``join_distance`` (else the pen lifts); then the word's **delayed strokes** (the
i/j dots, t-bars and x-crosses) come last, in letter order, each its own stroke, as people write them
after the word. Then a space (``word_spacing``) and the next word.

**Writer variation** (:class:`WriterStyle`, fixed per writer id) is applied to the whole line before
resampling: a per-letter size jitter, horizontal stretch, slant (shear), overall scale, a sinusoidal
baseline drift, a smooth random displacement (a few random sinusoids of the x position, different for
every sample), and a displacement of the delayed strokes (dots land a little right of the stem).

**Resampling**: every pen-down stroke is resampled at equal arc length, ``points_per_unit * speed``
points per x-height of pen path (default 2.0: about 11.6 points per letter on average; a letter's pen
path is about 5.7 x-heights), with a small per-point jitter. (Raw IAM-OnDB has about 25 points per
letter; recognisers usually down-sample it; 8 to 14 keeps CPU training affordable.)

**Words**: the words of Python's own documentation (:mod:`heed.envs.text`, nothing to download),
lowercased, letters only, 1 to 12 long; a word goes to ``test`` when its crc32 is 0 mod 5, else to
``train``. Evaluation is about held-out WRITERS (:data:`TEST_WRITERS`, never seen in training), which
also write held-out words.
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass, fields

import numpy as np

from heed.envs.errors import HeedError, require
from heed.envs.pen_strokes import glyphs, resample

#: the characters a text may contain: space and the lowercase letters (index 0 is the space)
ALPHABET = " abcdefghijklmnopqrstuvwxyz"
#: training writers (styles) and held-out writers: disjoint id ranges
TRAIN_WRITERS = range(0, 1000)
TEST_WRITERS = range(1000, 1100)
#: the default pen points per x-height of pen path (before the writer's ``speed``)
POINTS_PER_UNIT = 2.0
SPLITS = ("train", "test")
_STYLE_SEED = 16_2013  # writer styles are drawn from default_rng([_STYLE_SEED, writer])
MAX_TEXT = 200  # characters per sample: a line, not a page


@dataclass(frozen=True)
class WriterStyle:
    """One writer's hand. Lengths in x-heights; :func:`writer_style` draws each from the range noted."""

    slant: float = 0.2
    """Shear ``x += slant * y`` (0: upright, 0.4: strongly forward-leaning); [-0.1, 0.45]."""
    scale: float = 1.0
    """Overall size of the writing; [0.85, 1.15]."""
    width: float = 1.0
    """Horizontal stretch of every letter; [0.8, 1.25]."""
    letter_spacing: float = 0.05
    """Extra gap between letters; [-0.05, 0.25]."""
    word_spacing: float = 1.2
    """The gap a space leaves; [0.9, 1.6]."""
    drift_amplitude: float = 0.1
    """Amplitude of the baseline's sinusoidal drift; [0, 0.25]."""
    drift_wavelength: float = 12.0
    """Its wavelength along x; [6, 20]."""
    noise: float = 0.03
    """Amplitude of the smooth random displacement of every sample (per coordinate); [0.01, 0.06]."""
    size_jitter: float = 0.04
    """Standard deviation of each letter's relative size; [0.02, 0.08]."""
    join_distance: float = 1.4
    """Strokes of a word closer than this are joined pen-down; farther ones lift the pen; [0.8, 2.0]."""
    dot_shift: float = 0.12
    """How far right of where the font puts them the delayed strokes land; [-0.05, 0.3]."""
    speed: float = 1.0
    """Multiplies the points per unit (a slower writer leaves more points); [0.85, 1.15]."""


_RANGES = {
    "slant": (-0.1, 0.45), "scale": (0.85, 1.15), "width": (0.8, 1.25), "letter_spacing": (-0.05, 0.25),
    "word_spacing": (0.9, 1.6), "drift_amplitude": (0.0, 0.25), "drift_wavelength": (6.0, 20.0),
    "noise": (0.01, 0.06), "size_jitter": (0.02, 0.08), "join_distance": (0.8, 2.0),
    "dot_shift": (-0.05, 0.3), "speed": (0.85, 1.15),
}


def writer_style(writer: int) -> WriterStyle:
    """The style of writer ``writer`` (>= 0): every field uniform in its range, the same for the same id."""
    require(isinstance(writer, (int, np.integer)) and writer >= 0, f"writer must be an integer >= 0, got {writer!r}")
    rng = np.random.default_rng([_STYLE_SEED, int(writer)])
    return WriterStyle(**{f.name: float(rng.uniform(*_RANGES[f.name])) for f in fields(WriterStyle)})


@dataclass(frozen=True)
class PenSample:
    """One written line.

    ``points [T, 3]`` float32: ``(dx, dy, eos)``, the pen's offset from the previous point (the first
    point's from the origin, the left end of the baseline) in x-heights, y up; ``eos = 1`` on the
    last point of each stroke (the pen lifts after it). ``char_index [T]`` int64: the index in
    ``text`` of the character each point draws (connecting lines belong to the letter they lead
    into; -1 for none). ``delayed [T]`` bool: the point belongs to a delayed stroke (dot, bar, cross).
    Every letter of ``text`` has at least one point; spaces have none.
    """

    points: np.ndarray
    text: str
    char_index: np.ndarray
    delayed: np.ndarray

    @property
    def xy(self) -> np.ndarray:
        """Absolute pen positions ``[T, 2]`` (the cumulative sum of the offsets)."""
        return np.cumsum(self.points[:, :2].astype(np.float64), axis=0)


def check_text(text: str) -> str:
    """``text`` unchanged, or one :class:`HeedError` naming the characters outside :data:`ALPHABET`."""
    require(isinstance(text, str), f"text must be a string, got {type(text).__name__}")
    bad = sorted({c for c in text if c not in ALPHABET})
    if bad:
        shown = " ".join(repr(c) for c in bad[:10])
        raise HeedError(f"text has characters outside the pen alphabet (lowercase a-z and space): {shown}")
    require(text.strip() != "", "text must contain at least one letter")
    require(len(text) <= MAX_TEXT, f"text is {len(text)} characters long; at most {MAX_TEXT} per sample")
    return text


def encode_labels(text: str) -> np.ndarray:
    """CTC labels ``[len(text)]`` int64 of ``text``: ``ALPHABET.index(c) + 1`` (class 0 is the blank)."""
    check_text(text)
    return np.fromiter((ALPHABET.index(c) + 1 for c in text), np.int64, len(text))


def decode_labels(labels: np.ndarray | list[int]) -> str:
    """The text of CTC labels (blanks, class 0, are skipped; no repeats are merged)."""
    return "".join(ALPHABET[k - 1] for k in np.asarray(labels, np.int64).tolist() if 0 < k <= len(ALPHABET))


def _layout(text: str, style: WriterStyle, rng: np.random.Generator):
    """Strokes of the line in drawing order: a list of ``(vertices [n, 2], labels [n], delayed)``."""
    table = glyphs(ALPHABET)
    strokes: list[tuple[np.ndarray, np.ndarray, bool]] = []
    cursor = 0.0
    word: list[tuple[np.ndarray, np.ndarray]] = []
    later: list[tuple[np.ndarray, np.ndarray]] = []

    def end_word() -> None:
        """Join the word's main strokes where they are close, then append its delayed strokes."""
        current: tuple[np.ndarray, np.ndarray] | None = None
        for vertices, labels in word:
            if current is not None and np.linalg.norm(vertices[0] - current[0][-1]) < style.join_distance:
                current = (np.concatenate([current[0], vertices]), np.concatenate([current[1], labels]))
                continue
            if current is not None:
                strokes.append((*current, False))
            current = (vertices, labels)
        if current is not None:
            strokes.append((*current, False))
        strokes.extend((v, lab, True) for v, lab in later)
        word.clear()
        later.clear()

    for index, char in enumerate(text):
        if char == " ":
            end_word()
            cursor += style.word_spacing
            continue
        glyph = table[char]
        size = max(0.5, 1.0 + style.size_jitter * rng.standard_normal())
        origin = cursor - glyph.left * style.width * size
        for vertices, is_delayed in zip(glyph.strokes, glyph.delayed):
            placed = np.stack([origin + vertices[:, 0] * style.width * size, vertices[:, 1] * size], 1)
            if is_delayed:
                placed = placed + [style.dot_shift * (1 + 0.3 * rng.standard_normal()), 0.05 * rng.standard_normal()]
            target = later if is_delayed else word
            target.append((placed, np.full(len(placed), index, np.int64)))
        cursor += glyph.width * style.width * size + style.letter_spacing
    end_word()
    return strokes


def _warp(xy: np.ndarray, style: WriterStyle, field: np.ndarray, drift_phase: float) -> np.ndarray:
    """Slant, smooth noise, baseline drift and scale applied to absolute positions ``[n, 2]``.

    ``field [2, 4, 3]``: per coordinate, 4 sinusoids of x (amplitude, angular frequency, phase):
    ``x' = scale * (x + slant * y + sum_i a_i sin(w_i x + p_i))``, ``y' = scale * (y + (the same
    with y's sinusoids) + drift_amplitude * sin(2 pi x / drift_wavelength + drift_phase))``.
    """
    x, y = xy[:, 0], xy[:, 1]
    wave = [np.sum(f[:, :1] * np.sin(f[:, 1:2] * x[None] + f[:, 2:3]), axis=0) for f in field]
    drift = style.drift_amplitude * np.sin(2 * np.pi * x / style.drift_wavelength + drift_phase)
    x2 = x + style.slant * y + wave[0]
    y2 = y + wave[1] + drift
    return style.scale * np.stack([x2, y2], 1)


def write(text: str, style: WriterStyle, rng: np.random.Generator,
          points_per_unit: float = POINTS_PER_UNIT) -> PenSample:
    """Write ``text`` in ``style``: a :class:`PenSample` (deterministic for a given ``rng`` state).

    Args:
        text: characters of :data:`ALPHABET` (anything else is one :class:`HeedError` line).
        style: the writer (:func:`writer_style`).
        rng: the source of the per-sample variation (letter sizes, noise field, dot placement).
        points_per_unit: pen points per x-height of pen path (times ``style.speed``).
    """
    check_text(text)
    require(0.5 <= points_per_unit <= 50, f"points_per_unit must be in [0.5, 50], got {points_per_unit}")
    strokes = _layout(text, style, rng)
    field = np.stack([  # [2, 4, 3]: amplitude, angular frequency (wavelengths 1.5..8 x-heights), phase
        np.stack([style.noise * rng.uniform(0.3, 1.0, 4) / 2, 2 * np.pi / rng.uniform(1.5, 8.0, 4),
                  rng.uniform(0, 2 * np.pi, 4)], 1) for _ in range(2)])
    drift_phase = float(rng.uniform(0, 2 * np.pi))
    step = 1.0 / (points_per_unit * style.speed)
    xys, labels, delayed, eos = [], [], [], []
    for vertices, lab, is_delayed in strokes:
        points, point_labels = resample(_warp(vertices, style, field, drift_phase), lab, step * style.scale)
        points = points + 0.004 * rng.standard_normal(points.shape)
        xys.append(points)
        labels.append(point_labels)
        delayed.append(np.full(len(points), is_delayed))
        eos.append(np.eye(1, len(points), len(points) - 1)[0])
    xy = np.concatenate(xys)
    offsets = np.diff(xy, axis=0, prepend=np.zeros((1, 2)))
    points = np.concatenate([offsets, np.concatenate(eos)[:, None]], 1).astype(np.float32)
    return PenSample(points, text, np.concatenate(labels), np.concatenate(delayed))


@functools.lru_cache(maxsize=2)
def _word_lists() -> dict[str, tuple[str, ...]]:
    from heed.envs.text import paragraphs

    found = sorted({w.lower() for p in paragraphs() for w in re.findall(r"[A-Za-z]+", p) if len(w) <= 12})
    test = tuple(w for w in found if zlib.crc32(w.encode()) % 5 == 0)
    train = tuple(w for w in found if zlib.crc32(w.encode()) % 5 != 0)
    return {"train": train, "test": test}


def words(split: str = "train") -> list[str]:
    """The word list of a split (``train`` or ``test``; disjoint; sorted), letters of :data:`ALPHABET` only."""
    require(split in SPLITS, f"split must be one of {', '.join(SPLITS)}, got '{split}'")
    return list(_word_lists()[split])


def sample_text(rng: np.random.Generator, min_words: int = 1, max_words: int = 3, split: str = "train") -> str:
    """A line of ``min_words`` to ``max_words`` words of the split, drawn uniformly, joined by spaces."""
    require(1 <= min_words <= max_words <= 20, f"need 1 <= min_words <= max_words <= 20, got {min_words}, {max_words}")
    require(split in SPLITS, f"split must be one of {', '.join(SPLITS)}, got '{split}'")
    pool = _word_lists()[split]
    count = int(rng.integers(min_words, max_words + 1))
    return " ".join(pool[i] for i in rng.integers(0, len(pool), count))
