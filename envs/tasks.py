"""Supervised sequence tasks: one protocol shared by the trainer, the Gymnasium wrappers and the tests.

A task samples batches of whole episodes with an explicit ``numpy.random.Generator``::

    batch = task.sample(batch_size, rng)          # a Batch, numpy arrays
    batch.inputs   float32 [B, T, D]
    batch.targets  float32 [B, T, K] for loss == "bits"   (independent Bernoulli outputs, cost in bits)
                   int64   [B, T]    for loss == "classes" (one class per step, cross-entropy)
    batch.mask     float32 [B, T]    1 where the output at step t is scored, else 0

Tasks register themselves in :data:`TASKS` (name -> factory taking keyword options), e.g.
``TASKS["copy"](min_len=1, max_len=20)``; ``scripts/train.py supervised --task NAME`` looks them up here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np


@dataclass
class Batch:
    """One batch of episodes (see the module docstring for shapes)."""

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray


class SequenceTask(Protocol):
    """What the supervised trainer needs from a task."""

    name: str
    input_size: int
    output_size: int  # K: bits per step, or number of classes
    loss: Literal["bits", "classes"]

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch: ...


TASKS: dict[str, Callable[..., SequenceTask]] = {}


def register_task(name: str) -> Callable[[Callable[..., SequenceTask]], Callable[..., SequenceTask]]:
    """Decorator: ``@register_task("copy")`` on a task class or factory."""

    def wrap(factory: Callable[..., SequenceTask]) -> Callable[..., SequenceTask]:
        TASKS[name] = factory
        return factory

    return wrap
