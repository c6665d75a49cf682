"""Adaptive Computation Time (Graves 2016): a recurrent cell that learns how long to think.

At every input step ``t`` the wrapped cell runs ``n = 1, 2, ...`` ponder steps on the same input
(with a flag that is 1 on the first ponder step only)::

    s_t^n = cell([x_t, delta_{n,1}], s_t^{n-1}),   s_t^0 = s_{t-1}
    h_t^n = sigmoid(W_h y_t^n + b_h)                     halting unit, b_h initialised to 1
    N(t)  = min{ n' : sum_{n<=n'} h_t^n >= 1 - eps }     capped at ``max_steps``
    R(t)  = 1 - sum_{n<N(t)} h_t^n                       the remainder
    p_t^n = h_t^n for n < N(t),  R(t) for n = N(t)       sums to 1 over n
    s_t   = sum_n p_t^n s_t^n,   y_t = sum_n p_t^n y_t^n  mean-field state and output
    rho_t = N(t) + R(t)                                  ponder time; cost tau * sum_t rho_t

``N(t)`` is piecewise constant, so the gradient of the ponder cost flows through ``R(t)`` only:
``d rho_t / d h_t^n = -1`` for ``n < N(t)`` and 0 otherwise.

The ``act`` core (:class:`ACTConfig`) is a tanh RNN (128 units in the paper's parity set-up) under
ACT, or with ``cell="lstm"`` an LSTM (the paper's character-level Wikipedia model; its state
``(h, c)`` is averaged over the ponder steps like any state); the same cell without ACT is the
``rnn`` / ``lstm`` core. Its ponder cost ``tau * mean_b sum_t rho_t`` is
the core's :meth:`ACTCore.aux_loss`, which the supervised models and the PPO loss add.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

import torch
from torch import nn

from heed.agents.common.errors import require
from heed.agents.common.validate import NonNegative, Range
from heed.agents.cores.base import HiddenSize, PartName, RecurrentCore, State, map_state, part_name
from heed.agents.cores.gru import GRUConfig, GRUCore
from heed.agents.cores.lstm import LSTMConfig, LSTMCore
from heed.agents.cores.rnn import RNNConfig, RNNCore


class HaltStep(NamedTuple):
    """Result of one ponder step of the halting rule (all ``[B]``)."""

    weight: torch.Tensor  # p^n: h^n if still running, the remainder R if halting now, 0 if halted before
    halted: torch.Tensor  # bool: halted at or before this step
    accumulated: torch.Tensor  # sum of h over the steps that were not the halting step
    ponder: torch.Tensor  # rho = N + R for rows that halted at this step, else 0


def halting_step(
    h: torch.Tensor, accumulated: torch.Tensor, halted: torch.Tensor, n: int, max_steps: int, eps: float
) -> HaltStep:
    """Apply the ACT halting rule for ponder step ``n`` (1-based) to every row.

    Args:
        h: halting probabilities ``[B]`` of this step, ``h^n``.
        accumulated: ``sum_{n'<n} h^{n'}`` for rows still running ``[B]``.
        halted: ``[B]`` bool, rows that halted at an earlier step.
        n: this ponder step (1-based); ``max_steps``: the cap ``M``; ``eps``: the threshold epsilon.

    Returns:
        :class:`HaltStep`; a row halts now when ``accumulated + h >= 1 - eps`` or ``n == max_steps``
        and then gets the remainder ``R = 1 - accumulated`` as its weight.
    """
    running = ~halted
    stop_now = running & ((accumulated + h >= 1.0 - eps) | torch.full_like(running, n >= max_steps))
    remainder = 1.0 - accumulated
    weight = torch.where(stop_now, remainder, torch.where(running, h, torch.zeros_like(h)))
    ponder = torch.where(stop_now, n + remainder, torch.zeros_like(h))
    new_acc = torch.where(running & ~stop_now, accumulated + h, accumulated)
    return HaltStep(weight, halted | stop_now, new_acc, ponder)


def halting_distribution(
    h: torch.Tensor, eps: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ACT halting distribution for precomputed halting probabilities.

    Args:
        h: ``[B, M]`` halting probabilities ``h^1..h^M`` (``M`` = max ponder steps).
        eps: the threshold epsilon.

    Returns:
        ``p [B, M]`` (sums to 1 per row; zero after the halting step), ``ponder [B]`` (``N + R``) and
        ``steps [B]`` (``N``, int64).
    """
    batch, max_steps = h.shape
    acc = h.new_zeros(batch)
    halted = torch.zeros(batch, dtype=torch.bool, device=h.device)
    weights, ponder = [], h.new_zeros(batch)
    steps = torch.zeros(batch, dtype=torch.long, device=h.device)
    for n in range(1, max_steps + 1):
        was = halted
        out = halting_step(h[:, n - 1], acc, halted, n, max_steps, eps)
        weights.append(out.weight)
        ponder = ponder + out.ponder
        steps = torch.where(out.halted & ~was, torch.full_like(steps, n), steps)
        acc, halted = out.accumulated, out.halted
    return torch.stack(weights, dim=1), ponder, steps


@dataclass(frozen=True)
class ACTConfig:
    """A tanh RNN (or an LSTM or GRU) under Adaptive Computation Time (Graves 2016)."""

    name: PartName = part_name("act")
    hidden_size: Annotated[int, HiddenSize] = 128
    """H, the inner cell's size (128 in the paper's parity set-up)"""
    cell: Literal["rnn", "lstm", "gru"] = "rnn"
    """the inner cell: rnn (tanh, the paper's parity and logic tasks), lstm (its character-level language
    model), gru"""
    max_steps: Annotated[int, Range(1, 10_000)] = 100
    """the cap M on ponder steps per input"""
    eps: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 0.01
    """halt once the summed halting probability reaches 1 - eps"""
    halting_bias: float = 1.0
    """initial bias of the halting unit"""
    tau: Annotated[float, NonNegative] = 0.01
    """ponder cost weight: the loss gets tau * mean_b sum_t rho_t"""


def inner_cell(cell: str, input_size: int, hidden_size: int) -> RecurrentCore:
    """The cell ACT ponders with: ``rnn`` (tanh), ``lstm`` or ``gru``, taking ``input_size`` inputs."""
    require(cell in ("rnn", "lstm", "gru"), f"ACT's cell must be rnn, lstm or gru, got {cell!r}")
    if cell == "lstm":
        return LSTMCore(input_size, LSTMConfig(hidden_size=hidden_size))
    if cell == "gru":
        return GRUCore(input_size, GRUConfig(hidden_size=hidden_size))
    return RNNCore(input_size, RNNConfig(hidden_size=hidden_size, nonlinearity="tanh"))


class ACTCore(RecurrentCore):
    """ACT (:class:`ACTConfig`) around a tanh RNN, or around any core of the contract given as ``inner``.

    The inner core gets ``input_size + 1`` inputs (the first-ponder-step flag). Per input step the
    attention dict holds ``"halting" [B, max_steps]`` (``p^n``, zero after halting) and
    ``"ponder" [B]`` (``rho = N + R``); :func:`agents.cores.base.unroll` stacks them to
    ``[B, T, max_steps]`` and ``[B, T]``.
    """

    def __init__(self, input_size: int, cfg: ACTConfig = ACTConfig(), inner: RecurrentCore | None = None) -> None:
        super().__init__()
        require(cfg.max_steps >= 1, f"max_steps must be >= 1, got {cfg.max_steps}")
        require(0.0 < cfg.eps < 1.0, f"eps must be in (0, 1), got {cfg.eps}")
        require(cfg.tau >= 0.0, f"tau (the ponder cost weight) must be >= 0, got {cfg.tau}")
        if inner is None:
            inner = inner_cell(cfg.cell, input_size + 1, cfg.hidden_size)
        require(inner.input_size == input_size + 1, "ACT's inner core takes input_size + 1 inputs (the flag)")
        self.inner = inner
        self.input_size, self.output_size = input_size, inner.output_size
        self.max_steps, self.eps, self.tau = cfg.max_steps, cfg.eps, cfg.tau
        self.halt = nn.Linear(inner.output_size, 1)
        nn.init.constant_(self.halt.bias, cfg.halting_bias)

    def aux_loss(self, attention: dict[str, torch.Tensor]) -> torch.Tensor:
        """The ponder cost ``tau * mean_b sum_t rho_{b,t}`` of an unroll (``attention["ponder"] [B, T]``)."""
        return self.tau * attention["ponder"].sum(dim=1).mean()

    def initial_state(self, batch_size: int) -> State:
        return self.inner.initial_state(batch_size)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        batch = x.shape[0]
        acc = x.new_zeros(batch)
        halted = torch.zeros(batch, dtype=torch.bool, device=x.device)
        ponder = x.new_zeros(batch)
        out_sum, state_sum, weights = None, None, []
        s = state
        for n in range(1, self.max_steps + 1):
            flag = x.new_full((batch, 1), 1.0 if n == 1 else 0.0)
            y, s, _ = self.inner(torch.cat([x, flag], dim=-1), s)
            h = torch.sigmoid(self.halt(y)).squeeze(-1)  # [B]
            step = halting_step(h, acc, halted, n, self.max_steps, self.eps)
            p = step.weight  # [B]
            weights.append(p)
            ponder = ponder + step.ponder
            weighted = map_state(lambda v, p=p: v * p.view(-1, *([1] * (v.dim() - 1))), s)
            out_sum = y * p[:, None] if out_sum is None else out_sum + y * p[:, None]
            state_sum = weighted if state_sum is None else map_state(torch.add, state_sum, weighted)
            acc, halted = step.accumulated, step.halted
            if bool(halted.all()):
                break
        halting = torch.stack(weights, dim=1)  # [B, n]
        halting = nn.functional.pad(halting, (0, self.max_steps - halting.shape[1]))
        return out_sum, state_sum, {"halting": halting, "ponder": ponder}
