"""Module and optimizer state to and from plain tensors (what a checkpoint stores)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from heed.agents.common.errors import HeedError


def load_module_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str = "") -> None:
    """``module.load_state_dict`` with a one-line error when the architecture does not match."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in own if k in tensors and tuple(own[k].shape) != tuple(tensors[k].shape))
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"missing {missing[:3]}")
        if unexpected:
            detail.append(f"unexpected {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            detail.append(f"shape of {k} is {tuple(tensors[k].shape)}, model wants {tuple(own[k].shape)}")
        raise HeedError(f"checkpoint {where} does not fit this architecture: {'; '.join(detail)}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into safetensors-ready tensors and JSON-ready scalars."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    if not tensors:  # safetensors refuses an empty file
        tensors["__empty__"] = torch.zeros(1)
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key == "__empty__":
            continue
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def generator_states(rng: np.random.Generator) -> dict[str, Any]:
    """The run's random state as JSON: ``{"numpy": rng's bit-generator state, "torch": torch's CPU state}``.

    Saved in a checkpoint's meta as ``rng=...``; :func:`restore_training_state` puts it back, so a
    resumed run draws the same numbers the uninterrupted run would have.
    """
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state().tolist()}


def restore_training_state(ckpt: Any, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                           rng: np.random.Generator | None = None,
                           counters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Put a checkpoint back into a training loop: weights, optimizer, random state and counters.

    Args:
        ckpt: a loaded :class:`~heed.agents.common.checkpoint.Checkpoint`.
        model, optimizer: restored in place (the optimizer only when the checkpoint has its state).
        rng: restored from ``meta["rng"]`` (:func:`generator_states`; a bare numpy state, the older
            supervised form, is read too); torch's CPU generator as well when it was saved.
        counters: the loop's counters with their start values; each numeric one found in the
            checkpoint's counters replaces it.

    Returns:
        The updated counters. Damaged counters or random states are one :class:`HeedError` line.
    """
    where = f"checkpoint '{ckpt.path}'"
    load_module_state(model, ckpt.tensors, where=str(ckpt.path))
    if optimizer is not None and ckpt.optimizer_tensors is not None and "optimizer" in ckpt.meta:
        restore_optimizer(optimizer, ckpt.optimizer_tensors, ckpt.meta["optimizer"])
    out = dict(counters or {})
    saved = ckpt.counters
    for key in out:
        value = saved.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise HeedError(f"{where} holds a damaged counter '{key}'")
        if value is not None:
            out[key] = type(out[key])(value) if isinstance(out[key], (int, float)) else value
    states = ckpt.meta.get("rng")
    if rng is not None and states is not None:
        try:
            numpy_state = states.get("numpy") if "numpy" in states else states
            rng.bit_generator.state = numpy_state
            if "torch" in states:
                torch.set_rng_state(torch.tensor(states["torch"], dtype=torch.uint8))
        except (AttributeError, TypeError, ValueError, KeyError, RuntimeError):
            raise HeedError(f"{where} holds a damaged random-generator state ('rng')") from None
    return out


class StepBudget:
    """The loop state of a trainer that runs a number of updates or of CPU-seconds, whichever ends first.

    Holds the counters a checkpoint stores, ``{"step", "seconds", "cpu_seconds"}`` (``state``, from
    :func:`restore_training_state` on resume), and the one rule for them::

        progress = max(done / steps, cpu_seconds / max_cpu_seconds)   (the second term only if > 0)

    ``cpu_seconds`` counts this process's CPU time (``time.process_time``) between :meth:`step` calls;
    :meth:`pause` after an evaluation keeps it out of the budget. :meth:`save` writes one checkpoint
    per completed update through ``run.save`` (a :class:`heed.agents.common.session.Run`), with the wall
    time spent so far. Used by the draw, glimpse, pen and synthesis trainers.
    """

    INITIAL: dict[str, float] = {"step": 0, "seconds": 0.0, "cpu_seconds": 0.0}

    def __init__(self, run: Any, state: dict[str, Any], steps: int, max_cpu_seconds: float = 0.0) -> None:
        self.run, self.steps, self.max_cpu_seconds = run, steps, max_cpu_seconds
        self.start = self.done = int(state["step"])
        self.seconds, self.cpu_seconds = float(state["seconds"]), float(state["cpu_seconds"])
        self._saved_at = self.start if run.resumed else -1
        self._tic, self._cpu_tic = time.perf_counter(), time.process_time()

    @classmethod
    def begin(cls, run: Any, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rng: np.random.Generator,
              steps: int, max_cpu_seconds: float = 0.0) -> StepBudget:
        """The budget of a new run, or of a resumed one with its checkpoint put back first (weights,
        optimiser, random state and counters: :func:`restore_training_state`)."""
        state = dict(cls.INITIAL)
        if run.checkpoint is not None:
            state = restore_training_state(run.checkpoint, model, optimizer, rng, state)
        return cls(run, state, steps, max_cpu_seconds)

    def progress(self) -> float:
        """Fraction of the budget used: updates or CPU-seconds, whichever is further along."""
        frac = self.done / self.steps
        return max(frac, self.cpu_seconds / self.max_cpu_seconds) if self.max_cpu_seconds > 0 else frac

    def step(self) -> int:
        """Count one completed update and the CPU time since the last; returns the updates done."""
        self.done += 1
        now = time.process_time()
        self.cpu_seconds += now - self._cpu_tic
        self._cpu_tic = now
        return self.done

    def pause(self) -> None:
        """Leave the CPU time since the last update (an evaluation, say) out of the budget."""
        self._cpu_tic = time.process_time()

    def save(self, module: torch.nn.Module, config: dict[str, Any], optimizer: torch.optim.Optimizer,
             rng: np.random.Generator, **meta: Any) -> None:
        """Checkpoint the completed updates (at most once per update), with the time spent so far."""
        if self._saved_at == self.done:
            return
        now = time.perf_counter()
        self.seconds, self._tic = self.seconds + now - self._tic, now
        self.run.save(self.done, module.state_dict(), config,
                      {"step": self.done, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds}, optimizer,
                      rng=generator_states(rng), **meta)
        self._saved_at = self.done
