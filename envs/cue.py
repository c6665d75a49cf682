"""Cue recall: remember graded values shown at step 0 through later distractors (``heed/CueRecall-v0``).

The probe of the sequential-Jacobian demo (a bsuite ``memory_len``-style task with a graded answer):
every step holds ``n_cues`` values drawn from U(-1, 1) and a marker channel that is 1 at step 0 only.
At every step the output must be the values seen at the marked step 0 (loss ``mse``); the values at
later steps are distractors of the same kind. A model that solved it stays sensitive to the input at
step 0 (its output moves one for one with the cue) and insensitive to everything later, so the
sequential Jacobian of any output lights up at input time 0
(:func:`heed.analysis.sequential.cue_sensitivity_ratio`).

Why graded values and not a class label: a classifier that has learned to remember a one-hot cue
saturates its gates, and its local gradient with respect to the cue collapses towards zero (we
measured ratios below 0.1 that way), although the cue is what it remembers.

Shapes: inputs ``[B, T, n_cues + 1]`` (values, then the marker), targets ``[B, T, n_cues]`` (the cue,
repeated at every step), mask ``[B, T]`` all ones. Always answering 0 has squared error 1/3 per value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from heed.envs.sequence import MAX_LENGTH, MAX_WIDTH, Batch, check_options


@dataclass(frozen=True)
class CueRecallTask:
    """Recall the ``n_cues`` values of step 0 at each of ``steps`` steps (see the module docstring)."""

    steps: int = 24
    n_cues: int = 2
    name: ClassVar[str] = "cue-recall"
    env_id: ClassVar[str] = "heed/CueRecall-v0"
    loss: ClassVar[str] = "mse"
    option_ranges: ClassVar[dict[str, tuple[int, int]]] = {"steps": (1, MAX_LENGTH), "n_cues": (1, MAX_WIDTH)}

    def __post_init__(self) -> None:
        check_options(self.name, {"steps": self.steps, "n_cues": self.n_cues}, self.option_ranges)

    @property
    def input_size(self) -> int:
        return self.n_cues + 1

    @property
    def output_size(self) -> int:
        return self.n_cues

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        x = np.zeros((batch_size, self.steps, self.n_cues + 1), np.float32)
        x[:, :, : self.n_cues] = rng.uniform(-1.0, 1.0, size=(batch_size, self.steps, self.n_cues))
        x[:, 0, self.n_cues] = 1.0
        targets = np.repeat(x[:, :1, : self.n_cues], self.steps, axis=1)  # [B, T, K]: the cue at every step
        return Batch(x, targets, np.ones((batch_size, self.steps), np.float32))

    def input_labels(self) -> list[str]:
        """Names of the input channels, for figures."""
        return [f"value {i}" for i in range(self.n_cues)] + ["marker"]
