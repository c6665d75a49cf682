"""The attention parts of heed's Transformers (:mod:`heed.agents.transformer`): position codes,
masks, multi-head self-attention and the pre-norm block.

Scaled dot-product attention per head (Vaswani et al. 2017)::

    A = softmax(Q K^T / sqrt(d_k) + M),   out = A V        Q, K, V: [B, H, T, d_k];  A: [B, H, T, T]

with ``M = -inf`` (a large negative number here) where a key is padding or, under the causal mask,
in the future (key index > query index). Rows of ``A`` sum to 1.

Rotary positions (RoPE, Su et al. 2021) rotate unit pair i of each head's queries and keys by the angle
``t * 10000^(-2i/d_k)``, so ``q_t . k_j`` depends on ``t - j`` only.

Incremental decoding (:mod:`heed.agents.kv_cache`): :meth:`MultiHeadSelfAttention.extend` and
:meth:`Block.extend` read the next T steps against a :class:`~heed.agents.kv_cache.KeyValues` cache of
the N0 steps before them: the new queries attend over the ``N = N0 + T`` keys ``[cached; new]`` with
the causal mask ``j <= N0 + i``. The cache stores keys after rotation by their positions.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from heed.agents.common.errors import require
from heed.agents.kv_cache import KeyValues

RotaryTables = torch.Tensor  # complex exp(i angle) of rotary_tables, [1|B, 1, T, d_k/2]

NEG = -1e9  # masked logits: exp underflows to 0, yet a fully masked row stays finite


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``[..., dim]`` of integer ``positions [...]`` (sin on even, cos on odd units)."""
    half = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)
    freq = torch.exp(-math.log(10000.0) * half / dim)  # [dim/2]
    angle = positions.float()[..., None] * freq  # [..., dim/2]
    emb = torch.zeros(*positions.shape, dim, device=positions.device)
    emb[..., 0::2] = torch.sin(angle)
    emb[..., 1::2] = torch.cos(angle)[..., : dim // 2]
    return emb


def rotary_tables(positions: torch.Tensor, dim: int) -> RotaryTables:
    """RoPE rotations for integer ``positions [T]`` or ``[B, T]``: complex ``exp(i angle)``,
    ``[1|B, 1, T, dim/2]`` (broadcast over heads), angle ``t * 10000^(-2i/dim)`` for unit pair i
    (computed in float64, so a position in the tens of thousands, as in a long generated text, keeps
    its angle to 1e-7)."""
    half = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float64)
    freq = torch.exp(-math.log(10000.0) * half / dim)  # [dim/2]
    angle = positions.double()[..., None] * freq  # [..., T, dim/2]
    angle = angle[None, None] if angle.dim() == 2 else angle[:, None]  # [1|B, 1, T, dim/2]
    return torch.polar(torch.ones_like(angle), angle).to(torch.complex64)


@functools.lru_cache(maxsize=16)
def _rotary_table(length: int, dim: int, device: torch.device) -> RotaryTables:
    return rotary_tables(torch.arange(length, device=device), dim)


def rotary_range(start: int, stop: int, dim: int, device: torch.device) -> RotaryTables:
    """``rotary_tables(arange(start, stop), dim)`` (``[1, 1, stop - start, dim/2]``), sliced from a table
    of the first ``2^k >= stop`` positions kept from call to call: one slice per decoding step."""
    length = 1 << max(6, (stop - 1).bit_length())
    return _rotary_table(length, dim, torch.device(device))[..., start:stop, :]


def rotate(x: torch.Tensor, tables: RotaryTables) -> torch.Tensor:
    """Rotate unit pairs ``(x_{2i}, x_{2i+1})`` of ``x [..., T, d_k]`` by the angles of :func:`rotary_tables`:
    each pair read as the complex number ``x_{2i} + i x_{2i+1}`` and multiplied by ``exp(i angle)``
    (one complex product instead of four real ones and an interleave: about 6x faster here)."""
    real = x if x.dtype in (torch.float32, torch.float64) else x.float()
    turned = torch.view_as_complex(real.unflatten(-1, (-1, 2))) * tables  # [..., T, d_k/2]
    return torch.view_as_real(turned).flatten(-2).to(x.dtype)


def segment_positions(inputs: torch.Tensor, reset_unit: int) -> torch.Tensor:
    """Integer positions ``[B, T]`` that restart at 0 after each step where ``inputs[..., reset_unit] != 0``.

    ``pos_t = t - s_t`` with ``s_t`` the index following the last marker before t (0 if none).
    """
    batch, steps, _ = inputs.shape
    t = torch.arange(steps, device=inputs.device).expand(batch, steps)
    marker = inputs[..., reset_unit] != 0  # [B, T]
    start = torch.where(marker, t + 1, torch.zeros_like(t))  # a marker at t starts a segment at t + 1
    start = torch.cat([torch.zeros_like(start[:, :1]), start[:, :-1]], dim=1)  # only affects later steps
    return t - torch.cummax(start, dim=1).values


def attention_mask(pad: torch.Tensor | None, steps: int, causal: bool, device: torch.device) -> torch.Tensor:
    """Boolean ``[B|1, 1, T, T]``: True where query i may attend to key j.

    Args:
        pad: ``[B, T]`` bool, True at padding positions (or None).
        steps: T; ``causal``: forbid keys j > i.
    """
    allowed = torch.ones(1, 1, steps, steps, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed & torch.ones(steps, steps, dtype=torch.bool, device=device).tril()
    if pad is not None and bool(pad.any()):  # a batch without padding keeps the shared [1, 1, T, T] mask
        allowed = allowed & ~pad[:, None, None, :]
    return allowed


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention; returns ``(out [B, T, d], weights [B, H, T, T])``."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        require(d_model % heads == 0, f"d_model ({d_model}) must be divisible by heads ({heads})")
        self.heads, self.d_k = heads, d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def project(self, x: torch.Tensor, rope: RotaryTables | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys, values ``[B, H, T, d_k]`` of ``x [B, T, d]`` (one fused projection), queries and
        keys rotated by ``rope`` (:func:`rotary_tables` of the positions; None: no rotation)."""
        batch, steps, _ = x.shape
        qkv = self.qkv(x).view(batch, steps, 3, self.heads, self.d_k).permute(2, 0, 3, 1, 4)  # [3, B, H, T, d_k]
        if rope is None:
            return qkv[0], qkv[1], qkv[2]
        qk = rotate(qkv[:2], rope)  # queries and keys in one product
        return qk[0], qk[1], qkv[2]

    def merge(self, mixed: torch.Tensor) -> torch.Tensor:
        """``[B, H, T, d_k]`` heads side by side, then the output projection: ``[B, T, d]``."""
        batch, _, steps, _ = mixed.shape
        return self.out(mixed.transpose(1, 2).reshape(batch, steps, self.heads * self.d_k))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor,
                rope: RotaryTables | None = None,
                need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``rope``: :func:`rotary_tables` of the positions, to rotate queries and keys by (None: no rotation).

        ``need_weights=False`` with a mask shared by the batch (no padding, so no query row is fully
        masked) takes PyTorch's fused ``scaled_dot_product_attention`` (the same ``A V``, without
        materialising ``A`` for the caller) and returns ``None`` for the weights."""
        q, k, v = self.project(x, rope)  # [B, H, T, d_k]
        if not need_weights and allowed.shape[0] == 1:
            return self.merge(nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)), None
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.d_k)  # [B, H, T, T]
        weights = torch.softmax(logits.masked_fill(~allowed, NEG), dim=-1)
        return self.merge(weights @ v), weights

    def extend(self, x: torch.Tensor, cache: KeyValues,
               rope: RotaryTables | None = None) -> tuple[torch.Tensor, KeyValues]:
        """The next T steps ``x [B, T, d]`` against ``cache`` (keys, values ``[B, H, N0, d_k]``, keys
        already rotated): ``(out [B, T, d], cache of N = N0 + T steps)``. Query i sees keys ``j <= N0 + i``;
        ``rope``: :func:`rotary_tables` of the new steps' positions, for their queries and keys."""
        q, k, v = self.project(x, rope)  # [B, H, T, d_k]
        cache = cache.extended(k, v)
        steps, total = x.shape[1], cache.keys.shape[2]
        allowed = None
        if steps > 1 and total > steps:  # [T, N]: query i is step N0 + i
            allowed = torch.arange(total, device=x.device) <= torch.arange(total - steps, total, device=x.device)[:, None]
        mixed = nn.functional.scaled_dot_product_attention(q, cache.keys, cache.values, attn_mask=allowed,
                                                           is_causal=steps > 1 and total == steps)
        return self.merge(mixed), cache


class Block(nn.Module):
    """Pre-norm layer: ``x + MHSA(LN x)`` then ``x + FFN(LN x)``; returns ``(x, weights [B, H, T, T])``."""

    def __init__(self, d_model: int, heads: int, ff_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = MultiHeadSelfAttention(d_model, heads)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_mult * d_model), nn.ReLU(), nn.Linear(ff_mult * d_model, d_model)
        )
        self.drop = nn.Dropout(dropout)

    def feed_forward(self, x: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
        """``x' = x + mixed`` (the attention's output), then ``x' + FFN(LN x')``: ``[B, T, d]``."""
        x = x + self.dropout(mixed)
        return x + self.dropout(self.ff(self.norm2(x)))

    def dropout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` through the dropout layer, skipped where it is the identity (evaluation, p = 0)."""
        return self.drop(x) if self.training and self.drop.p > 0 else x

    def forward(self, x: torch.Tensor, allowed: torch.Tensor,
                rope: RotaryTables | None = None,
                need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        mixed, weights = self.attn(self.norm1(x), allowed, rope, need_weights)
        return self.feed_forward(x, mixed), weights

    def extend(self, x: torch.Tensor, cache: KeyValues,
               rope: RotaryTables | None = None) -> tuple[torch.Tensor, KeyValues]:
        """:meth:`forward` for the next T steps ``x [B, T, d]`` against this layer's key/value cache."""
        mixed, cache = self.attn.extend(self.norm1(x), cache, rope)
        return self.feed_forward(x, mixed), cache
