"""The budget and optimiser options of the small trainers, and their one update step.

The draw, glimpse, pen and synthesis trainers run a number of updates or of CPU-seconds, whichever
ends first (:class:`heed.agents.common.state.StepBudget`). They share these flags, nested in each
trainer's config with :data:`BudgetFlags` so that they stay flat (``--steps``, ``--lr``, ...), while
each trainer gives its own defaults::

    @dataclass(frozen=True)
    class Config:
        budget: BudgetFlags = field(default_factory=lambda: BudgetConfig(steps=10_000, ...))
        run: RunFlags = field(default_factory=RunConfig)

A ``config.json`` written before the flags were nested (``{"steps": ..., "lr": ...}`` at the top
level) is read by :func:`heed.agents.common.validate.config_from_dict`, which lifts the flat fields
of every flat-flag group into it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import tyro

from heed.agents.common.session import ResumeOverride
from heed.agents.common.validate import AtLeastOne, NonNegative, Positive


@dataclass(frozen=True)
class BudgetConfig:
    """How long a small trainer runs, how it steps its optimiser, how often it looks (no class
    defaults: each trainer's config gives its own)."""

    steps: Annotated[int, AtLeastOne, ResumeOverride]
    """Total optimiser updates (a resumed run continues up to this count)."""
    max_cpu_seconds: Annotated[float, NonNegative, ResumeOverride]
    """Also stop after this many training CPU-seconds (0: no limit; evaluation excluded); the budget's
    progress is that of whichever runs out first. A fair budget on a shared machine (wall time is not)."""
    lr: Annotated[float, Positive]
    """Adam learning rate (cosine-decayed to 5% of it over the budget, except by synthesis, which keeps it)."""
    grad_clip: Annotated[float, NonNegative]
    """Clip the global gradient norm to this (0 disables)."""
    eval_every: Annotated[int, AtLeastOne, ResumeOverride]
    """Evaluate every this many updates (and at the end)."""
    checkpoint_every: Annotated[int, AtLeastOne, ResumeOverride]
    """Save a checkpoint every this many updates (and at the end)."""
    log_every: Annotated[int, AtLeastOne]
    """Log training scalars every this many updates."""


#: the nested field type that keeps BudgetConfig's flags unprefixed (``--steps``, not ``--budget.steps``)
BudgetFlags = Annotated[BudgetConfig, tyro.conf.arg(name="")]


def cosine_lr(base_lr: float, progress: float) -> float:
    """The learning rate at ``progress`` in [0, 1] of the budget: a cosine from ``base_lr`` down to 5 % of it::

        lr(p) = base_lr * (0.05 + 0.95 * (1 + cos(pi * p)) / 2)
    """
    return float(base_lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * progress))))


def optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor, parameters: Iterable[torch.nn.Parameter],
             progress: float, base_lr: float, grad_clip: float, decay: bool = True) -> float:
    """One update: set the learning rate, backpropagate ``loss`` (a scalar), clip, step.

    In this order: every group's ``lr`` becomes :func:`cosine_lr` ``(base_lr, progress)`` (left as it
    is when ``decay`` is false); the gradients are zeroed and ``loss.backward()`` fills them; when
    ``grad_clip > 0`` they are scaled by ``min(1, grad_clip / (||g|| + 1e-6))`` (the global L2 norm
    over ``parameters``, ``torch.nn.utils.clip_grad_norm_``); ``optimizer.step()``.

    Returns:
        ``||g||``, the global gradient norm before clipping.
    """
    params = [p for p in parameters]
    if decay:
        lr = cosine_lr(base_lr, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    optimizer.step()
    return float(norm)
