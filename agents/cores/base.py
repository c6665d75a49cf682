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
from collections.abc import Sequence
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
    #: set by :func:`compile_step`: the compiled chunks of steps :func:`unroll` runs (None: eager)
    compiled_steps: CompiledSteps | None = None

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

STEPS_PER_GRAPH = 4
"""How many time steps :func:`compile_step` puts in one compiled graph by default (``K``)."""


class CompiledSteps(NamedTuple):
    """What :func:`compile_step` attaches to a core (as ``core.compiled_steps``): ``steps`` (K) time
    steps per call of ``run``, the compiled :func:`run_steps`."""

    steps: int
    run: Any


def compile_step(
    core: RecurrentCore, batch_size: int, dtype: torch.dtype = torch.float32, steps_per_graph: int = STEPS_PER_GRAPH
) -> Compiled:
    """Compile ``steps_per_graph`` (K) time steps of ``core`` into one graph with ``torch.compile``; when
    that fails, the core is left eager and the result says why.

    The compiled function is :func:`run_steps` (the loop over K steps, which dynamo unrolls), kept on
    the core as ``core.compiled_steps`` (a :class:`CompiledSteps`); :func:`unroll` then runs full
    chunks of K steps through it, one fused forward graph and, in training, one fused backward graph
    per chunk, so the per-call costs (guard check, autograd-function boundary) are paid once per K
    steps and inductor fuses across steps. The ``T mod K`` steps left over run one step per call,
    through a one-step graph of the same function. The core's own modules are untouched, so
    parameter and ``state_dict`` names stay those of the eager core: a checkpoint saved by a compiled
    run loads into an eager model and back. ``steps_per_graph=1`` compiles one graph per step.

    The compilation happens here, not at the first training step: an :func:`unroll` of ``K + 1``
    steps of zeros ``[batch_size, K + 1, input_size]`` with a backward builds both graphs, so the
    training batch reuses them. It runs in this process (inductor's ``compile_threads = 1``) apart
    from the C++ compiler, whose CPU time the result includes.
    Compiled graphs are cached on disk (inductor's FX graph cache and AOTAutograd cache, under
    ``$TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_$USER``): the same core and batch
    compile again in a fraction of the first time. Another batch size recompiles once (then the
    batch dimension is dynamic); ``with torch.compiler.set_stance("force_eager"):`` runs the compiled
    core eagerly (what the trainers do for evaluation).

    Args:
        core: any core of the contract above, on its device.
        batch_size: the training batch B.
        dtype: the input dtype.
        steps_per_graph: K, the time steps in one compiled graph (1 to 16).
    """
    import torch._inductor.config as inductor_config

    if not 1 <= steps_per_graph <= 16:
        raise ValueError(f"steps_per_graph must be 1 to 16, got {steps_per_graph}")
    inductor_config.compile_threads = 1
    start = cpu_seconds_with_children()
    core.compiled_steps = CompiledSteps(steps_per_graph, torch.compile(run_steps, backend=COMPILE_BACKEND))
    failure = None
    xs = torch.zeros(batch_size, steps_per_graph + 1, core.input_size, dtype=dtype, device=core.device)
    try:
        with warnings.catch_warnings(), torch.enable_grad():
            warnings.simplefilter("ignore", FutureWarning)  # deprecations inside inductor's own lowerings
            out, _, attention = unroll(core, xs)
            loss = out.sum() + core.aux_loss(attention)
            if loss.requires_grad:
                loss.backward()
    except Exception as exc:  # no C++ compiler, an unsupported op, ...: stay eager
        core.compiled_steps = None
        torch._dynamo.reset()
        while (inner := getattr(exc, "inner_exception", None) or exc.__cause__) is not None:
            exc = inner  # the backend's own error, not dynamo's wrapper of it
        first = (str(exc).strip().splitlines() or [""])[0]
        failure = f"{type(exc).__name__}: {first[:200]}"
    finally:
        core.zero_grad(set_to_none=True)
    return Compiled(cpu_seconds_with_children() - start, failure)


def run_steps(
    core: RecurrentCore,
    xs: Sequence[torch.Tensor],
    state: State,
    initial: State,
    resets: Sequence[torch.Tensor] | None,
) -> tuple[list[torch.Tensor], State, dict[str, list[torch.Tensor]]]:
    """The loop over time: run ``core`` over the steps ``xs`` (each ``[B, D]``) from ``state``.

    Before step ``t``, the rows with ``resets[t]`` (``[B]`` bools) are set to ``initial``.
    Returns the per-step outputs (``[B, H]`` each), the final state and every attention entry as a
    list of its per-step ``[B, ...]`` tensors. :func:`unroll` calls it once for the whole sequence
    (eager) or once per chunk of steps (compiled by :func:`compile_step`).
    """
    outputs: list[torch.Tensor] = []
    records: dict[str, list[torch.Tensor]] = {}
    for t, x in enumerate(xs):
        if resets is not None:
            state = reset_state(state, initial, resets[t])
        out, state, attention = core(x, state)
        outputs.append(out)
        for key, value in attention.items():
            records.setdefault(key, []).append(value)
    return outputs, state, records


def _chunk_input(s: torch.Tensor) -> torch.Tensor:
    """A state tensor as a compiled chunk takes it: contiguous and, when gradients are on, a floating
    tensor that needs none (the initial memory) is made a fresh leaf that requires one, as every later
    chunk's state does, so the first chunk meets the same graph as the others (the values are the
    same; ``s`` itself is not touched)."""
    s = s.contiguous()
    if torch.is_grad_enabled() and s.is_floating_point() and not s.requires_grad:
        s = s.detach().requires_grad_()
    return s


def chunks(steps: int, per_chunk: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of ``steps // per_chunk`` chunks of ``per_chunk`` steps, then of the
    ``steps % per_chunk`` steps left one by one: ``chunks(10, 4) == [(0, 4), (4, 8), (8, 9), (9, 10)]``."""
    full = steps - steps % per_chunk
    return [(s, s + per_chunk) for s in range(0, full, per_chunk)] + [(s, s + 1) for s in range(full, steps)]


def unroll(
    core: RecurrentCore,
    xs: torch.Tensor,
    state: State | None = None,
    resets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
    """Run ``core`` over ``xs [B, T, D]``.

    An eager core runs :func:`run_steps` once over all T steps; a core compiled by
    :func:`compile_step` runs it compiled over chunks of K steps (see :func:`chunks`), with the
    inputs, resets and states made contiguous so that every chunk meets the same graph whatever T.

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
    compiled: CompiledSteps | None = getattr(core, "compiled_steps", None)
    if compiled is None:
        run, spans = run_steps, [(0, steps)]
        step_xs = xs.unbind(1)
        step_resets = None if resets is None else resets.unbind(1)
    else:  # [B, D] and [B] steps with the same strides for every T; states contiguous (not expanded)
        run, spans = compiled.run, chunks(steps, compiled.steps)
        step_xs = xs.transpose(0, 1).contiguous().unbind(0)
        step_resets = None if resets is None else resets.transpose(0, 1).contiguous().unbind(0)
        initial, state = map_state(torch.Tensor.contiguous, initial), map_state(_chunk_input, state)
    outputs: list[torch.Tensor] = []
    records: dict[str, list[torch.Tensor]] = {}
    for start, stop in spans:
        chunk_resets = None if step_resets is None else step_resets[start:stop]
        outs, state, attention = run(core, step_xs[start:stop], state, initial, chunk_resets)
        outputs += outs
        for key, values in attention.items():
            records.setdefault(key, []).extend(values)
    stacked = {k: torch.stack(v, dim=1) for k, v in records.items()}
    return torch.stack(outputs, dim=1), state, stacked
