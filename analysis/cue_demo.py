"""A recurrent model that must remember: an ``nn.LSTM`` trained in seconds on cue recall.

The task (a bsuite ``memory_len``-style probe with a graded answer): every step holds ``n_cues``
values drawn from U(-1, 1) and a marker channel that is 1 at step 0 only. At every step the model
must output the values it saw at the marked step 0 (mean squared error); the values at later steps
are distractors of the same kind. A model that solved it must stay sensitive to the input at step 0
(its output moves one for one with the cue) and insensitive to everything later, so the sequential
Jacobian of any output lights up at input time 0 (measured by :func:`cue_sensitivity_ratio`).

Why graded values and not a class label: a classifier that has learned to remember a one-hot cue
saturates its gates, and its local gradient with respect to the cue collapses towards zero (we
measured ratios below 0.1 that way), although the cue is what it remembers.

Inputs ``[B, T, n_cues + 1]`` (values, then the marker), targets ``[B, n_cues]``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn


class CueBatch(NamedTuple):
    inputs: torch.Tensor  # [B, T, D] float32
    cues: torch.Tensor  # [B, n_cues] float32


def cue_batch(batch_size: int, steps: int, n_cues: int, rng: np.random.Generator) -> CueBatch:
    """Sample a batch of the cue-recall task (see the module docstring)."""
    x = np.zeros((batch_size, steps, n_cues + 1), np.float32)
    x[:, :, :n_cues] = rng.uniform(-1.0, 1.0, size=(batch_size, steps, n_cues))
    x[:, 0, n_cues] = 1.0
    return CueBatch(torch.from_numpy(x), torch.from_numpy(x[:, 0, :n_cues].copy()))


def input_labels(n_cues: int) -> list[str]:
    """Names of the input channels, for figures."""
    return [f"value {i}" for i in range(n_cues)] + ["marker"]


class CueLSTM(nn.Module):
    """``nn.LSTM`` (batch first) and a linear readout: ``[B, T, D] -> [B, T, n_cues]``."""

    def __init__(self, input_size: int, n_cues: int, hidden: int = 32) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, batch_first=True)
        self.readout = nn.Linear(hidden, n_cues)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.lstm(x)[0])


def train_cue_lstm(
    steps: int = 24,
    n_cues: int = 2,
    hidden: int = 32,
    updates: int = 300,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    progress: bool = False,
) -> tuple[CueLSTM, dict[str, float]]:
    """Train a :class:`CueLSTM` with Adam on the mean squared error at every step.

    Returns the model (eval mode) and ``{"mse", "mse_last_step", "baseline_mse"}`` on 512 fresh
    sequences (``baseline_mse`` = 1/3, the error of always answering 0).
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = CueLSTM(n_cues + 1, n_cues, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in tqdm(range(updates), desc="train cue LSTM", unit="update", disable=not progress, leave=False):
        batch = cue_batch(batch_size, steps, n_cues, rng)
        out = model(batch.inputs)  # [B, T, K]
        loss = (out - batch.cues[:, None]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    test = cue_batch(512, steps, n_cues, np.random.default_rng(seed + 1))
    with torch.no_grad():
        err = (model(test.inputs) - test.cues[:, None]).pow(2)  # [B, T, K]
    return model, {"mse": float(err.mean()), "mse_last_step": float(err[:, -1].mean()), "baseline_mse": 1.0 / 3.0}


def cue_sensitivity_ratio(matrix: torch.Tensor, t: int = -1) -> float:
    """``S[t, 0] / max_{s > 0} S[t, s]`` for a ``[T_out, T_in]`` sensitivity matrix: > 1 when the cue lights up."""
    row = matrix[t]
    return float(row[0] / row[1:].max().clamp_min(1e-12))


__all__ = ["CueBatch", "CueLSTM", "cue_batch", "cue_sensitivity_ratio", "input_labels", "train_cue_lstm"]
