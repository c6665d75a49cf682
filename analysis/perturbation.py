"""Perturbation saliency of image batches: forward passes on masked copies of each image.

- :func:`perturbation_saliency` (Greydanus et al. 2018): each region blurred (or set to the recording's
  background, :func:`episode_background`) under a Gaussian mask; score ``1/2 (y(I) - y(I'))^2``.
- :func:`occlusion_saliency` (Zeiler & Fergus 2014): each box set to a constant; score the drop.
- :func:`perturbed_outputs`: the shared engine, ``fn`` on ``I (1 - M) + R M`` for every mask.

Same conventions as :mod:`heed.analysis.saliency` (``fn: [B, ...] -> [B, K]``, targets resolved by
:func:`heed.analysis.saliency.resolve_targets`, inputs never mutated).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from heed.analysis.saliency import (
    AnalysisError,
    Fn,
    Target,
    call,
    check_input_shape,
    finish,
    float_inputs,
    resolve_targets,
)


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


def _clean_pass(
    fn: Fn, inputs: torch.Tensor, target: Target, what: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Check images ``[B, C, H, W]`` and run ``fn`` on them once: ``(x float, idx [B, M], base [B, M],
    single)``, ``base = y[b, idx[b, m]]`` the clean outputs every perturbed pass is compared with."""
    check_input_shape(fn, inputs)
    if inputs.dim() != 4:
        raise AnalysisError(f"{what} needs images [B, C, H, W], got {tuple(inputs.shape)}")
    x = float_inputs(inputs)
    clean = call(fn, x)
    idx, single = resolve_targets(clean, target)
    return x, idx, clean.gather(1, idx), single


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
    x, idx, base, single = _clean_pass(fn, inputs, target, "perturbation saliency")
    b, c, h, w = x.shape
    masks, rows, cols = perturbation_masks(h, w, radius, stride, x.device)
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
    x, idx, base, single = _clean_pass(fn, inputs, target, "occlusion")
    b, c, h, w = x.shape
    masks = box_masks(h, w, window, stride, x.device)  # [N, H, W]
    out = perturbed_outputs(fn, x, masks, torch.full_like(x, baseline), batch_size, newest_only)
    drop = base[:, None] - out.gather(2, idx[:, None, :].expand(-1, out.shape[1], -1))  # [B, N, M]
    attr = torch.einsum("bnm,nhw->bmhw", drop, masks) / masks.sum(0).clamp_min(1.0)
    return finish(attr[:, :, None] * _channel_gate(c, newest_only, x.device)[None], single)


__all__ = [
    "box_masks",
    "episode_background",
    "gaussian_blur",
    "occlusion_saliency",
    "perturbation_masks",
    "perturbation_saliency",
    "perturbed_outputs",
]
