"""Incremental decoding: read each new step once, keeping what the earlier steps left behind.

A causal sequence model recomputes nothing about steps 0..t-1 when step t arrives, if it keeps

- per attention layer, the keys and values of the steps already read (:class:`KeyValues`): the new
  step's query attends over ``[cached keys; its own key]`` (a *key/value cache*), and
- per recurrent layer, its state after the last step read.

A model that decodes this way (:class:`~heed.agents.transformer.TransformerModel` when causal, the
:class:`~heed.agents.sharnn.SHARNN`) has three methods, the :class:`Incremental` protocol::

    cache = model.empty_cache(batch_size)          # None: this model cannot (e.g. not causal)
    logits, cache = model.extend(inputs, cache)    # inputs [B, T, D] = the next T steps; logits [B, T, K]
    cache = model.slide(cache, keep)               # roll the window on (None: it cannot)

``extend`` over steps ``t0..t0+T-1`` from the cache of steps ``0..t0-1`` gives the logits a full
forward over steps ``0..t0+T-1`` gives at those steps (to float rounding; tests/test_kv_cache.py).

:class:`CachedReader` is the one sampling loop's reader (scripts/generate.py, scripts/bench_text.py):
the logits after a growing text, reading each new character once while the text fits in the
``context`` window. Past the window it re-reads the last ``context`` characters from a fresh start for
every new one (exactly what the model saw in training, and what a model without a cache does), unless
``stream``: then :meth:`Incremental.slide` keeps going from the cache, where the position code allows
(docs/language.md, "Writing text").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn


class KeyValues(NamedTuple):
    """One attention layer's cache: ``keys``, ``values`` ``[B, H, N, d_k]`` (or ``[B, N, d]`` for one
    head) of the N steps read so far, oldest first."""

    keys: torch.Tensor
    values: torch.Tensor

    def extended(self, keys: torch.Tensor, values: torch.Tensor) -> KeyValues:
        """The cache with the new steps' ``keys``, ``values`` (same layout, T steps) appended."""
        dim = self.keys.dim() - 2  # the step axis
        return KeyValues(torch.cat([self.keys, keys], dim), torch.cat([self.values, values], dim))

    def last(self, keep: int) -> KeyValues:
        """Only the last ``keep >= 0`` steps."""
        dim = self.keys.dim() - 2
        start = max(0, self.keys.shape[dim] - keep)
        return KeyValues(self.keys.narrow(dim, start, self.keys.shape[dim] - start),
                         self.values.narrow(dim, start, self.values.shape[dim] - start))


@runtime_checkable
class Incremental(Protocol):
    """A causal sequence model that can read a sequence a few steps at a time (module docstring)."""

    def empty_cache(self, batch_size: int) -> Any | None:
        """The cache before any step, or None when this model cannot decode incrementally."""

    def extend(self, inputs: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        """Logits ``[B, T, K]`` of the next T steps ``inputs [B, T, D]``, and the cache after them."""

    def slide(self, cache: Any, keep: int) -> Any | None:
        """A cache that continues past the window, the next step seeing ``keep`` earlier steps, or None
        when the model's positions cannot roll on (the caller then re-reads the window)."""


class CachedReader:
    """Logits of the next step after a growing sequence of ids (one implementation for every sampler).

    ``reader(ids) -> logits [K]`` where ``ids`` is the text so far: each call must extend the previous
    call's ids (append-only). With ``context = W`` the model reads at most the last W ids, as when it
    was trained on windows of W steps; ``None`` reads them all.

    - ``cache=False``, or a model that is not :class:`Incremental`: every call re-reads the last W ids
      from a fresh state, ``model(inputs)`` (W steps per new id).
    - ``cache=True`` while the ids fit in the window: only the new ids are read (``extend``); the
      logits equal the uncached ones (to float rounding).
    - past the window, ``stream=False``: the cache restarts from the last W ids for every new id (the
      same logits as without a cache, at the same cost).
    - past the window, ``stream=True``: ``model.slide`` rolls the cache on (rotary Transformer: the
      last W - 1 keys and values stay; SHA-RNN: the LSTM state runs on) and only the new id is read;
      a model whose positions cannot roll (learned, sinusoid) re-reads as with ``stream=False``.

    Args:
        model: ``[B, T, D] -> (logits [B, T, K], ...)``, in evaluation mode.
        inputs_of: ids ``[T] -> inputs [1, T, D]`` (one-hot characters for a character model).
        context: the window W (None: unbounded).
    """

    def __init__(self, model: nn.Module, inputs_of: Callable[[Sequence[int]], torch.Tensor],
                 context: int | None = None, cache: bool = True, stream: bool = False) -> None:
        self.model, self.inputs_of, self.context, self.stream = model, inputs_of, context, stream
        incremental = cache and isinstance(model, Incremental)
        self.cached = incremental and model.empty_cache(1) is not None
        self._cache: Any = None
        self._start = self._read = 0  # the cache holds ids[_start:_read]

    def __call__(self, ids: Sequence[int]) -> torch.Tensor:
        total = len(ids)
        first = 0 if self.context is None else max(0, total - self.context)  # the window is ids[first:]
        if not self.cached:
            return self.model(self.inputs_of(ids[first:]))[0][0, -1]
        if self._cache is not None and self._start < first:  # the window moved past the cache's start
            keep = self._read - first  # cached ids still inside the window
            self._cache = self.model.slide(self._cache, keep) if self.stream and keep > 0 else None
            self._start = first
        if self._cache is None:
            self._cache, self._start, self._read = self.model.empty_cache(1), first, first
        logits, self._cache = self.model.extend(self.inputs_of(ids[self._read:]), self._cache)
        self._read = total
        return logits[0, -1]
