"""Saliency primitives for any callable or ``nn.Module`` on a batch: gradients, perturbations, Captum.

Every function takes ``fn: inputs [B, ...] -> outputs [B, K]`` (or ``[B]``), treats dimension 0 as
the batch, never mutates ``inputs`` and leaves its ``requires_grad`` alone. Rows of a batch must not
interact inside ``fn`` (true for a network in eval mode), so the gradient of ``sum_b y[b, t_b]``
holds every row's own gradient.

Targets, the same everywhere (:func:`resolve_targets`): ``None`` (the single output, else each
row's argmax), an int, ``[B]`` indices (one per row) -> a result shaped like ``inputs``; ``[B, M]``
indices (M targets per row, sharing the forward pass) -> ``[B, M, *inputs.shape[1:]]``.

- :func:`gradients`: ``d y[b, t] / d x[b]`` (signed), one forward and one backward vmapped over the
  M one-hot cotangents (``torch.autograd.grad(..., is_grads_batched=True)``).
- :func:`jacobian_saliency` / :func:`multi_target_saliency`: ``|dy/dx|`` (Simonyan et al. 2014).
- perturbation (Greydanus et al. 2018) and occlusion (Zeiler & Fergus 2014): forward passes on batches
  of masked images, in :mod:`heed.analysis.perturbation`.
- :func:`captum_saliency`: Captum's own implementation of a method, by name.

The table of methods with one signature is :data:`heed.analysis.saliency_methods.SALIENCY_METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from heed.envs.errors import HeedError, suggest

Fn = Callable[[torch.Tensor], torch.Tensor]
Target = int | Sequence[int] | torch.Tensor | None


class AnalysisError(HeedError, ValueError):
    """Bad input to an analysis function (a :class:`HeedError`: the CLIs print it as one line)."""


def owner_module(fn: Fn) -> nn.Module | None:
    """The module behind ``fn`` (itself, or the ``self`` of a bound method such as ``net.value``)."""
    owner = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def check_input_shape(fn: Fn, inputs: torch.Tensor) -> None:
    """Raise :class:`AnalysisError` when ``inputs [B, ...]`` cannot be what ``fn``'s model takes.

    Uses the model's ``observation_space.shape`` when it has one (Stable-Baselines3 networks).
    """
    if not torch.is_tensor(inputs) or inputs.dim() < 1:
        raise AnalysisError(f"inputs must be a batched tensor [B, ...], got {type(inputs).__name__}")
    if inputs.shape[0] == 0:
        raise AnalysisError("inputs hold an empty batch (B = 0)")
    space = getattr(owner_module(fn), "observation_space", None)
    expected = getattr(space, "shape", None)
    if expected is not None and tuple(inputs.shape[1:]) != tuple(expected):
        raise AnalysisError(
            f"the model takes observations shaped {tuple(expected)} (batched: [B, {', '.join(map(str, expected))}]),"
            f" got inputs shaped {tuple(inputs.shape)}"
        )


def float_inputs(inputs: torch.Tensor) -> torch.Tensor:
    """A detached float copy of ``inputs`` (uint8 pixels become float pixel values)."""
    dtype = inputs.dtype if inputs.is_floating_point() else torch.float32
    return inputs.detach().to(dtype).clone()


def call(fn: Fn, x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` as ``[B, K]``, with a clear error when ``fn`` rejects ``x``'s shape."""
    try:
        y = fn(x)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnalysisError(f"the model could not take inputs shaped {tuple(x.shape)}: {first}") from None
    if not torch.is_tensor(y) or y.dim() == 0 or y.shape[0] != x.shape[0]:
        raise AnalysisError(f"fn must return [B, K] or [B] for inputs [B, ...]; got {getattr(y, 'shape', y)}")
    return y.reshape(y.shape[0], -1)


def resolve_targets(y: torch.Tensor, target: Target) -> tuple[torch.Tensor, bool]:
    """``(idx [B, M], single)``: the target indices per row, and whether the caller asked for one.

    ``None`` -> 0 for a single output, else the argmax of ``y [B, K]``; an int or ``[B]`` -> M = 1;
    ``[B, M]`` -> M targets per row (``single`` is False: results get an M axis).
    """
    batch, width = y.shape
    if target is None:
        idx = torch.zeros(batch, dtype=torch.long, device=y.device) if width == 1 else y.detach().argmax(1)
        idx, single = idx[:, None], True
    elif isinstance(target, int):
        idx, single = torch.full((batch, 1), target, dtype=torch.long, device=y.device), True
    else:
        idx = torch.as_tensor(target, dtype=torch.long, device=y.device)
        single = idx.dim() <= 1
        if single:
            idx = idx.reshape(-1)
            idx = (idx.expand(batch) if idx.numel() == 1 else idx)[:, None]
        if idx.dim() != 2 or idx.shape[0] != batch:
            raise AnalysisError(
                f"target must be an int, [B] or [B, M] indices for a batch of {batch}, got shape {tuple(idx.shape)}"
            )
    if int(idx.min()) < 0 or int(idx.max()) >= width:
        raise AnalysisError(f"target {idx.reshape(-1).tolist()[:8]} out of range for {width} outputs")
    return idx, single


def finish(attr: torch.Tensor, single: bool) -> torch.Tensor:
    """``[B, M, ...]`` -> ``[B, ...]`` when one target per row was asked for; detached."""
    attr = attr.detach()
    return attr[:, 0] if single else attr


def gradients(fn: Fn, points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``[N, M, ...]`` with entry ``[n, m] = d fn(z)[n, idx[n, m]] / dz[n]`` at ``z = points [N, ...]``.

    One forward, then one backward vectorised over the M one-hot cotangents (falls back to M
    backwards if an operator has no batching rule).
    """
    with torch.enable_grad():
        z = points.detach().requires_grad_(True)
        y = call(fn, z)
        cot = F.one_hot(idx.t(), y.shape[1]).to(y.dtype)  # [M, N, K]
        if cot.shape[0] == 1:
            (g,) = torch.autograd.grad(y, z, cot[0])
            return g.unsqueeze(1)
        try:
            (g,) = torch.autograd.grad(y, z, cot, is_grads_batched=True)
        except (RuntimeError, NotImplementedError):
            g = torch.stack([torch.autograd.grad(y, z, c, retain_graph=True)[0] for c in cot])
    return g.transpose(0, 1)


def jacobian_saliency(fn: Fn, inputs: torch.Tensor, target: Target = None, absolute: bool = True) -> torch.Tensor:
    """Gradient saliency ``|d fn(x)[b, target_b] / d x[b]|``, shaped like ``inputs`` (see targets above).

    Args:
        fn: any callable or module ``[B, ...] -> [B, K]`` (or ``[B]``).
        inputs: ``[B, ...]``; uint8 pixels are differentiated as float pixel values.
        target: ``None`` (the single output, or each row's argmax), an int, ``[B]`` or ``[B, M]``.
        absolute: ``|g|`` (default, as Simonyan et al. 2014) or the signed gradient.
    """
    check_input_shape(fn, inputs)
    x = float_inputs(inputs)
    with torch.no_grad():
        idx, single = resolve_targets(call(fn, x), target)
    g = finish(gradients(fn, x, idx), single)
    return g.abs() if absolute else g


def multi_target_saliency(fn: Fn, inputs: torch.Tensor, targets, absolute: bool = True) -> torch.Tensor:
    """``[B, M, *inputs.shape[1:]]``: gradient saliency for ``targets`` (``[M]`` shared, or ``[B, M]``)."""
    idx = torch.as_tensor(targets, dtype=torch.long)
    if idx.dim() == 1:
        idx = idx.unsqueeze(0).expand(inputs.shape[0], -1)
    return jacobian_saliency(fn, inputs, idx, absolute)


# ---------------------------------------------------------------- Captum, the reference implementations

CAPTUM_METHODS = ("Saliency", "IntegratedGradients", "NoiseTunnel", "GuidedBackprop", "InputXGradient", "Occlusion")


class _CallableModule(nn.Module):
    """Wrap a bound method of a module so that Captum's module hooks (GuidedBackprop) see its layers."""

    def __init__(self, fn: Fn) -> None:
        super().__init__()
        self.owner = owner_module(fn)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def captum_saliency(
    fn: Fn, inputs: torch.Tensor, method: str = "Saliency", target: Target = None, **kwargs
) -> torch.Tensor:
    """Captum's attribution ``method`` (by name, see :data:`CAPTUM_METHODS`), shaped like ``inputs``.

    ``kwargs`` go to ``attribute`` (e.g. ``n_steps`` for IntegratedGradients, ``nt_samples``/``stdevs``
    for NoiseTunnel, which wraps Saliency as SmoothGrad, noise std 0.1 of the input range; ``sliding_window_shapes``/``strides`` for
    Occlusion, default a 5x5 window with stride 5 over every channel of ``[B, C, H, W]`` inputs,
    single features otherwise). ``target`` as in :func:`resolve_targets`; ``[B, M]`` targets cost M calls.
    Each call runs with the global generator seeded 0 (restored after), so NoiseTunnel's maps repeat.
    """
    import captum.attr as ca

    if method not in CAPTUM_METHODS:
        raise AnalysisError(f"unknown Captum method '{method}'.{suggest(method, CAPTUM_METHODS)}")
    check_input_shape(fn, inputs)
    x = float_inputs(inputs).requires_grad_(True)
    with torch.no_grad():
        idx, single = resolve_targets(call(fn, x.detach()), target)
    module = fn if isinstance(fn, nn.Module) else _CallableModule(fn)
    kwargs = dict(kwargs)
    if method == "Saliency":
        kwargs.setdefault("abs", True)
        algo = ca.Saliency(module)
    elif method == "IntegratedGradients":
        algo = ca.IntegratedGradients(module)
    elif method == "NoiseTunnel":
        kwargs.setdefault("nt_type", "smoothgrad")
        kwargs.setdefault("nt_samples", 8)
        kwargs.setdefault("stdevs", float(x.detach().max() - x.detach().min()) * 0.1 + 1e-8)  # as heed's smoothgrad
        algo = ca.NoiseTunnel(ca.Saliency(module))
    elif method == "GuidedBackprop":
        algo = ca.GuidedBackprop(module)
    elif method == "InputXGradient":
        algo = ca.InputXGradient(module)
    else:
        window = (x.shape[1], min(5, x.shape[2]), min(5, x.shape[3])) if x.dim() == 4 else (1,) * (x.dim() - 1)
        kwargs.setdefault("sliding_window_shapes", window)
        kwargs.setdefault("strides", window)
        algo = ca.Occlusion(module)
    attrs = []
    for m in range(idx.shape[1]):
        with torch.random.fork_rng(devices=[]):  # NoiseTunnel draws from the global generator: seed it
            torch.manual_seed(0)
            attrs.append(algo.attribute(x, target=idx[:, m], **kwargs).detach())
    return finish(torch.stack(attrs, dim=1), single)


__all__ = [
    "CAPTUM_METHODS",
    "AnalysisError",
    "captum_saliency",
    "check_input_shape",
    "gradients",
    "jacobian_saliency",
    "multi_target_saliency",
    "resolve_targets",
]
