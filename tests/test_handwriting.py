"""Synthetic pen data: determinism, delayed strokes last, character coverage, bad text, the stroke rule."""

from __future__ import annotations

import numpy as np
import pytest

from heed.envs.errors import HeedError
from heed.envs.handwriting import (
    ALPHABET,
    TEST_WRITERS,
    TRAIN_WRITERS,
    PenSample,
    WriterStyle,
    sample_text,
    words,
    write,
    writer_style,
)
from heed.envs.pen_strokes import delayed_flags, glyphs, resample


def _strokes(sample: PenSample) -> list[slice]:
    ends = np.flatnonzero(sample.points[:, 2] == 1)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [slice(s, e + 1) for s, e in zip(starts, ends)]


def test_same_seed_same_sample_and_another_seed_differs():
    style = writer_style(7)
    a = write("once having", style, np.random.default_rng(3))
    b = write("once having", style, np.random.default_rng(3))
    c = write("once having", style, np.random.default_rng(4))
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.char_index, b.char_index)
    assert a.points.shape != c.points.shape or not np.allclose(a.points, c.points)
    assert writer_style(7) == style and writer_style(8) != style


def test_shapes_units_and_eos():
    s = write("minimum", WriterStyle(slant=0.0, noise=0.0, drift_amplitude=0.0, size_jitter=0.0, scale=1.0),
              np.random.default_rng(0))
    assert s.points.dtype == np.float32 and s.points.shape[1] == 3
    assert s.char_index.dtype == np.int64 and s.delayed.dtype == bool
    assert len(s.points) == len(s.char_index) == len(s.delayed)
    assert s.points[-1, 2] == 1 and set(np.unique(s.points[:, 2])) <= {0.0, 1.0}
    xy = s.xy
    main = xy[~s.delayed]
    # x-height units, y up: an upright, noise-free 'minimum' lies between the baseline and the x-height
    assert -0.1 < main[:, 1].min() < 0.1 and 0.9 < main[:, 1].max() < 1.1
    assert xy[-1, 1] > 1.1  # the last point is the i-dot, above the x-height
    assert 8 <= len(s.points) / len("minimum") <= 14  # the documented points-per-letter rate


@pytest.mark.parametrize("writer", [0, 1, 1000, 1050])
def test_delayed_strokes_come_last_in_each_word(writer):
    text = "tixi jet box it"
    s = write(text, writer_style(writer), np.random.default_rng(writer))
    # per word: once a delayed point appears, every later point of that word is delayed
    for word_start in [i for i, c in enumerate(text) if c != " " and (i == 0 or text[i - 1] == " ")]:
        word_end = text.find(" ", word_start)
        word_end = len(text) if word_end < 0 else word_end
        in_word = np.flatnonzero((s.char_index >= word_start) & (s.char_index < word_end))
        assert np.all(np.diff(in_word) == 1)  # a word's points are contiguous
        flags = s.delayed[in_word]
        first = int(np.argmax(flags))
        assert flags.any() and flags[first:].all() and not flags[:first].any()
    # each delayed stroke is its own stroke (pen lifted before and after)
    for piece in _strokes(s):
        assert len(set(s.delayed[piece].tolist())) == 1
    # the delayed points belong to i, j, t, x; exactly those letters have them
    delayed_chars = {text[i] for i in s.char_index[s.delayed]}
    assert delayed_chars == {"t", "i", "x", "j"}


def test_i_dot_is_above_its_body_and_written_after_the_word():
    s = write("ion", writer_style(3), np.random.default_rng(0))
    dot = np.flatnonzero(s.delayed)
    assert len(dot) >= 1 and dot[0] > np.flatnonzero(s.char_index == 2).max()  # after the 'n'
    assert np.all(s.char_index[dot] == 0)
    body = s.xy[(s.char_index == 0) & ~s.delayed]
    assert s.xy[dot, 1].min() > body[:, 1].max()


def test_char_index_covers_every_letter():
    rng = np.random.default_rng(0)
    for _ in range(40):
        text = sample_text(rng, 1, 3, "test")
        s = write(text, writer_style(int(rng.choice(TEST_WRITERS))), rng)
        letters = {i for i, c in enumerate(text) if c != " "}
        assert set(s.char_index.tolist()) == letters  # every letter, no space, no -1
        assert np.all(np.diff(s.char_index[~s.delayed]) >= 0)  # main strokes run left to right through the text


def test_stroke_rule_picks_dots_bars_and_crosses():
    table = glyphs(ALPHABET)
    with_delayed = {c for c, g in table.items() if any(g.delayed)}
    assert with_delayed == {"i", "j", "t", "x"}
    assert table["i"].delayed == (True, False) and table["t"].delayed == (False, False, True)
    # the rule on hand-made strokes: a dot anywhere, and anything after the exit stroke (right side, y=4)
    assert delayed_flags([[(0, 4), (5, 4)], [(1, 1), (2, 1)]], right=5) == [False, True]
    assert delayed_flags([[(0, 4), (9, 0)], [(0, 0), (9, 4)], [(0, -5), (8, -5)]], right=9) == [False, False, True]
    assert delayed_flags([[(0, 4), (9, 4)]], right=9) == [False]


def test_resample_keeps_every_piece_and_the_end():
    vertices = np.array([[0.0, 0.0], [1.0, 0.0], [1.05, 0.0], [3.0, 0.0]])
    labels = np.array([0, 0, 1, 2])
    points, out = resample(vertices, labels, step=0.5)
    # piece 0: length 1 -> 2 points; piece 1: 0.05 -> 1 point; piece 2: 1.95 -> 4 points; then the end
    assert out.tolist() == [0, 0, 1, 2, 2, 2, 2, 2]
    np.testing.assert_allclose(points[:3, 0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(points[-1], [3.0, 0.0])


@pytest.mark.parametrize("text", ["Hello", "one, two", "naïve", "tab\there", ""])
def test_bad_text_is_one_clear_error(text):
    with pytest.raises(HeedError) as err:
        write(text, writer_style(0), np.random.default_rng(0))
    message = str(err.value)
    assert "\n" not in message
    if text.strip():
        bad = sorted({c for c in text if c not in ALPHABET})
        assert all(repr(c) in message for c in bad)


def test_words_and_writers_are_split():
    train, test = words("train"), words("test")
    assert len(train) > 1000 and len(test) > 200 and not set(train) & set(test)
    assert all(set(w) <= set(ALPHABET[1:]) for w in train + test)
    assert not set(TRAIN_WRITERS) & set(TEST_WRITERS)
    text = sample_text(np.random.default_rng(1), 2, 2, "test")
    assert len(text.split(" ")) == 2 and all(w in test for w in text.split(" "))
    with pytest.raises(HeedError):
        words("validation")
    with pytest.raises(HeedError):
        writer_style(-1)
