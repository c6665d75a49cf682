"""The contract every recurrent core in heed follows.

A core is an ``nn.Module`` with

- ``input_size`` and ``output_size`` (ints);
- ``initial_state(batch_size) -> State``: a ``NamedTuple`` of tensors shaped ``[B, ...]`` on the
  core's own device (learned initial values are allowed: they are parameters expanded over B);
- ``forward(x [B, D], state) -> (output [B, H], state, attention: dict[str, Tensor])``: one step.
  ``attention`` holds what a person would want to look at, each tensor batch-first, e.g.
  ``{"read": [B, R, N], "write": [B, W, N]}`` for memory cores, ``{}`` for an LSTM.

:func:`unroll` runs a ``[B, T, D]`` sequence with per-step episode resets: before step ``t`` the
state of every row with ``resets[b, t]`` is replaced by the initial state,
``state = where(reset, initial_state, state)``, which stays exact when the initial state is learned.

Construction: every core has a frozen config dataclass beside its class (the only place its defaults
live); the config's ``name`` field (:data:`PartName`, set with :func:`part_name`) is its key in the
table of parts (:mod:`heed.agents.parts`), is kept by ``dataclasses.asdict`` (so checkpoints and
``config.json`` rebuild the part) and is hidden from the command line. A core's constructor is
``Core(input_size, cfg)``. A core whose training adds a loss term (ACT's ponder cost) says so in
:meth:`RecurrentCore.aux_loss`, which every user of cores adds to its own loss.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import field
from typing import Annotated, Any, NamedTuple

import torch
import tyro
from torch import nn

from heed.agents.common.validate import Range

State = Any  # a NamedTuple (or tuple) of [B, ...] tensors

#: the type of a part config's ``name`` field: in ``asdict`` and JSON, never a command-line flag
PartName = Annotated[str, tyro.conf.Suppress]


#: bounds on a part's sizes, declared on its config fields and checked by
#: :func:`heed.agents.common.validate.validate` before anything is allocated (a saved config asking for
#: 10^9 memory rows or 10^7 hidden units is refused with one line)
HiddenSize = Range(1, 8192)
MemoryRows = Range(1, 65_536)
MemoryWidth = Range(1, 4096)
HeadCount = Range(1, 64)


def part_name(name: str) -> Any:
    """The ``name`` field of a part config: ``name: PartName = part_name("ntm")`` (not an init argument)."""
    return field(default=name, init=False, repr=False)


def map_state(fn, *states: State) -> State:
    """Apply ``fn`` leaf-wise over one or more states of the same structure (NamedTuple/tuple/tensor)."""
    first = states[0]
    if torch.is_tensor(first):
        return fn(*states)
    if first is None:
        return None
    mapped = [map_state(fn, *parts) for parts in zip(*states)]
    return type(first)(*mapped) if hasattr(first, "_fields") else type(first)(mapped)


def reset_state(state: State, initial: State, reset: torch.Tensor) -> State:
    """``where(reset[b], initial[b], state[b])`` for every leaf; ``reset`` is a ``[B]`` bool tensor."""

    def pick(s: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        mask = reset.to(torch.bool).view(-1, *([1] * (s.dim() - 1)))
        return torch.where(mask, i.to(s.dtype), s)

    return map_state(pick, state, initial)


def detach_state(state: State) -> State:
    """Cut the graph through a state (for truncated back-propagation through time)."""
    return map_state(lambda s: s.detach(), state)


class RecurrentCore(nn.Module):
    """Base class: subclasses set ``input_size``/``output_size`` and implement ``initial_state``/``forward``."""

    input_size: int
    output_size: int

    def initial_state(self, batch_size: int) -> State:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        raise NotImplementedError  # pragma: no cover - abstract

    def aux_loss(self, attention: dict[str, torch.Tensor]) -> torch.Tensor:
        """A loss term the core adds to its user's loss, from the attention of an unroll (stacked
        ``[B, T, ...]``); a scalar zero unless the core overrides it (ACT: the ponder cost)."""
        return torch.zeros((), device=self.device)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def unroll(
        self, xs: torch.Tensor, state: State | None = None, resets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """See :func:`unroll`."""
        return unroll(self, xs, state, resets)


class Compiled(NamedTuple):
    """What :func:`compile_step` did: its CPU seconds (this process and the C++ compiler it ran) and,
    when compilation failed, the reason in one line (``None`` when the step is compiled)."""

    cpu_seconds: float
    failure: str | None


def cpu_seconds_with_children() -> float:
    """CPU seconds of this process plus its finished child processes (inductor runs the C++ compiler
    as one; ``time.process_time`` leaves it out)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


COMPILE_BACKEND = "inductor"
"""The ``torch.compile`` backend of :func:`compile_step` (inductor: fused C++ kernels). The tests set
``"aot_eager"`` (the same graph capture and autograd split, without code generation) to check the
plumbing in seconds; a cold inductor compilation of even a tiny core takes minutes of CPU."""


def compile_step(core: RecurrentCore, batch_size: int, dtype: torch.dtype = torch.float32) -> Compiled:
    """Compile ``core``'s one-step ``forward`` with ``torch.compile``, in place; when that fails, the
    core is left eager and the result says why.

    ``nn.Module.compile`` swaps the module's call for the compiled one and keeps the module itself,
    so parameter and ``state_dict`` names stay those of the eager core (no ``_orig_mod.`` prefix):
    a checkpoint saved by a compiled run loads into an eager model and back. The Python loop over
    time (:func:`unroll`) stays as it is; each step runs one fused forward graph and, in training,
    one fused backward graph.

    The compilation happens here, not at the first training step: a two-step :func:`unroll` of
    zeros ``[batch_size, 2, input_size]`` with a backward builds the graph of the first step (which
    reads the expanded initial state) and of every later step, so the training batch reuses both.
    It runs in this process (inductor's ``compile_threads = 1``) apart from the C++ compiler, whose
    CPU time the result includes.
    Compiled graphs are cached on disk (inductor's FX graph cache and AOTAutograd cache, under
    ``$TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_$USER``): the same core and batch
    compile again in a fraction of the first time. Another batch size recompiles once (then the
    batch dimension is dynamic); ``with torch.compiler.set_stance("force_eager"):`` runs the compiled
    core eagerly (what the trainers do for evaluation).

    Args:
        core: any core of the contract above, on its device.
        batch_size: the training batch B.
        dtype: the input dtype.
    """
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = 1
    start = cpu_seconds_with_children()
    core.compile(backend=COMPILE_BACKEND)
    failure = None
    xs = torch.zeros(batch_size, 2, core.input_size, dtype=dtype, device=core.device)
    try:
        with warnings.catch_warnings(), torch.enable_grad():
            warnings.simplefilter("ignore", FutureWarning)  # deprecations inside inductor's own lowerings
            out, _, attention = unroll(core, xs)
            loss = out.sum() + core.aux_loss(attention)
            if loss.requires_grad:
                loss.backward()
    except Exception as exc:  # no C++ compiler, an unsupported op, ...: stay eager
        core._compiled_call_impl = None  # what nn.Module.compile set
        torch._dynamo.reset()
        while (inner := getattr(exc, "inner_exception", None) or exc.__cause__) is not None:
            exc = inner  # the backend's own error, not dynamo's wrapper of it
        first = (str(exc).strip().splitlines() or [""])[0]
        failure = f"{type(exc).__name__}: {first[:200]}"
    finally:
        core.zero_grad(set_to_none=True)
    return Compiled(cpu_seconds_with_children() - start, failure)


def unroll(
    core: RecurrentCore,
    xs: torch.Tensor,
    state: State | None = None,
    resets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
    """Run ``core`` over ``xs [B, T, D]``.

    Args:
        core: any module following the contract above.
        xs: inputs ``[B, T, D]``.
        state: the state before step 0 (default: ``core.initial_state(B)``).
        resets: optional ``[B, T]`` bools; ``resets[b, t]`` restores the initial state before step t.

    Returns:
        ``outputs [B, T, H]``, the final state, and the attention dict with every entry stacked
        over time as ``[B, T, ...]``.
    """
    if xs.dim() != 3:
        raise ValueError(f"unroll expects inputs shaped [B, T, D], got {tuple(xs.shape)}")
    batch, steps = xs.shape[:2]
    initial = core.initial_state(batch)
    if state is None:
        state = initial
    outputs = []
    records: dict[str, list[torch.Tensor]] = {}
    for t in range(steps):
        if resets is not None:
            state = reset_state(state, initial, resets[:, t])
        out, state, attention = core(xs[:, t], state)
        outputs.append(out)
        for key, value in attention.items():
            records.setdefault(key, []).append(value)
    stacked = {k: torch.stack(v, dim=1) for k, v in records.items()}
    return torch.stack(outputs, dim=1), state, stacked
