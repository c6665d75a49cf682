"""The sequential Jacobian (Graves): what a sequence model's output at one time depends on.

For a model ``y = fn(x)``, ``x [B, T, D] -> y [B, T, K]``, the sequential Jacobian of output
``y_k^t`` is the series of its derivatives with respect to every input at every time,

    J_k^t = (dy_k^t / dx_1, dy_k^t / dx_2, ..., dy_k^t / dx_T),

and its magnitude over input time shows what the network remembers. For a causal model
``dy^t / dx_s`` is exactly zero for ``s > t``.

- :func:`sequential_jacobian` ``(fn, x, t) -> [B, K, T, D]``: one forward, one backward vectorised
  over the K one-hot cotangents of step ``t``.
- :func:`sensitivity_matrix` ``(fn, x) -> [B, T_out, T_in]`` with entry ``(t, s) = ||dy_t / dx_s||_F``:
  the whole Jacobian from batched products, forward mode (``torch.func.jvp`` vmapped over the
  ``T_in * D`` one-hot tangents) or reverse mode (vmapped over the ``T_out * K`` cotangents),
  whichever needs fewer, in chunks to bound memory; never T separate graphs.

``fn`` is any callable: an ``nn.LSTM``/``nn.GRU`` with ``batch_first=True`` (its ``(output, state)``
tuple is handled), a sequence model returning ``(logits, attention, aux)``, or a wrapper around a heed
core such as ``lambda x: core.unroll(x)[0]``. Rows of a batch must not interact inside ``fn``.
On CUDA, cuDNN's RNN backward refuses eval mode, so cuDNN is switched off here; on CPU oneDNN's
RNN has no forward-mode derivative, so oneDNN is switched off too (the native kernels are used).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

from heed.analysis.saliency import AnalysisError

SeqFn = Callable[[torch.Tensor], object]


def _first_tensor(out: object) -> torch.Tensor:
    """``nn.LSTM`` returns ``(output, state)``; sequence models ``(logits, attention, aux)``."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    if not torch.is_tensor(out):
        raise AnalysisError(f"fn must return a [B, T, K] tensor (or a tuple starting with one), got {type(out)}")
    return out


def _native_kernels(device: torch.device):
    """Context: cuDNN off on CUDA (RNN backward in eval mode), oneDNN off on CPU (forward mode)."""
    stack = contextlib.ExitStack()
    if device.type == "cuda":
        stack.enter_context(torch.backends.cudnn.flags(enabled=False))
    stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
    return stack


def _check_sequence(inputs: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(inputs) or inputs.dim() != 3:
        shape = tuple(inputs.shape) if torch.is_tensor(inputs) else type(inputs).__name__
        raise AnalysisError(f"sequence inputs must be shaped [B, T, D], got {shape}")
    if not inputs.is_floating_point():
        raise AnalysisError(f"sequence inputs must be float, got {inputs.dtype}")
    return inputs.detach().clone()


def _sequence_call(fn: SeqFn, x: torch.Tensor) -> torch.Tensor:
    try:
        y = _first_tensor(fn(x))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnalysisError(f"the model could not take inputs shaped {tuple(x.shape)}: {first}") from None
    if y.dim() != 3 or y.shape[:2] != x.shape[:2]:
        raise AnalysisError(f"fn must map [B, T, D] to [B, T, K]; got {tuple(x.shape)} -> {tuple(y.shape)}")
    return y


def sequential_jacobian(fn: SeqFn, inputs: torch.Tensor, t: int) -> torch.Tensor:
    """``J[b, k, s, d] = dy[b, t, k] / dx[b, s, d]``, shaped ``[B, K, T, D]``.

    Args:
        fn: ``[B, T, D] -> [B, T, K]`` (see the module docstring for what it may return).
        inputs: float ``[B, T, D]``; not mutated, ``requires_grad`` untouched.
        t: output time (negative counts from the end).
    """
    x = _check_sequence(inputs)
    steps = x.shape[1]
    if not -steps <= t < steps:
        raise AnalysisError(f"output time t={t} out of range for T={steps}")
    with torch.enable_grad(), _native_kernels(x.device):
        x.requires_grad_(True)
        y = _sequence_call(fn, x)[:, t]  # [B, K]
        k = y.shape[1]
        cot = torch.eye(k, dtype=y.dtype, device=y.device)[:, None, :].expand(k, y.shape[0], k)
        try:
            (g,) = torch.autograd.grad(y, x, cot, is_grads_batched=True)  # [K, B, T, D]
        except (RuntimeError, NotImplementedError):
            g = torch.stack([torch.autograd.grad(y, x, c, retain_graph=True)[0] for c in cot])
    return g.detach().transpose(0, 1).contiguous()


def _sensitivity_forward(fn: SeqFn, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Forward mode: one-hot tangents over (s, d), vmapped ``chunk`` at a time. ``[B, T_out, T_in]``."""
    from torch.func import jvp, vmap

    b, steps, dim = x.shape

    def push(tangent: torch.Tensor) -> torch.Tensor:  # tangent [T, D] shared by all rows
        _, out = jvp(lambda z: _sequence_call(fn, z), (x,), (tangent.expand(b, steps, dim),))
        return out.pow(2).sum(-1)  # [B, T_out]

    total = steps * dim
    sq = x.new_zeros(b, steps, steps)  # [B, T_out, T_in]
    with torch.no_grad():
        for start in range(0, total, chunk):
            ids = torch.arange(start, min(start + chunk, total), device=x.device)
            tangents = F.one_hot(ids, total).to(x.dtype).view(-1, steps, dim)
            out = vmap(push)(tangents)  # [n, B, T_out]
            sq.index_add_(2, ids // dim, out.permute(1, 2, 0))
    return sq.sqrt()


def _sensitivity_reverse(fn: SeqFn, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Reverse mode: one-hot cotangents over (t, k), one vmapped backward per chunk. ``[B, T_out, T_in]``."""
    b, steps, _ = x.shape
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        y = _sequence_call(fn, xg)
        k = y.shape[2]
        total = steps * k
        sq = x.new_zeros(b, steps, steps)
        for start in range(0, total, chunk):
            ids = torch.arange(start, min(start + chunk, total), device=x.device)
            cot = F.one_hot(ids, total).to(y.dtype).view(-1, 1, steps, k).expand(-1, b, steps, k)
            try:
                (g,) = torch.autograd.grad(y, xg, cot, retain_graph=True, is_grads_batched=True)
            except (RuntimeError, NotImplementedError):
                g = torch.stack([torch.autograd.grad(y, xg, c, retain_graph=True)[0] for c in cot])
            sq.index_add_(1, ids // k, g.detach().pow(2).sum(-1).permute(1, 0, 2))  # g [n, B, T_in, D]
    return sq.sqrt()


def sensitivity_matrix(fn: SeqFn, inputs: torch.Tensor, mode: str = "auto", chunk_size: int = 256) -> torch.Tensor:
    """``S[b, t, s] = ||dy[b, t, :] / dx[b, s, :]||_F``, shaped ``[B, T_out, T_in]``.

    Args:
        fn: ``[B, T, D] -> [B, T, K]``.
        inputs: float ``[B, T, D]`` (not mutated).
        mode: ``"forward"`` (``T * D`` vmapped JVPs), ``"reverse"`` (``T * K`` vmapped VJPs) or
            ``"auto"``: forward when ``D <= K``. Forward mode falls back to reverse when an operator
            has no forward derivative.
        chunk_size: tangents/cotangents per vectorised pass (memory ~ chunk_size x one forward).
    """
    if mode not in ("auto", "forward", "reverse"):
        raise AnalysisError(f"mode must be 'auto', 'forward' or 'reverse', got '{mode}'")
    if chunk_size < 1:
        raise AnalysisError(f"chunk_size must be positive, got {chunk_size}")
    x = _check_sequence(inputs)
    with _native_kernels(x.device):
        if mode == "auto":
            with torch.no_grad():
                k = _sequence_call(fn, x).shape[2]
            mode = "forward" if x.shape[2] <= k else "reverse"
        if mode == "forward":
            try:
                return _sensitivity_forward(fn, x, chunk_size)
            except (NotImplementedError, RuntimeError):
                pass  # an operator without a forward derivative: use reverse mode
        return _sensitivity_reverse(fn, x, chunk_size)


def cue_sensitivity_ratio(matrix: torch.Tensor, t: int = -1) -> float:
    """``S[t, 0] / max_{s > 0} S[t, s]`` for a ``[T_out, T_in]`` sensitivity matrix ``S``.

    Above 1 when output step ``t`` depends more on input step 0 (where a cue-recall task shows its cue,
    :mod:`heed.envs.cue`) than on any later input step.
    """
    row = matrix[t]
    return float(row[0] / row[1:].max().clamp_min(1e-12))


__all__ = ["cue_sensitivity_ratio", "sensitivity_matrix", "sequential_jacobian"]
