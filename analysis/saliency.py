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
- :func:`perturbed_outputs`, :func:`perturbation_saliency` (Greydanus et al. 2018) and
  :func:`occlusion_saliency` (Zeiler & Fergus 2014): forward passes on batches of masked images.
- :func:`captum_saliency`: Captum's own implementation of a method, by name.

The table of methods with one signature is :data:`heed.analysis.saliency_methods.SALIENCY_METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
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


# ---------------------------------------------------------------- perturbations of image batches


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    grid = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` (reflect padding), shape kept."""
    k = _gaussian_kernel(sigma, images.device)
    n, c, h, w = images.shape
    pad = min(k.numel() // 2, h - 1, w - 1)
    k = k[k.numel() // 2 - pad : k.numel() // 2 + pad + 1]
    k = k / k.sum()
    flat = images.reshape(n * c, 1, h, w)
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


def episode_background(observations, max_frames: int = 256, window: int = 0) -> torch.Tensor:
    """The recording's background screen: a per-pixel median over observations ``[N, C, H, W]``.

    Every channel of every chosen observation counts as one sample of the screen (stacked frames are
    the same screen at other times), so an object that moves drops out and the static playfield
    (walls, score, road, scenery) remains: the ``background`` of :func:`perturbation_saliency`.
    ``window = 0``: one ``[H, W]`` median over up to ``max_frames`` evenly spaced observations.
    ``window > 0``: ``[N, H, W]``, each observation getting the median of its own block of ``window``
    consecutive observations (for games whose scenery changes, e.g. Enduro's day, night and fog).
    Pixel values as given (uint8 stays in 0..255).
    """
    obs = observations if torch.is_tensor(observations) else torch.as_tensor(np.asarray(observations))
    if obs.dim() != 4 or obs.shape[0] == 0:
        raise AnalysisError(f"episode_background needs observations [N, C, H, W], got {tuple(obs.shape)}")
    if max_frames < 1 or window < 0:
        raise AnalysisError(f"max_frames must be positive and window >= 0, got {max_frames} and {window}")

    def median(block: torch.Tensor) -> torch.Tensor:
        pick = torch.linspace(0, block.shape[0] - 1, min(max_frames, block.shape[0])).round().long()
        return block[pick].reshape(-1, *block.shape[-2:]).float().median(dim=0).values  # [H, W]

    if window == 0 or window >= obs.shape[0]:
        bg = median(obs)
        return bg if window == 0 else bg.expand(obs.shape[0], -1, -1)
    return torch.cat([median(b)[None].expand(len(b), -1, -1) for b in obs.split(window)])


def box_masks(height: int, width: int, window: int = 5, stride: int = 5, device=None) -> torch.Tensor:
    """Occlusion windows ``[N, H, W]`` (1 inside a ``window x window`` box) on a ``stride`` grid.

    Boxes start at 0, ``stride``, ... and the last one in each direction is moved to touch the border,
    so every pixel is covered.
    """
    def starts(size: int) -> list[int]:
        w = min(window, size)
        return sorted({min(s, size - w) for s in range(0, size, stride)})

    masks = []
    for r in starts(height):
        for c in starts(width):
            m = torch.zeros(height, width, device=device)
            m[r : r + window, c : c + window] = 1.0
            masks.append(m)
    return torch.stack(masks)


def _channel_gate(channels: int, newest_only: bool, device) -> torch.Tensor:
    """``[1, C, 1, 1]``: 1 for the perturbed channels (all, or only the last = newest stacked frame)."""
    gate = torch.zeros(1, channels, 1, 1, device=device)
    gate[:, -1 if newest_only else slice(None)] = 1.0
    return gate


@torch.no_grad()
def perturbed_outputs(
    fn: Fn,
    x: torch.Tensor,
    masks: torch.Tensor,
    replacement: torch.Tensor,
    batch_size: int = 256,
    newest_only: bool = False,
) -> torch.Tensor:
    """``[B, N, K]``: ``fn`` on ``I' = I (1 - M_n) + R M_n`` for every row and every mask.

    ``x, replacement [B, C, H, W]`` float; ``masks [N, H, W]`` in [0, 1], applied to every channel
    (or, with ``newest_only``, to the last channel only: the newest of stacked frames).
    The perturbed images of one row go through ``fn`` ``batch_size`` at a time.
    """
    gate = _channel_gate(x.shape[1], newest_only, x.device)
    out = []
    for i in range(x.shape[0]):
        rows = []
        for s in range(0, masks.shape[0], batch_size):
            m = masks[s : s + batch_size, None] * gate  # [n, C, H, W]
            rows.append(call(fn, x[i] * (1 - m) + replacement[i] * m))
        out.append(torch.cat(rows))
    return torch.stack(out)


def _image_inputs(fn: Fn, inputs: torch.Tensor, what: str) -> torch.Tensor:
    check_input_shape(fn, inputs)
    if inputs.dim() != 4:
        raise AnalysisError(f"{what} needs images [B, C, H, W], got {tuple(inputs.shape)}")
    return float_inputs(inputs)


@torch.no_grad()
def perturbation_saliency(
    fn: Fn,
    inputs: torch.Tensor,
    target: Target = None,
    radius: float = 5.0,
    stride: int = 5,
    blur_sigma: float = 3.0,
    batch_size: int = 256,
    newest_only: bool = False,
    background: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greydanus et al. (2018) perturbation saliency of image batches ``[B, C, H, W]``.

    For each grid centre (stride ``stride``), ``I' = I (1 - M) + R M`` with ``M`` a Gaussian
    mask of std ``radius`` on every channel (all stacked frames; with ``newest_only`` the last
    channel only), and ``S = 1/2 (y_t(I) - y_t(I'))^2`` for each target output ``t`` (the paper's
    score of a vector output is the sum of these over its entries). The score grid is upsampled
    (bilinear) to ``H x W`` and given to the perturbed channels (the others get 0). All targets
    share the perturbed forward passes (``B * N`` images, ``N`` = grid points).

    ``R`` is ``blur(I)`` (Gaussian, std ``blur_sigma``: the paper's), or ``background`` when given
    (``[H, W]``, ``[C, H, W]`` or ``[B, C, H, W]`` pixels, e.g. :func:`episode_background`: the
    screen without its moving objects). Towards a background, a region that shows only background
    scores 0 (up to rounding) and a region holding an object scores what removing the object changes; the
    blur instead turns static high-contrast edges (walls, score digits) into patterns the network
    reacts to (docs/analysis.md, "Which method").
    """
    x = _image_inputs(fn, inputs, "perturbation saliency")
    b, c, h, w = x.shape
    clean = call(fn, x)  # one forward pass on the clean images, for the targets and the base outputs
    idx, single = resolve_targets(clean, target)
    masks, rows, cols = perturbation_masks(h, w, radius, stride, x.device)
    base = clean.gather(1, idx)  # [B, M]
    if background is None:
        replacement = gaussian_blur(x, blur_sigma)
    else:
        bg = torch.as_tensor(background, device=x.device).to(x.dtype)
        try:
            replacement = bg.expand_as(x)  # [H, W], [C, H, W], [1 or B, 1 or C, H, W]
        except RuntimeError:
            raise AnalysisError(f"background {tuple(bg.shape)} does not fit images {tuple(x.shape)}") from None
    out = perturbed_outputs(fn, x, masks, replacement, batch_size, newest_only)  # [B, N, K]
    picked = out.gather(2, idx[:, None, :].expand(-1, out.shape[1], -1))  # [B, N, M]
    scores = 0.5 * (picked - base[:, None]).pow(2)
    grid = scores.permute(0, 2, 1).reshape(b * idx.shape[1], 1, len(rows), len(cols))
    up = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
    gate = _channel_gate(c, newest_only, x.device)[None]  # [1, 1, C, 1, 1]
    return finish(up.reshape(b, idx.shape[1], 1, h, w) * gate, single)


@torch.no_grad()
def occlusion_saliency(
    fn: Fn,
    inputs: torch.Tensor,
    target: Target = None,
    window: int = 5,
    stride: int = 5,
    baseline: float = 0.0,
    batch_size: int = 256,
    newest_only: bool = False,
) -> torch.Tensor:
    """Occlusion (Zeiler & Fergus 2014) of image batches ``[B, C, H, W]``, as Captum's ``Occlusion``.

    Each ``window x window`` box (all channels, or the last only with ``newest_only``) is set to
    ``baseline``; the drop ``y_t(I) - y_t(I_occluded)`` is given to every pixel of the box and
    averaged over the boxes that cover a pixel. Signed; all targets share the ``B * N`` occluded
    forward passes.
    """
    x = _image_inputs(fn, inputs, "occlusion")
    b, c, h, w = x.shape
    clean = call(fn, x)
    idx, single = resolve_targets(clean, target)
    masks = box_masks(h, w, window, stride, x.device)  # [N, H, W]
    base = clean.gather(1, idx)  # [B, M]
    out = perturbed_outputs(fn, x, masks, torch.full_like(x, baseline), batch_size, newest_only)
    drop = base[:, None] - out.gather(2, idx[:, None, :].expand(-1, out.shape[1], -1))  # [B, N, M]
    attr = torch.einsum("bnm,nhw->bmhw", drop, masks) / masks.sum(0).clamp_min(1.0)
    return finish(attr[:, :, None] * _channel_gate(c, newest_only, x.device)[None], single)


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
    "box_masks",
    "captum_saliency",
    "check_input_shape",
    "episode_background",
    "gaussian_blur",
    "gradients",
    "jacobian_saliency",
    "multi_target_saliency",
    "occlusion_saliency",
    "perturbation_masks",
    "perturbation_saliency",
    "perturbed_outputs",
    "resolve_targets",
]
