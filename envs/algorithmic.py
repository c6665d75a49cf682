"""The NTM paper's algorithmic tasks (Graves et al. 2014) as batched generators and Gymnasium envs.

Tasks (listed in :data:`heed.envs.tasks.TASKS`; all ``loss == "bits"``):

- ``copy``: L random 8-bit vectors (L in 1-20), a delimiter, then reproduce them.
- ``repeat-copy``: L vectors (1-10), a delimiter whose own channel holds the repeat count n/10
  (n in 1-10), then the sequence n times and an end marker on an extra output channel.
- ``associative-recall``: 2-6 items of 3 x 6-bit vectors, each after an item delimiter; a query
  delimiter, one query item, the query delimiter again; then output the item that followed it.
- ``dynamic-ngrams``: a 200-bit sequence from a random 6-gram model (32 probabilities drawn from
  Beta(1/2, 1/2)); predict each next bit. :func:`ngram_bayes_optimal_bits` gives the optimum.
- ``priority-sort``: 20 8-bit vectors each with a priority in U[-1, 1] on its own channel, a
  delimiter, then the 16 highest-priority vectors, highest first.

Every task samples one length per batch (no padding). ``task.fixed_length(L)`` returns the same
task at length L (copy length, repeat-copy length, number of items, n-gram sequence length, number
of vectors to sort) for tests of generalisation. The Gymnasium envs (``heed/Copy-v0``, ...) run one
sequence per episode; see :class:`heed.envs.sequence_env.SequenceTaskEnv`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from heed.envs.sequence import MAX_LENGTH, MAX_WIDTH, Batch, check_options


class _BitTask:
    """What the bit tasks share: ``loss == "bits"``, the input range, and sizes as ``bits`` + extras.

    ``input_size = bits + extra_inputs`` (delimiter / count / priority channels) and
    ``output_size = bits + extra_outputs`` (repeat copy's end marker).
    """

    loss: ClassVar[str] = "bits"
    extra_inputs: ClassVar[int] = 2
    extra_outputs: ClassVar[int] = 0
    bits: int
    name: ClassVar[str]
    #: option name -> allowed (lo, hi), checked when the task is built (heed.envs.sequence.check_options)
    option_ranges: ClassVar[dict[str, tuple[int, int]]] = {}
    #: option pairs (a, b) that must satisfy a <= b
    ordered_options: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __post_init__(self) -> None:
        values = {name: getattr(self, name) for name in self.option_ranges}
        check_options(self.name, values, self.option_ranges, self.ordered_options)

    @property
    def input_size(self) -> int:
        return self.bits + self.extra_inputs

    @property
    def output_size(self) -> int:
        return self.bits + self.extra_outputs


class _Fixed(_BitTask):
    """``fixed_length(L)`` for bit tasks whose length range is ``min_len..max_len``."""

    ordered_options: ClassVar[tuple[tuple[str, str], ...]] = (("min_len", "max_len"),)

    def fixed_length(self, length: int):
        return dataclasses.replace(self, min_len=length, max_len=length)

    def _length(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.min_len, self.max_len + 1))


@dataclass(frozen=True)
class CopyTask(_Fixed):
    """Copy: inputs ``[B, 2L+1, bits+1]``, targets ``[B, 2L+1, bits]``, scored on the last L steps."""

    bits: int = 8
    min_len: int = 1
    max_len: int = 20
    name: ClassVar[str] = "copy"
    env_id: ClassVar[str] = "heed/Copy-v0"
    extra_inputs: ClassVar[int] = 1
    option_ranges: ClassVar[dict[str, tuple[int, int]]] = {
        "bits": (1, MAX_WIDTH), "min_len": (1, MAX_LENGTH), "max_len": (1, MAX_LENGTH)}

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        L = self._length(rng)
        seq = rng.integers(0, 2, size=(batch_size, L, self.bits)).astype(np.float32)
        T = 2 * L + 1
        inputs = np.zeros((batch_size, T, self.bits + 1), np.float32)
        inputs[:, :L, : self.bits] = seq
        inputs[:, L, self.bits] = 1.0
        targets = np.zeros((batch_size, T, self.bits), np.float32)
        targets[:, L + 1 :] = seq
        mask = np.zeros((batch_size, T), np.float32)
        mask[:, L + 1 :] = 1.0
        return Batch(inputs, targets, mask)


@dataclass(frozen=True)
class RepeatCopyTask(_Fixed):
    """Repeat copy: T = L + 1 + nL + 1; outputs ``bits + 1`` (the last is the end marker)."""

    bits: int = 8
    min_len: int = 1
    max_len: int = 10
    min_repeats: int = 1
    max_repeats: int = 10
    name: ClassVar[str] = "repeat-copy"
    env_id: ClassVar[str] = "heed/RepeatCopy-v0"
    extra_outputs: ClassVar[int] = 1
    option_ranges: ClassVar[dict[str, tuple[int, int]]] = {
        "bits": (1, MAX_WIDTH), "min_len": (1, MAX_LENGTH), "max_len": (1, MAX_LENGTH),
        "min_repeats": (1, 100), "max_repeats": (1, 100)}
    ordered_options: ClassVar[tuple[tuple[str, str], ...]] = (("min_len", "max_len"), ("min_repeats", "max_repeats"))

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        L = self._length(rng)
        n = int(rng.integers(self.min_repeats, self.max_repeats + 1))
        seq = rng.integers(0, 2, size=(batch_size, L, self.bits)).astype(np.float32)
        T = L + 1 + n * L + 1
        inputs = np.zeros((batch_size, T, self.bits + 2), np.float32)
        inputs[:, :L, : self.bits] = seq
        inputs[:, L, self.bits] = 1.0
        inputs[:, L, self.bits + 1] = min(n / self.max_repeats, 1.0)
        targets = np.zeros((batch_size, T, self.bits + 1), np.float32)
        targets[:, L + 1 : T - 1, : self.bits] = np.tile(seq, (1, n, 1))
        targets[:, T - 1, self.bits] = 1.0
        mask = np.zeros((batch_size, T), np.float32)
        mask[:, L + 1 :] = 1.0
        return Batch(inputs, targets, mask)


@dataclass(frozen=True)
class AssociativeRecallTask(_Fixed):
    """Associative recall: ``min_len..max_len`` items of ``item_len`` x ``bits`` vectors."""

    bits: int = 6
    item_len: int = 3
    min_len: int = 2
    max_len: int = 6
    name: ClassVar[str] = "associative-recall"
    env_id: ClassVar[str] = "heed/AssociativeRecall-v0"
    option_ranges: ClassVar[dict[str, tuple[int, int]]] = {  # at least 2 items: the query's successor is asked
        "bits": (1, MAX_WIDTH), "item_len": (1, 100), "min_len": (2, 1000), "max_len": (2, 1000)}

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        items = self._length(rng)
        k, b = self.item_len, self.bits
        data = rng.integers(0, 2, size=(batch_size, items, k, b)).astype(np.float32)
        query = rng.integers(0, items - 1, size=batch_size)
        T = items * (k + 1) + 1 + k + 1 + k
        inputs = np.zeros((batch_size, T, b + 2), np.float32)
        for i in range(items):
            start = i * (k + 1)
            inputs[:, start, b] = 1.0
            inputs[:, start + 1 : start + 1 + k, :b] = data[:, i]
        q0 = items * (k + 1)
        rows = np.arange(batch_size)
        inputs[:, q0, b + 1] = 1.0
        inputs[:, q0 + 1 : q0 + 1 + k, :b] = data[rows, query]
        inputs[:, q0 + 1 + k, b + 1] = 1.0
        targets = np.zeros((batch_size, T, b), np.float32)
        targets[:, T - k :] = data[rows, query + 1]
        mask = np.zeros((batch_size, T), np.float32)
        mask[:, T - k :] = 1.0
        return Batch(inputs, targets, mask)


@dataclass(frozen=True)
class DynamicNGramsTask(_BitTask):
    """Dynamic n-grams: input bit x_t, target x_{t+1}, scored once the (order-1)-bit context is known."""

    order: int = 6
    length: int = 200
    bits: ClassVar[int] = 1  # one bit in, one bit out (not an option)
    name: ClassVar[str] = "dynamic-ngrams"
    env_id: ClassVar[str] = "heed/DynamicNGrams-v0"
    extra_inputs: ClassVar[int] = 0
    option_ranges: ClassVar[dict[str, tuple[int, int]]] = {  # 2**(order-1) probabilities per sequence
        "order": (2, 16), "length": (2, MAX_LENGTH)}
    ordered_options: ClassVar[tuple[tuple[str, str], ...]] = (("order", "length"),)  # a context fits

    def fixed_length(self, length: int) -> DynamicNGramsTask:
        return dataclasses.replace(self, length=length)

    def sample_bits(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``[B, length]`` bits from a fresh random (order)-gram table per sequence."""
        ctx = self.order - 1
        probs = rng.beta(0.5, 0.5, size=(batch_size, 2**ctx))
        bits = np.zeros((batch_size, self.length), np.int64)
        bits[:, :ctx] = rng.integers(0, 2, size=(batch_size, ctx))
        weights = 2 ** np.arange(ctx - 1, -1, -1)
        uniform = rng.random((batch_size, self.length))
        rows = np.arange(batch_size)
        for t in range(ctx, self.length):
            index = bits[:, t - ctx : t] @ weights
            bits[:, t] = uniform[:, t] < probs[rows, index]
        return bits

    def batch_from_bits(self, bits: np.ndarray) -> Batch:
        inputs = bits[:, :-1, None].astype(np.float32)
        targets = bits[:, 1:, None].astype(np.float32)
        mask = np.zeros(bits[:, 1:].shape, np.float32)
        mask[:, self.order - 2 :] = 1.0
        return Batch(inputs, targets, mask)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        return self.batch_from_bits(self.sample_bits(batch_size, rng))

    def optimal_bits(self, batch: Batch) -> np.ndarray:
        """``[B]`` cost of the Bayes-optimal predictor on ``batch`` (bits per sequence, same steps)."""
        bits = np.concatenate([batch.inputs[:, :1, 0], batch.targets[:, :, 0]], axis=1).astype(np.int64)
        return ngram_bayes_optimal_bits(bits, self.order)


def ngram_bayes_optimal_bits(bits: np.ndarray, order: int = 6) -> np.ndarray:
    """Cost in bits per sequence of the Bayes-optimal predictor (N_1 + 1/2) / (N_0 + N_1 + 1).

    N_0, N_1 count the zeros and ones that followed the current (order-1)-bit context so far in the
    same sequence (Graves et al. 2014). Scored on the same steps as :class:`DynamicNGramsTask`.

    Args:
        bits: ``[B, length]`` of 0/1.

    Returns:
        ``[B]`` costs in bits.
    """
    ctx = order - 1
    p_one = ngram_bayes_predictions(bits, order)[:, ctx:]
    p = np.where(bits[:, ctx:] == 1, p_one, 1.0 - p_one)
    return -np.log2(p).sum(-1)


def ngram_bayes_predictions(bits: np.ndarray, order: int = 6) -> np.ndarray:
    """The Bayes-optimal predictor's P(bit_t = 1 | bits before t), ``(N_1 + 1/2) / (N_0 + N_1 + 1)``.

    Args:
        bits: ``[B, length]`` of 0/1.

    Returns:
        ``[B, length]``; the first ``order - 1`` steps (no full context yet) are 0.5.
    """
    ctx = order - 1
    batch, length = bits.shape
    counts = np.zeros((batch, 2**ctx, 2))
    weights = 2 ** np.arange(ctx - 1, -1, -1)
    rows = np.arange(batch)
    out = np.full((batch, length), 0.5)
    for t in range(ctx, length):
        index = bits[:, t - ctx : t] @ weights
        n = counts[rows, index]  # [B, 2]
        out[:, t] = (n[:, 1] + 0.5) / (n.sum(-1) + 1.0)
        counts[rows, index, bits[:, t]] += 1
    return out


@dataclass(frozen=True)
class PrioritySortTask(_BitTask):
    """Priority sort: ``num_inputs`` vectors with priorities, then the ``num_outputs`` highest, highest first."""

    bits: int = 8
    num_inputs: int = 20
    num_outputs: int = 16
    name: ClassVar[str] = "priority-sort"
    env_id: ClassVar[str] = "heed/PrioritySort-v0"
    option_ranges: ClassVar[dict[str, tuple[int, int]]] = {
        "bits": (1, MAX_WIDTH), "num_inputs": (1, MAX_LENGTH), "num_outputs": (1, MAX_LENGTH)}
    ordered_options: ClassVar[tuple[tuple[str, str], ...]] = (("num_outputs", "num_inputs"),)

    def fixed_length(self, length: int) -> PrioritySortTask:
        return dataclasses.replace(self, num_inputs=length, num_outputs=min(self.num_outputs, length))

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        n, k, b = self.num_inputs, self.num_outputs, self.bits
        seq = rng.integers(0, 2, size=(batch_size, n, b)).astype(np.float32)
        priority = rng.uniform(-1.0, 1.0, size=(batch_size, n)).astype(np.float32)
        T = n + 1 + k
        inputs = np.zeros((batch_size, T, b + 2), np.float32)
        inputs[:, :n, :b] = seq
        inputs[:, :n, b] = priority
        inputs[:, n, b + 1] = 1.0
        order = np.argsort(-priority, axis=1, kind="stable")[:, :k]
        targets = np.zeros((batch_size, T, b), np.float32)
        targets[:, n + 1 :] = np.take_along_axis(seq, order[:, :, None], axis=1)
        mask = np.zeros((batch_size, T), np.float32)
        mask[:, n + 1 :] = 1.0
        return Batch(inputs, targets, mask)
