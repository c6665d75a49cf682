"""Pure addressing functions for the NTM (Graves et al. 2014) and the DNC (Graves et al. 2016).

Every function is stateless, batch-first and numerically safe: norms carry ``eps`` inside the
square root (no NaN gradient from an all-zero memory), sharpening raises ``w + eps`` (no ``log 0``
in the gradient of the exponent), normalisations divide by ``sum + eps``. Shapes use
``B`` batch, ``H`` heads, ``N`` memory rows, ``M`` row width, ``S`` shift kernel size.

These are the functions the tests check against a plain numpy loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-6


def safe_norm(x: torch.Tensor, dim: int = -1, eps: float = EPS) -> torch.Tensor:
    """``sqrt(sum(x^2) + eps)`` along ``dim``: finite value and gradient at x = 0."""
    return x.square().sum(dim).add(eps).sqrt()


def cosine_similarity(memory: torch.Tensor, keys: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """K[k, M_i] = k . M_i / (|k| |M_i|) with safe norms.

    Args:
        memory: ``[B, N, M]``; keys: ``[B, H, M]``.

    Returns:
        ``[B, H, N]``.
    """
    dots = torch.bmm(keys, memory.transpose(1, 2))  # [B, H, N]
    norms = safe_norm(keys, eps=eps).unsqueeze(-1) * safe_norm(memory, eps=eps).unsqueeze(1)
    return dots / norms


def content_weights(memory: torch.Tensor, keys: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Content addressing, w^c_i = softmax_i(beta K[k, M_i]) (NTM eq. 5, DNC C(M, k, beta)).

    Computed as ``softmax(k.M_i * (beta / |k|) / |M_i|)``: the strength is folded into the small
    ``[B, H]`` key factor, so the ``[B, H, N]`` scores take one multiply and one divide.

    Args:
        memory: ``[B, N, M]``; keys: ``[B, H, M]``; strength beta >= 0: ``[B, H]``.

    Returns:
        ``[B, H, N]``, each row summing to 1.
    """
    dots = torch.bmm(keys, memory.transpose(1, 2))  # [B, H, N]
    key_factor = (strength / safe_norm(keys)).unsqueeze(-1)  # [B, H, 1]
    return torch.softmax(dots * key_factor / safe_norm(memory).unsqueeze(1), dim=-1)


def interpolate(content: torch.Tensor, previous: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """w^g = g w^c + (1 - g) w_{t-1} (NTM eq. 7), one ``lerp``.

    ``content``, ``previous``: ``[B, H, N]``; ``gate``: ``[B, H]``.
    """
    return torch.lerp(previous, content, gate.unsqueeze(-1))


def circular_shift(weights: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Circular convolution w~_i = sum_j w_j s_{(i - j) mod N} (NTM eq. 8).

    Computed as ``sum_o s_o roll(w, o)`` over the S offsets o, ``roll(w, o)_i = w_{i - o}``: S - 1
    rolls and S multiply-adds, whose backward is rolls and multiply-adds again (a windowed view
    of a padded copy, the obvious alternative, costs 3x as much with its scattering backward).

    Args:
        weights: ``[B, H, N]``.
        shift: ``[B, H, S]`` (S odd) weighting over offsets ``-(S//2) .. S//2``; ``shift[..., S//2]``
            keeps the focus in place, ``shift[..., S//2 + 1]`` moves it one row forward.

    Returns:
        ``[B, H, N]``.
    """
    radius = shift.shape[-1] // 2
    taps = shift.unsqueeze(-1).unbind(-2)  # S tensors [B, H, 1]
    out = weights * taps[radius]
    for k, tap in enumerate(taps):
        if k != radius:
            out = torch.addcmul(out, torch.roll(weights, k - radius, dims=-1), tap)
    return out


def sharpen(weights: torch.Tensor, gamma: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """w_i = w~_i^gamma / sum_j w~_j^gamma (NTM eq. 9), computed on ``w~ + eps``.

    The power is taken as ``exp(gamma log(w~ + eps))``: the same number as ``pow``, whose backward
    would take two more powers and a log.

    Args:
        weights: ``[B, H, N]`` (non-negative); gamma: ``[B, H]``, expected >= 1 (see :func:`one_plus_softplus`).
    """
    powered = torch.exp(torch.log(weights + eps) * gamma.unsqueeze(-1))
    return powered / (powered.sum(-1, keepdim=True) + eps)


def one_plus_softplus(x: torch.Tensor) -> torch.Tensor:
    """1 + softplus(x): a sharpening exponent gamma >= 1 (or a DNC read strength >= 1)."""
    return 1.0 + F.softplus(x)


def ntm_address(
    memory: torch.Tensor,
    previous: torch.Tensor,
    key: torch.Tensor,
    strength: torch.Tensor,
    gate: torch.Tensor,
    shift: torch.Tensor,
    gamma: torch.Tensor,
) -> torch.Tensor:
    """The full NTM addressing chain: content -> interpolation -> shift -> sharpening.

    Args:
        memory ``[B, N, M]``; previous weights ``[B, H, N]``; key ``[B, H, M]``; strength, gate, gamma
        ``[B, H]``; shift ``[B, H, S]``.

    Returns:
        the new weights ``[B, H, N]``.
    """
    w = content_weights(memory, key, strength)
    w = interpolate(w, previous, gate)
    w = circular_shift(w, shift)
    return sharpen(w, gamma)


def read_memory(memory: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """r = sum_i w_i M_i (NTM eq. 2). memory ``[B, N, M]``, weights ``[B, R, N]`` -> ``[B, R, M]``."""
    return torch.bmm(weights, memory)


def erase_add_write(memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """M_t = M_{t-1} prod_h (1 - w_h e_h^T) + sum_h w_h a_h^T (NTM eqs. 3-4, over W write heads).

    As ``M_{t-1} + w a^T - M_{t-1} * (w e^T)`` with one head (three passes over ``[B, N, M]``:
    the erase outer product, a ``baddbmm`` and an ``addcmul``, none of them on a strided view).

    Args:
        memory ``[B, N, M]``; weights ``[B, W, N]``; erase (in [0, 1]) and add: ``[B, W, M]``.

    Returns:
        ``[B, N, M]``.
    """
    w_t = weights.transpose(1, 2)  # [B, N, W]
    if weights.shape[1] == 1:
        return torch.addcmul(torch.baddbmm(memory, w_t, add), memory, torch.bmm(w_t, erase), value=-1.0)
    keep = torch.prod(1.0 - weights.unsqueeze(-1) * erase.unsqueeze(2), dim=1)  # [B, N, M]
    return torch.addcmul(torch.bmm(w_t, add), memory, keep)


# ---------------------------------------------------------------------------------------------- DNC


def retention(free_gates: torch.Tensor, read_weights: torch.Tensor) -> torch.Tensor:
    """psi_t = prod_r (1 - f_r w^r_{t-1}) (DNC). free_gates ``[B, R]``, read_weights ``[B, R, N]`` -> ``[B, N]``."""
    return torch.prod(1.0 - free_gates.unsqueeze(-1) * read_weights, dim=1)


def update_usage(usage: torch.Tensor, write_weights: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """u_t = (u_{t-1} + w - u_{t-1} w) psi, with w = 1 - prod_h (1 - w^w_h) over write heads.

    Args:
        usage ``[B, N]``; write_weights (of step t-1) ``[B, W, N]``; psi ``[B, N]``.
    """
    w = 1.0 - torch.prod(1.0 - write_weights, dim=1)
    return (usage + w - usage * w) * psi


def allocation_weights(usage: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """a[phi_j] = (1 - u[phi_j]) prod_{i<j} u[phi_i], phi = rows sorted by ascending usage (DNC).

    Usage is squeezed into ``[eps, 1]`` first so the product never collapses to exact zeros.

    Args:
        usage ``[B, N]`` in [0, 1].

    Returns:
        ``[B, N]`` (sums to at most 1).
    """
    usage = eps + (1.0 - eps) * usage
    sorted_usage, order = torch.sort(usage, dim=-1)
    ones = torch.ones_like(sorted_usage[:, :1])
    exclusive = torch.cumprod(torch.cat([ones, sorted_usage[:, :-1]], dim=-1), dim=-1)
    sorted_alloc = (1.0 - sorted_usage) * exclusive
    return torch.zeros_like(usage).scatter(-1, order, sorted_alloc)


def write_allocation(usage: torch.Tensor, write_gates: torch.Tensor) -> torch.Tensor:
    """Allocation weights for W write heads in turn, each head marking its rows used for the next.

    Head h sorts the usage that heads ``< h`` left behind, so W heads need W sorts (one sort for
    all heads would give later heads the rows earlier heads just took).

    Args:
        usage ``[B, N]``; write_gates ``[B, W]``.

    Returns:
        ``[B, W, N]``.
    """
    heads = write_gates.shape[1]
    out = []
    for h in range(heads):
        a = allocation_weights(usage)
        out.append(a)
        if h + 1 < heads:
            usage = usage + (1.0 - usage) * write_gates[:, h : h + 1] * a
    return torch.stack(out, dim=1)


def update_link(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """L_t[i, j] = (1 - w_i - w_j) L_{t-1}[i, j] + w_i p_{t-1, j}, with L_t[i, i] = 0 (DNC).

    O(N^2) per head in three passes over ``[N, N]`` (scale, multiply-add, zero the diagonal in place).

    Args:
        link ``[B, W, N, N]``; precedence (of step t-1) ``[B, W, N]``; write_weights ``[B, W, N]``.

    Returns:
        ``[B, W, N, N]``.
    """
    w_i = write_weights.unsqueeze(-1)  # [B, W, N, 1]
    new = torch.addcmul(link * ((1.0 - w_i) - write_weights.unsqueeze(-2)), w_i, precedence.unsqueeze(-2))
    new.diagonal(dim1=-2, dim2=-1).zero_()
    return new


def update_precedence(precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """p_t = (1 - sum_i w_i) p_{t-1} + w (DNC). Both ``[B, W, N]``."""
    return (1.0 - write_weights.sum(-1, keepdim=True)) * precedence + write_weights


def directional_weights(link: torch.Tensor, read_weights: torch.Tensor, forward: bool) -> torch.Tensor:
    """Forward f = L w^r_{t-1} or backward b = L^T w^r_{t-1} weightings (DNC), one ``bmm`` for all heads.

    Args:
        link ``[B, W, N, N]``; read_weights ``[B, R, N]``.

    Returns:
        ``[B, R, W, N]``.
    """
    batch, heads, n, _ = link.shape
    if forward:  # f[r, (w, i)] = sum_j w^r[r, j] L[w, i, j]
        other = link.reshape(batch, heads * n, n).transpose(1, 2)
    else:  # b[r, (w, i)] = sum_j w^r[r, j] L[w, j, i]
        other = link.transpose(1, 2).reshape(batch, n, heads * n)
    return torch.bmm(read_weights, other).view(batch, read_weights.shape[1], heads, n)


def dnc_read_weights(
    content: torch.Tensor, forward: torch.Tensor, backward: torch.Tensor, modes: torch.Tensor
) -> torch.Tensor:
    """w^r = sum_h pi_b,h b_h + pi_c c + sum_h pi_f,h f_h (DNC read modes), one batched matmul.

    Args:
        content ``[B, R, N]``; forward, backward ``[B, R, W, N]``; modes ``[B, R, 1 + 2W]`` (softmax),
        ordered ``[backward_1..W, content, forward_1..W]``.

    Returns:
        ``[B, R, N]``.
    """
    candidates = torch.cat([backward, content.unsqueeze(2), forward], dim=2)  # [B, R, 1 + 2W, N]
    return torch.matmul(modes.unsqueeze(-2), candidates).squeeze(-2)
