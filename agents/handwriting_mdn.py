"""The mixture-density output of handwriting synthesis (Graves 2013, eqs. 18-26): density and sampling.

A step's output ``y = (e^, pi^_j, mu_j, sigma^_j, rho^_j)_{j=1..M}`` (``1 + 6M`` numbers) gives::

    pi_j = softmax(pi^)_j        sigma_j = exp(sigma^_j)        rho_j = tanh(rho^_j)       e = sigmoid(e^)
    p(x) = [sum_j pi_j N(dx, dy | mu_j, sigma_j, rho_j)] * (e if eos else 1 - e)
    N(x1, x2 | mu, s, rho) = 1 / (2 pi s1 s2 sqrt(1 - rho^2)) exp(-Z / (2 (1 - rho^2))),
    Z = z1^2 + z2^2 - 2 rho z1 z2,  z_i = (x_i - mu_i) / s_i

(The paper writes ``e = 1 / (1 + exp(e^))``; the sign of ``e^`` is a convention.) Sampling with bias
``b >= 0`` sharpens the mixture: ``sigma_j = exp(sigma^_j - b)``, ``pi ∝ exp(pi^ (1 + b))``; large ``b``
picks the likeliest component's mean, nearly deterministically. Log-likelihoods are in nats.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

#: rho is kept inside (-1, 1) by this margin so that log(1 - rho^2) stays finite
RHO_LIMIT = 1.0 - 1e-5


class MixtureParams(NamedTuple):
    """Raw mixture outputs, leading dims ``[...]`` (e.g. ``[B, T]``).

    pi_logits ``[..., M]``; mu ``[..., M, 2]``; log_sigma ``[..., M, 2]``; rho_logits ``[..., M]``
    (``rho = tanh``); eos_logit ``[...]`` (``e = sigmoid``).
    """

    pi_logits: torch.Tensor
    mu: torch.Tensor
    log_sigma: torch.Tensor
    rho_logits: torch.Tensor
    eos_logit: torch.Tensor


def split_params(y: torch.Tensor, mixtures: int) -> MixtureParams:
    """``y [..., 1 + 6M]`` -> :class:`MixtureParams` (layout: e^, pi^ M, mu 2M, sigma^ 2M, rho^ M)."""
    m = mixtures
    lead = y.shape[:-1]
    return MixtureParams(
        pi_logits=y[..., 1 : 1 + m],
        mu=y[..., 1 + m : 1 + 3 * m].reshape(*lead, m, 2),
        log_sigma=y[..., 1 + 3 * m : 1 + 5 * m].reshape(*lead, m, 2),
        rho_logits=y[..., 1 + 5 * m : 1 + 6 * m],
        eos_logit=y[..., 0],
    )


def log_likelihood(params: MixtureParams, target: torch.Tensor) -> torch.Tensor:
    """log p(target) in nats, ``target [..., 3] = (dx, dy, eos)`` -> ``[...]`` (module docstring)."""
    z = (target[..., None, :2] - params.mu) / torch.exp(params.log_sigma)  # [..., M, 2]
    rho = torch.tanh(params.rho_logits).clamp(-RHO_LIMIT, RHO_LIMIT)
    one_minus = 1.0 - rho**2
    big_z = z[..., 0] ** 2 + z[..., 1] ** 2 - 2.0 * rho * z[..., 0] * z[..., 1]
    log_normal = (-math.log(2 * math.pi) - params.log_sigma.sum(-1) - 0.5 * torch.log(one_minus)
                  - big_z / (2.0 * one_minus))  # [..., M]
    log_offsets = torch.logsumexp(F.log_softmax(params.pi_logits, -1) + log_normal, dim=-1)
    log_eos = -F.binary_cross_entropy_with_logits(params.eos_logit, target[..., 2], reduction="none")
    return log_offsets + log_eos


def sample_point(params: MixtureParams, bias: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row from the biased mixture: ``params`` with leading dims ``[B]`` -> ``[B, 3]``.

    ``sigma = exp(sigma^ - bias)``, ``pi ∝ exp(pi^ (1 + bias))``; the end-of-stroke bit is a plain
    Bernoulli draw of ``e`` (the bias does not touch it).
    """
    b = params.pi_logits.shape[0]
    pi = torch.softmax(params.pi_logits * (1.0 + bias), -1)  # [B, M]
    j = torch.multinomial(pi, 1, generator=generator)[:, 0]  # [B]
    rows = torch.arange(b, device=pi.device)
    mu, sigma = params.mu[rows, j], torch.exp(params.log_sigma[rows, j] - bias)  # [B, 2]
    rho = torch.tanh(params.rho_logits[rows, j]).clamp(-RHO_LIMIT, RHO_LIMIT)  # [B]
    n1, n2 = torch.randn(2, b, generator=generator, device=pi.device, dtype=mu.dtype)
    dx = mu[:, 0] + sigma[:, 0] * n1
    dy = mu[:, 1] + sigma[:, 1] * (rho * n1 + torch.sqrt(1.0 - rho**2) * n2)  # correlated: rho
    eos = (torch.rand(b, generator=generator, device=pi.device) < torch.sigmoid(params.eos_logit)).to(mu.dtype)
    return torch.stack([dx, dy, eos], -1)
