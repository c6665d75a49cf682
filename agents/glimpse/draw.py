"""DRAW (Gregor et al. 2015): a recurrent VAE that reads and writes through Gaussian filterbanks.

For ``t = 1 .. T`` (``x`` a binary image ``[B, H, W]``; ``c_0`` a learned bias ``[H, W]`` as in the paper,
started at ``logit(0.13)``, MNIST's mean intensity; ``h^enc_0 = h^dec_0 = 0``)::

    x^_t   = x - sigmoid(c_{t-1})                                    error image
    r_t    = read(x, x^_t, h^dec_{t-1})                              [B, 2 N_r^2] (or [B, 2 H W] unattended)
    h^enc_t = LSTM_enc([r_t, h^dec_{t-1}], h^enc_{t-1})
    z_t    ~ Q(z_t | h^enc_t) = N(mu_t, diag(sigma_t^2))            mu_t, log sigma_t^2 = W h^enc_t
    h^dec_t = LSTM_dec(z_t, h^dec_{t-1})
    c_t    = c_{t-1} + write(h^dec_t)

The attentive read is ``gamma [FY x FX^T, FY x^ FX^T]`` with the ``N_r x N_r`` filterbank of
:func:`heed.agents.glimpse.sensors.filterbank` (the same one the soft-attention classifier reads with);
the attentive write is its transpose, ``(1 / gamma) FY^T w_t FX`` for an ``N_w x N_w`` patch
``w_t = W h^dec_t`` (:func:`draw_write`). Each filterbank's five parameters come from ``h^dec`` through
:func:`heed.agents.glimpse.sensors.draw_params`. Without attention, ``read = [x, x^]`` and
``write = W h^dec`` (the whole image).

The loss is the negative variational bound, in nats per image::

    L = L^x + L^z,   L^x = -sum_pixels log Bernoulli(x | sigmoid(c_T)),
    L^z = sum_t KL(N(mu_t, sigma_t^2) || N(0, I)) = sum_t 1/2 sum_j (mu^2 + sigma^2 - 1 - log sigma^2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from heed.agents.common.errors import HeedError
from heed.agents.common.validate import Range
from heed.agents.glimpse.sensors import DrawParams, draw_params, draw_read, filterbank

#: logit(0.13): the initial learned canvas c_0, MNIST's mean pixel intensity
CANVAS_INIT = -1.9


@dataclass(frozen=True)
class DrawConfig:
    """DRAW's size (the paper's MNIST model: T = 64, 256 units, z of 100, read 2x2, write 5x5)."""

    image_size: Annotated[int, Range(2, 512)] = 28
    """Side of the square binary images."""
    time_steps: Annotated[int, Range(1, 1024)] = 16
    """T, glimpses (drawing steps) per image (the paper: 64)."""
    hidden: Annotated[int, Range(1, 4096)] = 256
    """Units of each of the encoder and decoder LSTMs."""
    latent: Annotated[int, Range(1, 4096)] = 100
    """Size of z_t."""
    read_size: Annotated[int, Range(2, 64)] = 2
    """N_r: the read is N_r x N_r per image (attention only)."""
    write_size: Annotated[int, Range(2, 64)] = 5
    """N_w: the written patch is N_w x N_w (attention only)."""
    attention: bool = True
    """Read and write through the filterbanks; --no-attention reads and writes the whole image."""


class DrawOutput(NamedTuple):
    """``canvas [B, H, W]`` the logits c_T; ``kl [B, T]`` per-step KL in nats."""

    canvas: torch.Tensor
    kl: torch.Tensor


class DrawStep(NamedTuple):
    """One drawing step for recordings: ``canvas [B, H, W]`` logits c_t; read and write parameters
    (:class:`~heed.agents.glimpse.sensors.DrawParams`, ``None`` without attention)."""

    canvas: torch.Tensor
    read: DrawParams | None
    write: DrawParams | None


def draw_write(patch: torch.Tensor, params: DrawParams, height: int, width: int) -> torch.Tensor:
    """DRAW's attentive write: ``(1 / gamma) FY^T w FX``, the transpose of the read.

    Args:
        patch: ``w [B, N, N]``.
        params: the write window (``[B]`` fields).
    Returns:
        ``[B, height, width]``.
    """
    n = patch.shape[-1]
    fx = filterbank(params.gx, params.delta, params.sigma2, n, width)  # [B, N, W]
    fy = filterbank(params.gy, params.delta, params.sigma2, n, height)  # [B, N, H]
    return fy.transpose(1, 2) @ patch @ fx / params.gamma[:, None, None]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over the last axis: ``[B, D] -> [B]`` (nats)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def _attention_init(layer: nn.Linear, image_size: int, n: int, cover: float = 1.0, gain: bool = False) -> None:
    """Start with a centred window ``cover`` of the image wide: stride ``delta = cover (A-1)/(N-1)``,
    sigma = half the stride; ``gain``: intensity ``gamma = 1 / delta^2``, so that a written patch value
    reaches the canvas at about unit strength (each pixel gets ~``1 / (delta^2 gamma)`` of it)."""
    stride = cover * (image_size - 1) / (n - 1)
    log_gamma = -2 * math.log(stride) if gain else 0.0
    with torch.no_grad():
        layer.weight.mul_(0.1)
        layer.bias.copy_(torch.tensor([0.0, 0.0, 2 * math.log(stride / 2), math.log(cover), log_gamma]))


class Draw(nn.Module):
    """DRAW with or without attention (see the module docstring for the equations)."""

    def __init__(self, cfg: DrawConfig) -> None:
        super().__init__()
        self.cfg = cfg
        a, h = cfg.image_size, cfg.hidden
        read_dim = 2 * cfg.read_size**2 if cfg.attention else 2 * a * a
        self.encoder = nn.LSTMCell(read_dim + h, h)
        self.decoder = nn.LSTMCell(cfg.latent, h)
        self.posterior = nn.Linear(h, 2 * cfg.latent)  # -> (mu, log sigma^2)
        self.write_patch = nn.Linear(h, cfg.write_size**2 if cfg.attention else a * a)
        # c_0: a learned canvas bias; started near the background so the first steps need not erase it
        self.canvas0 = nn.Parameter(torch.full((a, a), CANVAS_INIT))
        if cfg.attention:
            self.read_attend = nn.Linear(h, 5)
            self.write_attend = nn.Linear(h, 5)
            _attention_init(self.read_attend, a, cfg.read_size)
            _attention_init(self.write_attend, a, cfg.write_size, cover=0.5, gain=True)

    def _read(self, x: torch.Tensor, err: torch.Tensor, h_dec: torch.Tensor) -> tuple[torch.Tensor, DrawParams | None]:
        """``[B, 2 N_r^2]`` (or ``[B, 2 H W]``) and the read window."""
        if not self.cfg.attention:
            return torch.cat([x.flatten(1), err.flatten(1)], -1), None
        a, n = self.cfg.image_size, self.cfg.read_size
        params = draw_params(self.read_attend(h_dec), a, a, n)
        glimpse, fx, fy = draw_read(x, params, n)
        glimpse_err = params.gamma[:, None, None] * (fy @ err @ fx.transpose(1, 2))
        return torch.cat([glimpse.flatten(1), glimpse_err.flatten(1)], -1), params

    def _write(self, h_dec: torch.Tensor) -> tuple[torch.Tensor, DrawParams | None]:
        """The canvas update ``[B, H, W]`` and the write window."""
        a = self.cfg.image_size
        w = self.write_patch(h_dec)
        if not self.cfg.attention:
            return w.view(-1, a, a), None
        n = self.cfg.write_size
        params = draw_params(self.write_attend(h_dec), a, a, n)
        return draw_write(w.view(-1, n, n), params, a, a), params

    def _unroll(self, x: torch.Tensor, record: bool) -> tuple[DrawOutput, list[DrawStep]]:
        b, h = x.shape[0], self.cfg.hidden
        canvas = self.canvas0.expand(b, -1, -1)
        zeros = x.new_zeros(b, h)
        enc, dec = (zeros, zeros), (zeros, zeros)
        kls, steps = [], []
        for _ in range(self.cfg.time_steps):
            r, read_params = self._read(x, x - torch.sigmoid(canvas), dec[0])
            enc = self.encoder(torch.cat([r, dec[0]], -1), enc)
            mu, logvar = self.posterior(enc[0]).chunk(2, -1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            kls.append(gaussian_kl(mu, logvar))
            dec = self.decoder(z, dec)
            update, write_params = self._write(dec[0])
            canvas = canvas + update
            if record:
                steps.append(DrawStep(canvas, read_params, write_params))
        return DrawOutput(canvas, torch.stack(kls, 1)), steps

    def forward(self, x: torch.Tensor) -> DrawOutput:
        """``x [B, H, W]`` binary -> :class:`DrawOutput` (one posterior sample per image)."""
        return self._unroll(x, record=False)[0]

    @torch.no_grad()
    def record(self, x: torch.Tensor) -> list[DrawStep]:
        """Every step's canvas and windows while reconstructing ``x [B, H, W]`` (for videos)."""
        return self._unroll(x, record=True)[1]

    @torch.no_grad()
    def generate(self, count: int, generator: torch.Generator | None = None) -> list[DrawStep]:
        """Draw ``count`` new images with ``z_t ~ N(0, I)``: every step's canvas and write window."""
        device = self.write_patch.weight.device
        zeros = torch.zeros(count, self.cfg.hidden, device=device)
        dec = (zeros, zeros)
        canvas = self.canvas0.expand(count, -1, -1)
        steps = []
        for _ in range(self.cfg.time_steps):
            z = torch.randn(count, self.cfg.latent, generator=generator, device=device)
            dec = self.decoder(z, dec)
            update, write_params = self._write(dec[0])
            canvas = canvas + update
            steps.append(DrawStep(canvas, None, write_params))
        return steps


def write_sweep(steps: list[DrawStep], write_size: int) -> dict[str, float]:
    """How far the write window travels while drawing, from :meth:`Draw.record`'s steps (attention only).

    Per image ``b``, with write centres ``g_t = (gX_t, gY_t)`` in pixels over ``t = 1..T``::

        spread_b = sqrt(mean_t |g_t - mean_t' g_t'|^2)     0 for a window that never moves
        path_b   = sum_{t >= 2} |g_t - g_{t-1}|            the distance the centre travels

    Returns the medians over the images (torch's lower median for an even count) of ``spread`` and
    ``path`` (px), of the stride ``delta`` at the first and the last step (px), and the last step's
    span ``N_w delta`` (px; > 28 means the grid is wider than an MNIST canvas).
    """
    if not steps or steps[0].write is None:
        raise HeedError("write_sweep needs the steps of an attentive DRAW (no write window without attention)")
    gx = torch.stack([s.write.gx for s in steps], 1)  # [B, T]
    gy = torch.stack([s.write.gy for s in steps], 1)
    delta = torch.stack([s.write.delta for s in steps], 1)
    spread = ((gx - gx.mean(1, keepdim=True)) ** 2 + (gy - gy.mean(1, keepdim=True)) ** 2).mean(1).sqrt()
    path = torch.hypot(gx.diff(dim=1), gy.diff(dim=1)).sum(1)
    last = delta[:, -1].median().item()
    return {"centre_spread_px": spread.median().item(), "path_px": path.median().item(),
            "stride_first_px": delta[:, 0].median().item(), "stride_last_px": last,
            "span_last_px": write_size * last}


def negative_bound(out: DrawOutput, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L^x [B], L^z [B])`` in nats: reconstruction ``-log p(x | c_T)`` and ``sum_t KL``; the bound is their sum."""
    recon = F.binary_cross_entropy_with_logits(out.canvas, x, reduction="none").flatten(1).sum(-1)
    return recon, out.kl.sum(1)
