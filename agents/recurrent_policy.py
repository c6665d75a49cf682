"""An actor-critic policy over any recurrent core (see :mod:`heed.agents.cores.base`).

The policy runs one core shared by the actor and the critic:

    s_t = where(episode_start_t, s_0, s_{t-1});  h_t, s_t = core(x_t, s_t);
    pi(a | x_{<=t}) = softmax(W_pi h_t + b_pi);  V(x_{<=t}) = w_v . h_t + b_v

``x_t`` is the (optionally normalised) observation. ``s_0 = core.initial_state(B)``, learned or not,
is recomputed from the current parameters at every reset, so a learned initial state gets its
gradient in training. The core is any entry of the table of parts (:mod:`heed.agents.parts`),
built from its config; the ``mlp`` core keeps an empty state: a feedforward baseline that goes
through exactly the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from heed.agents.common.errors import HeedError
from heed.agents.cores.base import State, reset_state
from heed.agents.parts import build_core, part_from_dict, part_to_dict

ACTION_KINDS = ("discrete", "multibinary")


def sample_actions(logits: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Sample from pi: ``[B, A]`` logits -> ``[B]`` long (discrete, Gumbel-max) or ``[B, K]`` floats (bits)."""
    u = torch.rand(logits.shape, generator=generator).to(logits.device)
    if kind == "discrete":
        return (logits - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(-1)
    return (u < torch.sigmoid(logits)).to(logits.dtype)


def greedy_actions(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """The most likely action: argmax (discrete) or every bit with p > 1/2 (multibinary)."""
    return logits.argmax(-1) if kind == "discrete" else (logits > 0).to(logits.dtype)


def log_prob_entropy(logits: torch.Tensor, actions: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(a) and the entropy H(pi), both shaped like ``logits`` without its last dim.

    Discrete: a categorical over A. Multibinary: K independent Bernoullis, log-probs and entropies summed.
    """
    if kind == "discrete":
        logp_all = torch.log_softmax(logits, -1)
        return logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1), -(logp_all.exp() * logp_all).sum(-1)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    logp = -bce(logits, actions, reduction="none").sum(-1)
    p = torch.sigmoid(logits)
    ent = bce(logits, p, reduction="none").sum(-1)
    return logp, ent


class PolicyOutput(NamedTuple):
    """logits ``[B, (T,) A]``, values ``[B, (T)]``, the state after the last step, attention (``[B, (T,) ...]``)."""

    logits: torch.Tensor
    values: torch.Tensor
    state: State
    attention: dict[str, torch.Tensor]


class RecurrentActorCritic(nn.Module):
    """Actor and critic heads on one recurrent core, for discrete or multi-binary actions.

    Args:
        obs_dim: D, the flat observation size.
        n_actions: A (discrete) or K (multibinary: K independent bits).
        core: the core's config (any entry of :data:`heed.agents.parts.CORES`), or its stored dict.
        action_kind: ``"discrete"`` (Gymnasium ``Discrete(A)``) or ``"multibinary"`` (``MultiBinary(K)``).

    A core with an auxiliary loss (ACT's ponder cost) adds it through :meth:`aux_loss`.
    """

    def __init__(self, obs_dim: int, n_actions: int, core: Any, action_kind: str = "discrete") -> None:
        super().__init__()
        if action_kind not in ACTION_KINDS:
            raise HeedError(f"action_kind must be one of {ACTION_KINDS}, got '{action_kind}'")
        core_cfg = part_from_dict(core) if isinstance(core, dict) else core
        self.obs_dim, self.n_actions, self.action_kind = obs_dim, n_actions, action_kind
        self.core_cfg, self.core_name = core_cfg, core_cfg.name
        self.core = build_core(core_cfg, obs_dim)
        self.actor = nn.Linear(self.core.output_size, n_actions)
        self.critic = nn.Linear(self.core.output_size, 1)
        nn.init.orthogonal_(self.actor.weight, gain=0.01)
        nn.init.zeros_(self.actor.bias)
        nn.init.orthogonal_(self.critic.weight, gain=1.0)
        nn.init.zeros_(self.critic.bias)

    def kwargs(self) -> dict[str, Any]:
        """JSON-ready constructor arguments: ``RecurrentActorCritic(**policy.kwargs())`` rebuilds it."""
        return {"obs_dim": self.obs_dim, "n_actions": self.n_actions, "core": part_to_dict(self.core_cfg),
                "action_kind": self.action_kind}

    def aux_loss(self, attention: dict[str, torch.Tensor]) -> torch.Tensor:
        """The core's auxiliary loss of an unroll's attention (ACT: the ponder cost; else 0)."""
        return self.core.aux_loss(attention)

    def initial_state(self, batch_size: int) -> State:
        """The core's initial state for ``batch_size`` rows."""
        return self.core.initial_state(batch_size)

    def step(self, obs: torch.Tensor, state: State, episode_start: torch.Tensor) -> PolicyOutput:
        """One step: obs ``[B, D]``, state, episode_start ``[B]`` bools -> logits ``[B, A]``, values ``[B]``."""
        state = reset_state(state, self.core.initial_state(obs.shape[0]), episode_start)
        hidden, state, attention = self.core(obs, state)
        return PolicyOutput(self.actor(hidden), self.critic(hidden).squeeze(-1), state, attention)

    def unroll(self, obs: torch.Tensor, state: State | None, episode_starts: torch.Tensor | None) -> PolicyOutput:
        """A sequence: obs ``[B, T, D]``, starts ``[B, T]`` -> logits ``[B, T, A]``, values ``[B, T]``.

        Exactly the same numbers as calling :meth:`step` T times (the resets come before each step).
        """
        hidden, state, attention = self.core.unroll(obs, state, episode_starts)
        return PolicyOutput(self.actor(hidden), self.critic(hidden).squeeze(-1), state, attention)

    def logits_fn(self, episode_starts: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """``obs [B, T, D] -> logits [B, T, A]`` from the initial state: the callable the analysis takes."""

        def fn(obs: torch.Tensor) -> torch.Tensor:
            return self.unroll(obs, None, episode_starts).logits

        return fn
