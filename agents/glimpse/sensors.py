"""Glimpse sensors: RAM's foveal multi-resolution retina and DRAW's Gaussian filterbank.

Coordinates. A location ``l = (x, y)`` lies in ``[-1, 1]^2``; ``x`` runs left to right over columns and
``y`` top to bottom over rows; ``(0, 0)`` is the image centre and ``(-1, -1)`` its top-left corner. In
continuous pixel coordinates (pixel ``j`` spans ``[j, j + 1)``) the centre is ``c = (l + 1) / 2 * size``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


def location_to_pixels(loc: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous pixel centre ``(cx [B], cy [B])`` of locations ``loc [B, 2]`` in ``[-1, 1]^2``."""
    cx = (loc[:, 0] + 1.0) * 0.5 * width
    cy = (loc[:, 1] + 1.0) * 0.5 * height
    return cx, cy


def foveal_glimpse(images: torch.Tensor, loc: torch.Tensor, patch: int, scales: int) -> torch.Tensor:
    """RAM's retina: ``scales`` square patches centred on ``loc``, each twice as wide as the last.

    Patch ``s`` (``s = 0 .. scales-1``) has width ``w_s = patch * 2**s``; its top-left pixel is
    ``round(c - w_s / 2)`` (round half up) and it is average-pooled by ``2**s`` down to ``patch x patch``.
    Pixels outside the image read as 0 (zero padding). Not differentiable in ``loc``.

    Args:
        images: ``[B, H, W]`` (or ``[B, 1, H, W]``).
        loc: ``[B, 2]`` locations ``(x, y)`` in ``[-1, 1]`` (values outside are allowed: more padding).
    Returns:
        ``[B, scales, patch, patch]``.
    """
    if images.dim() == 4:
        images = images[:, 0]
    b, h, w = images.shape
    widest = patch * 2 ** (scales - 1)
    pad = widest
    padded = F.pad(images, (pad, pad, pad, pad))  # [B, H + 2p, W + 2p]
    cx, cy = location_to_pixels(loc.to(images.dtype), h, w)
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = []
    for s in range(scales):
        size = patch * 2**s
        top = torch.floor(cy - size / 2 + 0.5).long().clamp(-pad, h + pad - size)  # [B]
        left = torch.floor(cx - size / 2 + 0.5).long().clamp(-pad, w + pad - size)
        offs = torch.arange(size, device=images.device)
        rows = (top[:, None] + offs[None] + pad)[:, :, None]  # [B, size, 1]
        cols = (left[:, None] + offs[None] + pad)[:, None, :]  # [B, 1, size]
        crop = padded[batch, rows, cols]  # [B, size, size]
        if s:
            crop = F.avg_pool2d(crop[:, None], 2**s)[:, 0]
        out.append(crop)
    return torch.stack(out, dim=1)


def glimpse_extent(loc: torch.Tensor, height: int, width: int, patch: int, scales: int) -> torch.Tensor:
    """Pixel boxes ``[B, scales, 4]`` as ``(left, top, width, height)`` of each retina patch (for drawing)."""
    cx, cy = location_to_pixels(loc, height, width)
    boxes = []
    for s in range(scales):
        size = patch * 2**s
        left = torch.floor(cx - size / 2 + 0.5)
        top = torch.floor(cy - size / 2 + 0.5)
        boxes.append(torch.stack([left, top, torch.full_like(left, size), torch.full_like(top, size)], -1))
    return torch.stack(boxes, dim=1)


class DrawParams(NamedTuple):
    """Attention parameters of DRAW's read, in pixel units; every field ``[B]``.

    ``gx, gy`` grid centre (1-indexed pixel coordinates), ``delta`` stride between filter centres,
    ``sigma2`` isotropic variance, ``gamma`` intensity.
    """

    gx: torch.Tensor
    gy: torch.Tensor
    sigma2: torch.Tensor
    delta: torch.Tensor
    gamma: torch.Tensor


def draw_params(raw: torch.Tensor, height: int, width: int, n: int) -> DrawParams:
    """Map the network output ``raw [B, 5] = (g~X, g~Y, log sigma^2, log delta~, log gamma)`` to pixels.

    Gregor et al. (2015), eqs. 21-23 (REFERENCE.md "DRAW")::

        gX = (A + 1) / 2 * (g~X + 1),   gY = (B + 1) / 2 * (g~Y + 1),
        delta = (max(A, B) - 1) / (N - 1) * delta~,    sigma^2, delta~, gamma = exp(...)

    with ``A = width``, ``B = height`` and ``N = n`` filters per axis (``n >= 2``).
    """
    gxt, gyt, log_s2, log_dt, log_g = raw.unbind(-1)
    gx = (width + 1) / 2 * (gxt + 1)
    gy = (height + 1) / 2 * (gyt + 1)
    delta = (max(width, height) - 1) / (n - 1) * torch.exp(log_dt)
    return DrawParams(gx, gy, torch.exp(log_s2), delta, torch.exp(log_g))


def filterbank(
    centre: torch.Tensor, delta: torch.Tensor, sigma2: torch.Tensor, n: int, size: int
) -> torch.Tensor:
    """One axis of DRAW's Gaussian filterbank: ``F [B, N, size]``, each row summing to 1.

    Filter centres ``mu_i = centre + (i - N/2 - 0.5) * delta`` for ``i = 1..N``, and
    ``F[i, a] = exp(-(a - mu_i)^2 / (2 sigma^2)) / Z_i`` over pixel coordinates ``a = 1..size``
    (1-indexed, as in the paper); the normalisation is a softmax over ``a`` so it stays finite when
    ``sigma`` is tiny.
    """
    i = torch.arange(1, n + 1, dtype=centre.dtype, device=centre.device)
    mu = centre[:, None] + (i[None] - n / 2 - 0.5) * delta[:, None]  # [B, N]
    a = torch.arange(1, size + 1, dtype=centre.dtype, device=centre.device)
    logits = -((a[None, None] - mu[:, :, None]) ** 2) / (2 * sigma2[:, None, None])  # [B, N, size]
    return torch.softmax(logits, dim=-1)


def draw_read(
    images: torch.Tensor, params: DrawParams, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DRAW's read without the error image: ``gamma * FY x FX^T``.

    Args:
        images: ``[B, H, W]``.
    Returns:
        ``(glimpse [B, N, N], FX [B, N, W], FY [B, N, H])``.
    """
    _, h, w = images.shape
    fx = filterbank(params.gx, params.delta, params.sigma2, n, w)
    fy = filterbank(params.gy, params.delta, params.sigma2, n, h)
    glimpse = fy @ images @ fx.transpose(1, 2)  # [B, N, N]
    return params.gamma[:, None, None] * glimpse, fx, fy
