"""An actor-critic policy over any recurrent core (see :mod:`agents.cores.base`), and the core builders.

The policy runs one core shared by the actor and the critic:

    s_t = where(episode_start_t, s_0, s_{t-1});  h_t, s_t = core(x_t, s_t);
    pi(a | x_{<=t}) = softmax(W_pi h_t + b_pi);  V(x_{<=t}) = w_v . h_t + b_v

``x_t`` is the (optionally normalised) observation. ``s_0 = core.initial_state(B)``, learned or not,
is recomputed from the current parameters at every reset, so a learned initial state gets its
gradient in training. The ``mlp`` core keeps an empty state: a feedforward baseline that goes
through exactly the same code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from heed.agents.common.errors import HeedError, suggest
from heed.agents.cores.base import RecurrentCore, State, reset_state


class EmptyState(NamedTuple):
    """A stateless core's state: ``[B, 0]``."""

    empty: torch.Tensor


class FeedforwardCore(RecurrentCore):
    """h_t = tanh(W_2 tanh(W_1 x_t + b_1) + b_2): no memory at all (the baseline policy's "core")."""

    def __init__(self, input_size: int, hidden_size: int = 64) -> None:
        super().__init__()
        self.input_size, self.output_size = input_size, hidden_size
        self.net = nn.Sequential(nn.Linear(input_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, hidden_size), nn.Tanh())
        self.register_buffer("_anchor", torch.zeros(0))

    def initial_state(self, batch_size: int) -> EmptyState:
        return EmptyState(self._anchor.new_zeros(batch_size, 0))

    def forward(self, x: torch.Tensor, state: EmptyState) -> tuple[torch.Tensor, EmptyState, dict[str, torch.Tensor]]:
        """x ``[B, D]`` -> ``[B, H]``, the unchanged empty state, ``{}``."""
        return self.net(x), state, {}


def _lstm(input_size: int, hidden_size: int, learn_initial_state: bool = False) -> RecurrentCore:
    from heed.agents.cores.lstm import LSTMCore

    return LSTMCore(input_size, hidden_size, learn_initial_state)


def _gru(input_size: int, hidden_size: int, learn_initial_state: bool = False) -> RecurrentCore:
    from heed.agents.cores.gru import GRUCore

    return GRUCore(input_size, hidden_size, learn_initial_state)


def _ntm(
    input_size: int, hidden_size: int, memory_size: int = 16, memory_width: int = 8, read_heads: int = 1,
    write_heads: int = 1, controller: str = "lstm", shift_range: int = 1,
) -> RecurrentCore:
    from heed.agents.cores.ntm import NTMCore

    return NTMCore(
        input_size, hidden_size, memory_size=memory_size, memory_width=memory_width, read_heads=read_heads,
        write_heads=write_heads, controller=controller, shift_range=shift_range,
    )


def _dnc(
    input_size: int, hidden_size: int, memory_size: int = 16, memory_width: int = 8, read_heads: int = 1,
    write_heads: int = 1,
) -> RecurrentCore:
    from heed.agents.cores.dnc import DNCCore

    return DNCCore(
        input_size, hidden_size, memory_size=memory_size, memory_width=memory_width, read_heads=read_heads,
        write_heads=write_heads,
    )


def _mlp(input_size: int, hidden_size: int) -> RecurrentCore:
    return FeedforwardCore(input_size, hidden_size)


CORES: dict[str, Callable[..., RecurrentCore]] = {"mlp": _mlp, "lstm": _lstm, "gru": _gru, "ntm": _ntm, "dnc": _dnc}


def register_core(name: str, builder: Callable[..., RecurrentCore]) -> None:
    """Make a core usable as a policy: ``builder(input_size, hidden_size, **options) -> RecurrentCore``."""
    CORES[name] = builder


def build_core(name: str, input_size: int, hidden_size: int, **options: Any) -> RecurrentCore:
    """Build core ``name``; options the builder does not take are dropped (one config serves all cores)."""
    if name not in CORES:
        raise HeedError(f"unknown core '{name}' (known: {', '.join(CORES)}).{suggest(name, CORES)}")
    builder = CORES[name]
    accepted = inspect.signature(builder).parameters
    kept = {k: v for k, v in options.items() if k in accepted}
    try:
        return builder(input_size, hidden_size, **kept)
    except ImportError as exc:
        raise HeedError(f"core '{name}' is not available: {exc}") from None


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
        action_kind: ``"discrete"`` (Gymnasium ``Discrete(A)``) or ``"multibinary"`` (``MultiBinary(K)``).
        core: ``mlp``, ``lstm``, ``gru``, ``ntm``, ``dnc`` or any name given to :func:`register_core`.
        hidden_size: the core's hidden (controller) size.
        core_options: extra core arguments (memory_size, memory_width, read_heads, learn_initial_state, ...).
    """

    def __init__(
        self, obs_dim: int, n_actions: int, core: str = "lstm", hidden_size: int = 64, action_kind: str = "discrete",
        **core_options: Any,
    ) -> None:
        super().__init__()
        if action_kind not in ACTION_KINDS:
            raise HeedError(f"action_kind must be one of {ACTION_KINDS}, got '{action_kind}'")
        self.obs_dim, self.n_actions, self.core_name, self.action_kind = obs_dim, n_actions, core, action_kind
        self.core = build_core(core, obs_dim, hidden_size, **core_options)
        self.actor = nn.Linear(self.core.output_size, n_actions)
        self.critic = nn.Linear(self.core.output_size, 1)
        nn.init.orthogonal_(self.actor.weight, gain=0.01)
        nn.init.zeros_(self.actor.bias)
        nn.init.orthogonal_(self.critic.weight, gain=1.0)
        nn.init.zeros_(self.critic.bias)

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
