"""Saliency for any callable or ``nn.Module`` on a batch: gradients, Captum's methods, perturbation.

Every function takes ``fn: inputs [B, ...] -> outputs [B, K]`` (or ``[B]``), treats dimension 0 as
the batch, returns a tensor shaped like ``inputs`` (float), never mutates ``inputs`` and leaves its
``requires_grad`` alone. Rows of a batch must not interact inside ``fn`` (true for a network in eval
mode), so the gradient of ``sum_b y[b, target_b]`` holds every row's own gradient.

- :func:`jacobian_saliency`: ``|dy[b, target_b] / dx[b]|`` in one forward and one backward.
- :func:`multi_target_saliency`: several targets per row at once: one forward, then a backward
  vectorised over the targets' one-hot cotangents (``torch.autograd.grad(..., is_grads_batched=True)``,
  i.e. ``vmap`` over vector-Jacobian products), not one backward per frame per target.
- :func:`dueling_saliency`: the two maps of Wang et al. (2016): ``|dV(s)/ds|`` and
  ``|dA(s, argmax_a A(s, a))/ds|``, from one forward through the shared trunk when ``streams_fn`` is
  given.
- :func:`captum_saliency`: Captum's methods by name (Saliency, IntegratedGradients, NoiseTunnel
  (SmoothGrad), GuidedBackprop, InputXGradient, Occlusion).
- :func:`perturbation_saliency`: Greydanus et al. (2018): blur a Gaussian-masked patch,
  ``I' = I (1 - M) + blur(I) M``, score ``S = 1/2 ||L(I) - L(I')||^2`` on a grid (stride 5, mask
  sigma 5, blur sigma 3), all mask positions of a frame batched through ``fn``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from heed.envs.errors import HeedError, suggest

Fn = Callable[[torch.Tensor], torch.Tensor]
Target = int | Sequence[int] | torch.Tensor | None


class AnalysisError(HeedError, ValueError):
    """Bad input to an analysis function (a :class:`HeedError`: the CLIs print it as one line)."""


def _owner(fn: Fn) -> object:
    """The module behind ``fn`` (itself, or the ``self`` of a bound method such as ``net.value``)."""
    return fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)


def check_input_shape(fn: Fn, inputs: torch.Tensor) -> None:
    """Raise :class:`AnalysisError` when ``inputs [B, ...]`` cannot be what ``fn``'s model takes.

    Uses the model's ``observation_space.shape`` when it has one (Stable-Baselines3 networks).
    """
    if not torch.is_tensor(inputs) or inputs.dim() < 1:
        raise AnalysisError(f"inputs must be a batched tensor [B, ...], got {type(inputs).__name__}")
    if inputs.shape[0] == 0:
        raise AnalysisError("inputs hold an empty batch (B = 0)")
    space = getattr(_owner(fn), "observation_space", None)
    expected = getattr(space, "shape", None)
    if expected is not None and tuple(inputs.shape[1:]) != tuple(expected):
        raise AnalysisError(
            f"the model takes observations shaped {tuple(expected)} (batched: [B, {', '.join(map(str, expected))}]),"
            f" got inputs shaped {tuple(inputs.shape)}"
        )


def _float_leaf(inputs: torch.Tensor) -> torch.Tensor:
    """A float copy of ``inputs`` that requires grad (uint8 pixels become float pixel values)."""
    dtype = inputs.dtype if inputs.is_floating_point() else torch.float32
    return inputs.detach().to(dtype).clone().requires_grad_(True)


def _call(fn: Fn, x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` as ``[B, K]``, with a clear error when ``fn`` rejects ``x``'s shape."""
    try:
        y = fn(x)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnalysisError(f"the model could not take inputs shaped {tuple(x.shape)}: {first}") from None
    if not torch.is_tensor(y) or y.dim() == 0 or y.shape[0] != x.shape[0]:
        raise AnalysisError(f"fn must return [B, K] or [B] for inputs [B, ...]; got {getattr(y, 'shape', y)}")
    return y.reshape(y.shape[0], -1)


def _resolve_targets(y: torch.Tensor, target: Target) -> torch.Tensor:
    """Per-row target indices ``[B]`` (``None`` -> 0 for one output, else argmax of the output)."""
    batch, width = y.shape
    if target is None:
        idx = torch.zeros(batch, dtype=torch.long, device=y.device) if width == 1 else y.detach().argmax(1)
    elif isinstance(target, int):
        idx = torch.full((batch,), target, dtype=torch.long, device=y.device)
    else:
        idx = torch.as_tensor(target, dtype=torch.long, device=y.device).reshape(-1)
        if idx.numel() == 1:
            idx = idx.expand(batch)
        if idx.numel() != batch:
            raise AnalysisError(f"target must be an int or hold one index per row ({batch}), got {idx.numel()}")
    if int(idx.min()) < 0 or int(idx.max()) >= width:
        raise AnalysisError(f"target {idx.tolist()[:8]} out of range for {width} outputs")
    return idx


def _batched_vjp(y: torch.Tensor, x: torch.Tensor, cotangents: torch.Tensor) -> torch.Tensor:
    """``[M, *x.shape]``: the vector-Jacobian products of ``y`` with each of ``cotangents [M, *y.shape]``.

    One backward vectorised over M (vmap); falls back to M backwards if an operator has no
    batching rule.
    """
    if cotangents.shape[0] == 1:
        (g,) = torch.autograd.grad(y, x, cotangents[0])
        return g.unsqueeze(0)
    try:
        (g,) = torch.autograd.grad(y, x, cotangents, retain_graph=True, is_grads_batched=True)
        return g
    except (RuntimeError, NotImplementedError):
        grads = [torch.autograd.grad(y, x, c, retain_graph=True)[0] for c in cotangents]
        return torch.stack(grads)


def multi_target_saliency(fn: Fn, inputs: torch.Tensor, targets: torch.Tensor | Sequence, absolute: bool = True):
    """Gradient saliency for several targets per row: ``[B, M, *inputs.shape[1:]]``.

    Args:
        fn: ``[B, ...] -> [B, K]``.
        inputs: ``[B, ...]`` (uint8 or float; not mutated).
        targets: ``[M]`` output indices shared by all rows, or ``[B, M]`` per row.
        absolute: return ``|g|`` (default) or the signed gradient.

    Entry ``[b, m]`` is ``d y[b, targets[b, m]] / d inputs[b]``: one forward, one vmapped backward.
    """
    check_input_shape(fn, inputs)
    with torch.enable_grad():
        x = _float_leaf(inputs)
        y = _call(fn, x)
        idx = torch.as_tensor(targets, dtype=torch.long, device=y.device)
        idx = idx.unsqueeze(0).expand(y.shape[0], -1) if idx.dim() == 1 else idx
        if idx.shape[0] != y.shape[0] or int(idx.min()) < 0 or int(idx.max()) >= y.shape[1]:
            raise AnalysisError(f"targets shaped {tuple(idx.shape)} do not fit outputs shaped {tuple(y.shape)}")
        cot = F.one_hot(idx.t(), y.shape[1]).to(y.dtype)  # [M, B, K]
        grads = _batched_vjp(y, x, cot).transpose(0, 1)  # [B, M, ...]
    grads = grads.detach()
    return grads.abs() if absolute else grads


def jacobian_saliency(fn: Fn, inputs: torch.Tensor, target: Target = None, absolute: bool = True) -> torch.Tensor:
    """Gradient saliency ``|d fn(x)[b, target_b] / d x[b]|``, shaped like ``inputs``.

    Args:
        fn: any callable or module ``[B, ...] -> [B, K]`` (or ``[B]``).
        inputs: ``[B, ...]``; uint8 pixels are differentiated as float pixel values.
        target: ``None`` (the single output, or each row's argmax), an int, or ``[B]`` indices.
        absolute: ``|g|`` (default, as Simonyan et al. 2014) or the signed gradient.
    """
    check_input_shape(fn, inputs)
    with torch.enable_grad():
        x = _float_leaf(inputs)
        y = _call(fn, x)
        idx = _resolve_targets(y, target)
        (g,) = torch.autograd.grad(y.gather(1, idx[:, None]).sum(), x)
    g = g.detach()
    return g.abs() if absolute else g


class DuelingSaliency(NamedTuple):
    """Value-stream and advantage-stream saliency, each shaped like the observations."""

    value: torch.Tensor
    advantage: torch.Tensor


def dueling_saliency(
    value_fn: Fn,
    advantage_fn: Fn,
    obs: torch.Tensor,
    streams_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> DuelingSaliency:
    """Wang et al. (2016): ``|dV(s)/ds|`` and ``|dA(s, a*)/ds|`` with ``a* = argmax_a A(s, a)``.

    Args:
        value_fn: ``obs [B, ...] -> V [B, 1]`` (e.g. ``net.value``).
        advantage_fn: ``obs -> A [B, n_actions]`` (e.g. ``net.advantage``).
        obs: ``[B, ...]`` observations (uint8 or float pixels; not mutated).
        streams_fn: optional ``obs -> (V, A)`` sharing one trunk pass (e.g. ``net.streams``).

    Both maps come from one vmapped backward over the two cotangents.
    """
    check_input_shape(value_fn, obs)

    def both(x: torch.Tensor) -> torch.Tensor:
        if streams_fn is not None:
            v, a = streams_fn(x)
        else:
            v, a = value_fn(x), advantage_fn(x)
        v = v.reshape(v.shape[0], -1)[:, :1]
        best = a.detach().argmax(dim=1, keepdim=True)
        return torch.cat([v, a.gather(1, best)], dim=1)  # [B, 2]

    both_sal = multi_target_saliency(both, obs, [0, 1])  # [B, 2, ...]
    return DuelingSaliency(both_sal[:, 0], both_sal[:, 1])


CAPTUM_METHODS = ("Saliency", "IntegratedGradients", "NoiseTunnel", "GuidedBackprop", "InputXGradient", "Occlusion")


class _CallableModule(nn.Module):
    """Wrap a bound method of a module so that Captum's module hooks (GuidedBackprop) see its layers."""

    def __init__(self, fn: Fn) -> None:
        super().__init__()
        owner = _owner(fn)
        self.owner = owner if isinstance(owner, nn.Module) else None
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def captum_saliency(
    fn: Fn, inputs: torch.Tensor, method: str = "Saliency", target: Target = None, **kwargs
) -> torch.Tensor:
    """Captum's attribution ``method`` (by name, see :data:`CAPTUM_METHODS`), shaped like ``inputs``.

    ``kwargs`` go to ``attribute`` (e.g. ``n_steps`` for IntegratedGradients, ``nt_samples``/``stdevs``
    for NoiseTunnel, which wraps Saliency as SmoothGrad; ``sliding_window_shapes``/``strides`` for
    Occlusion, default a 5x5 window with stride 5 over every channel of ``[B, C, H, W]`` inputs,
    single features otherwise). ``target`` as in :func:`jacobian_saliency` (``None`` -> argmax).
    """
    import captum.attr as ca

    if method not in CAPTUM_METHODS:
        raise AnalysisError(f"unknown Captum method '{method}'.{suggest(method, CAPTUM_METHODS)}")
    check_input_shape(fn, inputs)
    x = _float_leaf(inputs)
    with torch.no_grad():
        idx = _resolve_targets(_call(fn, x.detach()), target)
    module = fn if isinstance(fn, nn.Module) else _CallableModule(fn)
    if method == "Saliency":
        kwargs.setdefault("abs", True)
        attr = ca.Saliency(module).attribute(x, target=idx, **kwargs)
    elif method == "IntegratedGradients":
        attr = ca.IntegratedGradients(module).attribute(x, target=idx, **kwargs)
    elif method == "NoiseTunnel":
        kwargs.setdefault("nt_type", "smoothgrad")
        kwargs.setdefault("nt_samples", 8)
        kwargs.setdefault("stdevs", float(x.detach().std()) * 0.1 + 1e-8)
        attr = ca.NoiseTunnel(ca.Saliency(module)).attribute(x, target=idx, **kwargs)
    elif method == "GuidedBackprop":
        attr = ca.GuidedBackprop(module).attribute(x, target=idx, **kwargs)
    elif method == "InputXGradient":
        attr = ca.InputXGradient(module).attribute(x, target=idx, **kwargs)
    else:
        if x.dim() == 4:
            window = (x.shape[1], min(5, x.shape[2]), min(5, x.shape[3]))
        else:
            window = (1,) * (x.dim() - 1)
        kwargs.setdefault("sliding_window_shapes", window)
        kwargs.setdefault("strides", window)
        attr = ca.Occlusion(module).attribute(x, target=idx, **kwargs)
    return attr.detach()


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    grid = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` (reflect padding), shape kept."""
    k = _gaussian_kernel(sigma, images.device)
    n, c, h, w = images.shape
    flat = images.reshape(n * c, 1, h, w)
    pad = k.numel() // 2
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)


def perturbation_masks(height: int, width: int, radius: float = 5.0, stride: int = 5, device=None):
    """Greydanus masks ``[N, H, W]`` (peak 1, Gaussian of std ``radius``) centred on a ``stride`` grid.

    Returns ``(masks, rows, cols)`` where ``rows``/``cols`` are the grid centres.
    """
    rows = torch.arange(0, height, stride, device=device)
    cols = torch.arange(0, width, stride, device=device)
    yy = torch.arange(height, device=device, dtype=torch.float32)
    xx = torch.arange(width, device=device, dtype=torch.float32)
    gy = torch.exp(-0.5 * ((yy[None, :] - rows[:, None]) / radius) ** 2)  # [R, H]
    gx = torch.exp(-0.5 * ((xx[None, :] - cols[:, None]) / radius) ** 2)  # [Cc, W]
    masks = gy[:, None, :, None] * gx[None, :, None, :]  # [R, Cc, H, W]
    return masks.reshape(-1, height, width), rows, cols


@torch.no_grad()
def perturbation_saliency(
    fn: Fn,
    inputs: torch.Tensor,
    radius: float = 5.0,
    stride: int = 5,
    blur_sigma: float = 3.0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Greydanus et al. (2018) perturbation saliency of ``fn`` for image batches ``[B, C, H, W]``.

    For each grid centre (stride ``stride``), ``I' = I (1 - M) + blur(I) M`` with ``M`` a Gaussian
    mask of std ``radius`` applied to every channel (all stacked frames), and
    ``S = 1/2 ||fn(I) - fn(I')||^2`` over all outputs of ``fn``. The score grid is upsampled
    (bilinear) to ``H x W`` and repeated over channels, so the result is shaped like ``inputs``.
    Mask positions of one frame are batched ``batch_size`` at a time through ``fn``.
    """
    check_input_shape(fn, inputs)
    if inputs.dim() != 4:
        raise AnalysisError(f"perturbation saliency needs images [B, C, H, W], got {tuple(inputs.shape)}")
    x = inputs.detach().float()
    b, c, h, w = x.shape
    masks, rows, cols = perturbation_masks(h, w, radius, stride, x.device)
    blurred = gaussian_blur(x, blur_sigma)
    base = _call(fn, x)  # [B, K]
    scores = torch.empty(b, masks.shape[0], device=x.device)
    for i in range(b):
        for s in range(0, masks.shape[0], batch_size):
            m = masks[s : s + batch_size, None]  # [n, 1, H, W]
            perturbed = x[i] * (1 - m) + blurred[i] * m  # [n, C, H, W]
            out = _call(fn, perturbed)
            scores[i, s : s + len(m)] = 0.5 * (out - base[i]).pow(2).sum(1)
    grid = scores.view(b, 1, len(rows), len(cols))
    up = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
    return up.expand(b, c, h, w).contiguous()


__all__ = [
    "CAPTUM_METHODS",
    "AnalysisError",
    "DuelingSaliency",
    "captum_saliency",
    "check_input_shape",
    "dueling_saliency",
    "gaussian_blur",
    "jacobian_saliency",
    "multi_target_saliency",
    "perturbation_masks",
    "perturbation_saliency",
]
