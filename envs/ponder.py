"""Pondering tasks (ACT paper, Graves 2016; Universal Transformer, Dehghani et al. 2019).

Supervised :class:`heed.envs.sequence.SequenceTask` s, listed in :data:`heed.envs.tasks.TASKS` and so
registered as Gymnasium ids:

=============  ==================  =================================================================
task           id                  one sequence
=============  ==================  =================================================================
``parity``     heed/Parity-v0      1 step: 64 inputs, a random 1..64 of them +-1, the rest 0; target
                                   bit 1 iff the number of +1 is odd (loss ``bits``, K = 1)
``logic``      heed/Logic-v0       1..10 steps of 102 inputs: bits (a, b) and 10 chunks of 10 one-hot
                                   gate ids (1..10 gates used); target: the gates applied in order
``addition``   heed/Addition-v0    1..5 steps, each a number of 1..5 one-hot digits (50 inputs);
                                   target from step 2 on: the running sum, 6 digits x 11 classes
``seqcopy``    heed/SeqCopy-v0     symbols x_1..x_n, a delimiter, n query steps: output x_1..x_n
``reverse``    heed/Reverse-v0     the same, output x_n..x_1
``babi``       heed/Babi-v0        generated bAbI story + question (see :mod:`envs.babi`)
=============  ==================  =================================================================

Logic, our reading of the ACT paper: the first operand ``c`` starts as bit ``a`` of step 1 (``a`` is
zero on later steps); at each step the ``B`` gates are applied in order, ``c <- gate(c, b_t)``, and
the target of the step is ``c``, which carries over as the first operand of the next step.
Addition targets are one-hot digits (least significant first, class 10 = no digit), trained as
independent bits (loss ``bits``, K = 66); :func:`addition_digits` decodes them.

Batches of ragged sequences are right-padded with all-zero input vectors and ``mask = 0``.
"""

from __future__ import annotations

import numpy as np

from heed.envs.sequence import MAX_LENGTH, MAX_WIDTH, Batch, check_options

# the 10 two-input gates whose output depends on both inputs; truth table over (a, b) = 00, 01, 10, 11
GATES = np.array(
    [
        [0, 0, 0, 1],  # and
        [0, 1, 1, 1],  # or
        [0, 1, 1, 0],  # xor
        [1, 1, 1, 0],  # nand
        [1, 0, 0, 0],  # nor
        [1, 0, 0, 1],  # xnor
        [0, 0, 1, 0],  # a and not b
        [0, 1, 0, 0],  # not a and b
        [1, 0, 1, 1],  # a or not b
        [1, 1, 0, 1],  # not a or b
    ],
    dtype=np.int64,
)


def _pad(seqs: list[np.ndarray], steps: int) -> np.ndarray:
    """Stack ``[T_i, ...]`` arrays into ``[B, steps, ...]`` with zero padding at the end."""
    out = np.zeros((len(seqs), steps, *seqs[0].shape[1:]), dtype=seqs[0].dtype)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


class ParityTask:
    """Parity of the +1 entries among ``size`` inputs (one step)."""

    name, loss = "parity", "bits"
    env_id = "heed/Parity-v0"

    option_ranges = {"size": (1, MAX_WIDTH), "min_nonzero": (1, MAX_WIDTH), "max_nonzero": (1, MAX_WIDTH)}

    def __init__(self, size: int = 64, min_nonzero: int = 1, max_nonzero: int | None = None) -> None:
        max_nonzero = size if max_nonzero is None else max_nonzero
        check_options(self.name, {"size": size, "min_nonzero": min_nonzero, "max_nonzero": max_nonzero},
                      self.option_ranges, (("min_nonzero", "max_nonzero"), ("max_nonzero", "size")))
        self.input_size, self.output_size = size, 1
        self.min_nonzero, self.max_nonzero = min_nonzero, max_nonzero

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        x = np.zeros((batch_size, 1, self.input_size), dtype=np.float32)
        for b in range(batch_size):
            k = rng.integers(self.min_nonzero, self.max_nonzero + 1)
            idx = rng.choice(self.input_size, size=k, replace=False)
            x[b, 0, idx] = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=k)
        y = ((x > 0).sum(-1, keepdims=True) % 2).astype(np.float32)  # [B, 1, 1]
        return Batch(x, y, np.ones((batch_size, 1), dtype=np.float32))


class LogicTask:
    """Sequences of 1..``max_steps`` steps, each applying 1..``max_gates`` logic gates."""

    name, loss = "logic", "bits"
    env_id = "heed/Logic-v0"

    option_ranges = {"max_steps": (1, MAX_LENGTH), "max_gates": (1, 10)}

    def __init__(self, max_steps: int = 10, max_gates: int = 10) -> None:
        check_options(self.name, {"max_steps": max_steps, "max_gates": max_gates}, self.option_ranges)
        self.max_steps, self.max_gates = max_steps, max_gates
        self.input_size, self.output_size = 2 + 10 * 10, 1

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        xs, ys = [], []
        for _ in range(batch_size):
            steps = rng.integers(1, self.max_steps + 1)
            x = np.zeros((steps, self.input_size), dtype=np.float32)
            y = np.zeros((steps, 1), dtype=np.float32)
            c = int(rng.integers(0, 2))
            x[0, 0] = c
            for t in range(steps):
                b = int(rng.integers(0, 2))
                x[t, 1] = b
                for g, gate in enumerate(rng.integers(0, 10, size=rng.integers(1, self.max_gates + 1))):
                    x[t, 2 + 10 * g + gate] = 1.0
                    c = int(GATES[gate, 2 * c + b])
                y[t, 0] = c
            xs.append(x)
            ys.append(y)
        steps = max(len(x) for x in xs)
        mask = _pad([np.ones(len(x), dtype=np.float32) for x in xs], steps)
        return Batch(_pad(xs, steps), _pad(ys, steps), mask)


def addition_digits(onehot: np.ndarray) -> np.ndarray:
    """Decode ``[..., 66]`` addition outputs (6 digits x 11 classes) into class ids ``[..., 6]``."""
    return onehot.reshape(*onehot.shape[:-1], 6, 11).argmax(-1)


class AdditionTask:
    """Running sums of 1..``max_steps`` numbers of 1..``max_digits`` digits."""

    name, loss = "addition", "bits"
    env_id = "heed/Addition-v0"
    out_digits = 6

    option_ranges = {"max_steps": (1, 9), "max_digits": (1, 5)}  # the sum must fit in out_digits = 6 digits

    def __init__(self, max_steps: int = 5, max_digits: int = 5) -> None:
        check_options(self.name, {"max_steps": max_steps, "max_digits": max_digits}, self.option_ranges)
        self.max_steps, self.max_digits = max_steps, max_digits
        self.input_size, self.output_size = 10 * 5, self.out_digits * 11

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        xs, ys, ms = [], [], []
        for _ in range(batch_size):
            steps = rng.integers(1, self.max_steps + 1)
            x = np.zeros((steps, self.input_size), dtype=np.float32)
            y = np.zeros((steps, self.output_size), dtype=np.float32)
            total = 0
            for t in range(steps):
                digits = rng.integers(
                    0, 10, size=rng.integers(1, self.max_digits + 1)
                )  # least significant first
                x[t, 10 * np.arange(len(digits)) + digits] = 1.0
                total += int(sum(int(d) * 10**i for i, d in enumerate(digits)))
                text = str(total)[::-1]
                for i in range(self.out_digits):
                    y[t, 11 * i + (int(text[i]) if i < len(text) else 10)] = 1.0
            xs.append(x)
            ys.append(y)
            ms.append((np.arange(steps) >= 1).astype(np.float32))
        steps = max(len(x) for x in xs)
        return Batch(_pad(xs, steps), _pad(ys, steps), _pad(ms, steps))


class _SymbolTask:
    """Copy or reverse ``n`` symbols (``min_len <= n <= max_len``) from ``symbols`` choices.

    Inputs ``[B, 2n+1, symbols+2]``: one-hot symbols, then a delimiter (unit ``symbols``), then n
    query steps (unit ``symbols+1``). Targets: class ids at the query steps (``mask`` 1 there).
    """

    loss = "classes"
    reverse = False
    name = "symbols"
    option_ranges = {"min_len": (1, MAX_LENGTH), "max_len": (1, MAX_LENGTH), "symbols": (2, MAX_WIDTH)}

    def __init__(self, min_len: int = 1, max_len: int = 40, symbols: int = 8) -> None:
        values = {"min_len": min_len, "max_len": max_len, "symbols": symbols}
        check_options(self.name, values, self.option_ranges, (("min_len", "max_len"),))
        self.min_len, self.max_len, self.symbols = min_len, max_len, symbols
        self.input_size, self.output_size = symbols + 2, symbols

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        lengths = rng.integers(self.min_len, self.max_len + 1, size=batch_size)
        steps = 2 * int(lengths.max()) + 1
        x = np.zeros((batch_size, steps, self.input_size), dtype=np.float32)
        y = np.zeros((batch_size, steps), dtype=np.int64)
        mask = np.zeros((batch_size, steps), dtype=np.float32)
        for b, n in enumerate(lengths):
            seq = rng.integers(0, self.symbols, size=n)
            x[b, np.arange(n), seq] = 1.0
            x[b, n, self.symbols] = 1.0
            x[b, n + 1 : 2 * n + 1, self.symbols + 1] = 1.0
            y[b, n + 1 : 2 * n + 1] = seq[::-1] if self.reverse else seq
            mask[b, n + 1 : 2 * n + 1] = 1.0
        return Batch(x, y, mask)


class SeqCopyTask(_SymbolTask):
    """Algorithmic copy (UT paper: train length 40, test length 400)."""

    name, env_id = "seqcopy", "heed/SeqCopy-v0"


class ReverseTask(_SymbolTask):
    """Algorithmic reverse (UT paper: train length 40, test length 400)."""

    name, env_id, reverse = "reverse", "heed/Reverse-v0", True
