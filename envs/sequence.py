"""The supervised sequence-task protocol: what a task is, shared by the trainer, the env wrapper and tests.

A task samples batches of whole episodes with an explicit ``numpy.random.Generator``::

    batch = task.sample(batch_size, rng)          # a Batch, numpy arrays
    batch.inputs   float32 [B, T, D]
    batch.targets  float32 [B, T, K] for loss == "bits"    (independent Bernoulli outputs, cost in bits)
                   int64   [B, T]    for loss == "classes" (one class per step, cross-entropy)
                   float32 [B, T, K] for loss == "mse"     (K real values per step, squared error)
                   int64   [B, T, G] for loss == "digits"  (G classes of 10 per step, K = 10 G: the
                                                            DNC graph tasks' 9 digits of a triple)
    batch.mask     float32 [B, T]    1 where the output at step t is scored, else 0

Inputs lie in ``[-1, 1]``. Task files import this module (never :mod:`heed.envs.tasks`, which imports
them to build the table), so there is no import circle.

Task options are checked when the task is built, before anything is sampled: every task class
declares the allowed range of each integer option once, in ``option_ranges``, and its constructor
calls :func:`check_options`. So ``--task-options max_len=1000000000``, ``gym.make("heed/Copy-v0",
max_len=10**9)``, ``task.fixed_length(10**9)`` and a crafted ``config.json`` all stop with one
:class:`~heed.envs.errors.HeedError` line instead of allocating ``[B, T, D]`` arrays of that size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from heed.envs.errors import HeedError

Loss = Literal["bits", "classes", "mse", "digits"]

#: the longest sequence a length option may ask for (steps, items, statements): generalisation tests
#: go far beyond the training lengths, but a batch stays ``[B, T, D]`` floats that fit in memory
MAX_LENGTH = 10_000
#: the widest a task's input or output vector may be made (bits per step, symbols, inputs)
MAX_WIDTH = 4096


@dataclass
class Batch:
    """One batch of episodes (see the module docstring for shapes)."""

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray


class SequenceTask(Protocol):
    """What the supervised trainer and :class:`heed.envs.sequence_env.SequenceTaskEnv` need from a task."""

    name: str
    env_id: str  # its Gymnasium id, e.g. "heed/Copy-v0" (registered from heed.envs.tasks.TASKS)
    input_size: int  # D
    output_size: int  # K: bits per step, number of classes, values per step, or 10 x digits per step
    loss: Loss

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch: ...


def held_out_task(task: SequenceTask) -> SequenceTask:
    """The task a trainer measures on: the task's own ``held_out()`` where it has one (``text``: the
    validation paragraphs; ``translation``/``dates``: the held-out sentences), else the task itself (a
    task that draws every example afresh from a generator, where a fixed seed is the held-out set)."""
    held_out = getattr(task, "held_out", None)
    return held_out() if callable(held_out) else task


def check_options(task: str, values: Mapping[str, Any], ranges: Mapping[str, tuple[int, int]],
                  ordered: tuple[tuple[str, str], ...] = ()) -> None:
    """Refuse, with one :class:`HeedError` line, an option outside its declared range.

    Args:
        task: the task's name, for the message.
        values: option name -> value, as given (checked before anything is built from them).
        ranges: option name -> ``(lo, hi)``: the value must be an integer (not a bool) with
            ``lo <= value <= hi``.
        ordered: pairs ``(a, b)`` that must satisfy ``values[a] <= values[b]`` (``min_len <= max_len``).
    """
    for name, (lo, hi) in ranges.items():
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise HeedError(f"task '{task}': option {name} must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise HeedError(f"task '{task}': option {name} must be in [{lo}, {hi}], got {value}")
    for a, b in ordered:
        if values[a] > values[b]:
            raise HeedError(f"task '{task}': option {a} must be <= {b}, got {values[a]} > {values[b]}")
