"""The supervised sequence-task protocol: what a task is, shared by the trainer, the env wrapper and tests.

A task samples batches of whole episodes with an explicit ``numpy.random.Generator``::

    batch = task.sample(batch_size, rng)          # a Batch, numpy arrays
    batch.inputs   float32 [B, T, D]
    batch.targets  float32 [B, T, K] for loss == "bits"    (independent Bernoulli outputs, cost in bits)
                   int64   [B, T]    for loss == "classes" (one class per step, cross-entropy)
                   float32 [B, T, K] for loss == "mse"     (K real values per step, squared error)
    batch.mask     float32 [B, T]    1 where the output at step t is scored, else 0

Inputs lie in ``[-1, 1]``. Task files import this module (never :mod:`heed.envs.tasks`, which imports
them to build the table), so there is no import circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

Loss = Literal["bits", "classes", "mse"]


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
    output_size: int  # K: bits per step, number of classes, or values per step
    loss: Loss

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch: ...
