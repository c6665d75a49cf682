"""Self-attention sequence models: a Transformer encoder and the Universal Transformer (with ACT).

Scaled dot-product attention per head (Vaswani et al. 2017)::

    A = softmax(Q K^T / sqrt(d_k) + M),   out = A V        Q, K, V: [B, H, T, d_k];  A: [B, H, T, T]

with ``M = -inf`` (a large negative number here) where a key is padding or, under the causal mask,
in the future (key index > query index). Rows of ``A`` sum to 1.

The Universal Transformer (Dehghani et al. 2019) applies ONE pre-norm layer (attention + transition)
repeatedly over depth, adding position and timestep embeddings at every step::

    s^n = Layer(s^{n-1} + P_pos + P_n)

With ACT every position halts on its own (the rule of :func:`agents.cores.act.halting_step`); a
halted position keeps its state (so it stays readable as a key) and the output is the mean field
``sum_n p^n s^n``. ``aux_loss = tau * mean_b (mean over real positions of rho)``.

What a halted position shows the positions still running: by default its last state ``s^N``, which
depends on its halting only through the (non-differentiable) step count N, so when the loss scores one
position (bAbI: the question) the halting of every other position gets no gradient from the loss at
all, only the ponder cost's push to halt (docs/ponder.md, "Why every story sentence got 2.0 steps"). With
``expose_mean_field`` it shows its mean field ``m = sum_{n<=N} p^n s^n`` instead, so the question, which
attends to it over depth, sends gradient into its halting probabilities.

Padding: rows of all-zero input vectors are treated as padding (``pad_zero_inputs=True``), so a batch
of ragged sequences right-padded with zeros needs no extra argument; ``forward`` also accepts an
explicit ``pad_mask [B, T]`` (True = padding).

Positions: absolute, ``P_pos = sinusoid(t)``, unless ``reset_unit = u >= 0``: then the position
counter restarts at 0 on the step after every step whose input unit ``u`` is non-zero (a segment
delimiter). For copy (symbols, delimiter, queries) query i then has the position of input i, the
positional structure an encoder-decoder gives its decoder (the Universal Transformer paper's models
were encoder-decoders). With ``max_offset = K > 0`` every training sequence adds one random offset
``o ~ U{0..K}`` to all its positions (randomised positions, Ruoss et al. 2023), so positions far
beyond the training lengths are seen in training; evaluation (``model.eval()``) uses ``o = 0``.

Positions of ``transformer`` (``positions``): ``sinusoid`` (added to the input, as above),
``learned`` (a learned ``[max_len, d]`` table added to the input) or ``rotary`` (RoPE, Su et al.
2021: nothing is added; each head's queries and keys are rotated by position before the dot
product, pair i of units by the angle ``t * 10000^(-2i/d_k)``, so ``q_t . k_j`` depends on ``t - j``
only). With ``causal=True`` it is a decoder-only language model (GPT's layout): the output at t
depends on inputs 0..t only (tests/test_text_lm.py checks it with the sequential Jacobian).

Models in the table of parts (:mod:`heed.agents.parts`): ``transformer`` (:class:`TransformerConfig`),
``ut`` (fixed depth, :class:`UTConfig`) and ``ut-act`` (:class:`UTACTConfig`). Each maps
``inputs [B, T, D]`` to ``(logits [B, T, K], attention, aux_loss)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import nn

from heed.agents.common.errors import require
from heed.agents.common.validate import NonNegative, Range
from heed.agents.cores.act import halting_step
from heed.agents.cores.base import HeadCount, HiddenSize, PartName, part_name

SequenceOutput = tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]  # logits, attention, aux_loss

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


def rotary_tables(positions: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE angles for integer ``positions [T]`` or ``[B, T]``: ``(cos, sin)``, each ``[1|B, 1, T, dim/2]``
    (broadcast over heads), angle ``t * 10000^(-2i/dim)`` for unit pair i."""
    half = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)
    freq = torch.exp(-math.log(10000.0) * half / dim)  # [dim/2]
    angle = positions.float()[..., None] * freq  # [..., T, dim/2]
    angle = angle[None, None] if angle.dim() == 2 else angle[:, None]  # [1|B, 1, T, dim/2]
    return torch.cos(angle), torch.sin(angle)


def rotate(x: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate unit pairs ``(x_{2i}, x_{2i+1})`` of ``x [B, H, T, d_k]`` by the angles of :func:`rotary_tables`."""
    cos, sin = tables
    even, odd = x[..., 0::2], x[..., 1::2]  # [B, H, T, d_k/2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


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

    def forward(self, x: torch.Tensor, allowed: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``rope``: :func:`rotary_tables` of the positions, to rotate queries and keys by (None: no rotation).

        ``need_weights=False`` with a mask shared by the batch (no padding, so no query row is fully
        masked) takes PyTorch's fused ``scaled_dot_product_attention`` (the same ``A V``, without
        materialising ``A`` for the caller) and returns ``None`` for the weights."""
        batch, steps, d_model = x.shape
        q, k, v = (
            self.qkv(x).view(batch, steps, 3, self.heads, self.d_k).permute(2, 0, 3, 1, 4)
        )  # [B, H, T, d_k]
        if rope is not None:
            q, k = rotate(q, rope), rotate(k, rope)
        if not need_weights and allowed.shape[0] == 1:
            mixed = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # [B, H, T, d_k]
            return self.out(mixed.transpose(1, 2).reshape(batch, steps, d_model)), None
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.d_k)  # [B, H, T, T]
        weights = torch.softmax(logits.masked_fill(~allowed, NEG), dim=-1)
        mixed = (weights @ v).transpose(1, 2).reshape(batch, steps, d_model)  # [B, T, d]
        return self.out(mixed), weights


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

    def forward(self, x: torch.Tensor, allowed: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        mixed, weights = self.attn(self.norm1(x), allowed, rope, need_weights)
        x = x + self.drop(mixed)
        return x + self.drop(self.ff(self.norm2(x))), weights


@dataclass(frozen=True)
class SelfAttentionConfig:
    """What every self-attention model here shares (the three configs below add their depth)."""

    name: PartName = part_name("self-attention")
    d_model: Annotated[int, HiddenSize] = 64
    """model width d"""
    heads: Annotated[int, HeadCount] = 4
    """attention heads H (must divide d_model)"""
    causal: bool = False
    """forbid attending to later steps"""
    pad_zero_inputs: bool = True
    """treat all-zero input rows as padding"""
    dropout: Annotated[float, Range(0, 1, hi_open=True)] = 0.0
    """dropout after attention and the transition"""
    reset_unit: Annotated[int, Range(-1, 65_536)] = -1
    """restart positions after steps where this input unit is non-zero (-1: absolute positions)"""
    max_offset: Annotated[int, Range(0, 1_000_000)] = 0
    """random training offset of all positions, up to this (0: none)"""


@dataclass(frozen=True)
class TransformerConfig(SelfAttentionConfig):
    """A Transformer encoder: ``layers`` distinct pre-norm blocks."""

    name: PartName = part_name("transformer")
    layers: Annotated[int, Range(1, 256)] = 2
    """blocks"""
    positions: Literal["sinusoid", "learned", "rotary"] = "sinusoid"
    """position code: sinusoids or a learned table added to the input, or rotary (RoPE) in every head"""
    max_len: Annotated[int, Range(1, 65_536)] = 1024
    """longest sequence with learned positions (their table's rows)"""


@dataclass(frozen=True)
class UTConfig(SelfAttentionConfig):
    """The Universal Transformer: one block applied ``depth`` times."""

    name: PartName = part_name("ut")
    depth: Annotated[int, Range(1, 256)] = 6
    """steps over depth"""


@dataclass(frozen=True)
class UTACTConfig(SelfAttentionConfig):
    """The Universal Transformer with per-position ACT (at most ``depth`` steps)."""

    name: PartName = part_name("ut-act")
    depth: Annotated[int, Range(1, 256)] = 8
    """the cap on steps over depth"""
    tau: Annotated[float, NonNegative] = 0.01
    """ponder cost weight"""
    eps: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 0.01
    """halt once the summed halting probability reaches 1 - eps"""
    halting_bias: float = 1.0
    """initial bias of the halting unit"""
    zero_halting_weights: bool = False
    """start the halting unit's weights at 0, so every first halting probability is exactly
    sigmoid(halting_bias): with a low bias (-2.2: h = 0.1) every position starts deep"""
    expose_mean_field: bool = False
    """a halted position shows later depth steps its mean field sum_n p^n s^n (differentiable in its
    halting), not its last state: the loss then reaches the halting of positions it does not score"""
    attend_readout: bool = False
    """the output at each position adds one multi-head read over every position's mean field
    (decoder-style), so the loss scores the other positions' final outputs, and their halting, directly"""


class _Base(nn.Module):
    """Shared input embedding, masks and readout."""

    def __init__(self, input_size: int, output_size: int, cfg: SelfAttentionConfig) -> None:
        super().__init__()
        d_model, reset_unit, max_offset = cfg.d_model, cfg.reset_unit, cfg.max_offset
        require(-1 <= reset_unit < input_size, f"reset_unit must be -1 (off) or an input unit < {input_size}")
        require(max_offset >= 0, f"max_offset must be >= 0, got {max_offset}")
        self.d_model, self.causal, self.pad_zero_inputs = d_model, cfg.causal, cfg.pad_zero_inputs
        self.reset_unit, self.max_offset = reset_unit, max_offset
        self.embed = nn.Linear(input_size, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.readout = nn.Linear(d_model, output_size)

    def integer_positions(self, inputs: torch.Tensor) -> torch.Tensor:
        """Positions ``[T]`` (absolute) or ``[B, T]`` (segment restarts or random training offsets)."""
        if self.reset_unit >= 0:
            positions = segment_positions(inputs, self.reset_unit)  # [B, T]
        else:
            positions = torch.arange(inputs.shape[1], device=inputs.device)  # [T]
        if self.training and self.max_offset > 0:
            offset = torch.randint(0, self.max_offset + 1, (inputs.shape[0], 1), device=inputs.device)
            positions = positions + offset  # [B, T]
        return positions

    def prepare(self, inputs: torch.Tensor, pad_mask: torch.Tensor | None):
        """Return ``(x [B, T, d], pad [B, T] or None, allowed mask, positional embedding [T, d] or [B, T, d])``."""
        require(inputs.dim() == 3, f"inputs must be [B, T, D], got {tuple(inputs.shape)}")
        steps = inputs.shape[1]
        if pad_mask is None and self.pad_zero_inputs:
            pad_mask = inputs.abs().sum(-1) == 0
        pos = sinusoid(self.integer_positions(inputs), self.d_model)  # [T, d] or [B, T, d]
        allowed = attention_mask(pad_mask, steps, self.causal, inputs.device)
        return self.embed(inputs) * math.sqrt(self.d_model), pad_mask, allowed, pos


class TransformerModel(_Base):
    """A stack of ``layers`` distinct pre-norm blocks; attention dict ``{"attention": [B, L, H, T, T]}``."""

    def __init__(self, input_size: int, output_size: int, cfg: TransformerConfig = TransformerConfig()) -> None:
        super().__init__(input_size, output_size, cfg)
        require(cfg.positions != "rotary" or (cfg.d_model // cfg.heads) % 2 == 0,
                f"rotary positions need an even head width, got d_model / heads = {cfg.d_model // cfg.heads}")
        self.positions, self.max_len, self.head_width = cfg.positions, cfg.max_len, cfg.d_model // cfg.heads
        if cfg.positions == "learned":
            self.position_table = nn.Parameter(0.02 * torch.randn(cfg.max_len, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.heads, dropout=cfg.dropout) for _ in range(cfg.layers))

    def forward(self, inputs: torch.Tensor, pad_mask: torch.Tensor | None = None) -> SequenceOutput:
        x, _, allowed, pos = self.prepare(inputs, pad_mask)
        rope = None
        if self.positions == "sinusoid":
            x = x + pos
        else:  # the integer positions behind ``pos`` (offsets and segment restarts included)
            positions = self.integer_positions(inputs)
            if self.positions == "learned":
                require(int(positions.max()) < self.max_len,
                        f"learned positions go up to {self.max_len - 1}; this input needs {int(positions.max())}")
                x = x + self.position_table[positions]  # [T, d] or [B, T, d]
            else:
                rope = rotary_tables(positions, self.head_width)
        # a training step (train mode, gradients on) does not need the weights: the fused kernel then
        # (evaluation, figures, TensorBoard images and Jacobians in eval mode still get every map)
        need_weights = not (self.training and torch.is_grad_enabled())
        maps = []
        for block in self.blocks:
            x, weights = block(x, allowed, rope, need_weights)
            maps.append(weights)
        attention = {} if maps and maps[0] is None else {"attention": torch.stack(maps, dim=1)}
        return self.readout(self.norm(x)), attention, x.new_zeros(())


class UniversalTransformer(_Base):
    """One shared block applied over depth, optionally with per-position ACT.

    Attention dict: ``"attention" [B, S, H, T, T]`` (S = depth steps run), and with ACT
    ``"halting" [B, T, depth]`` (p^n per position) and ``"ponder" [B, T]`` (rho = N + R; 0 at padding);
    with ``attend_readout`` also ``"readout" [B, H, T, T]`` (the read over the mean fields).
    """

    def __init__(self, input_size: int, output_size: int, cfg: UTConfig | UTACTConfig = UTConfig()) -> None:
        super().__init__(input_size, output_size, cfg)
        act = isinstance(cfg, UTACTConfig)
        tau, eps, halting_bias = (cfg.tau, cfg.eps, cfg.halting_bias) if act else (0.0, 0.01, 1.0)
        require(cfg.depth >= 1, f"depth must be >= 1, got {cfg.depth}")
        require(tau >= 0.0, f"tau must be >= 0, got {tau}")
        self.block = Block(cfg.d_model, cfg.heads, dropout=cfg.dropout)
        self.depth, self.act, self.tau, self.eps = cfg.depth, act, tau, eps
        self.expose_mean_field = act and cfg.expose_mean_field
        self.halt = nn.Linear(cfg.d_model, 1)
        nn.init.constant_(self.halt.bias, halting_bias)
        if act and cfg.zero_halting_weights:
            nn.init.zeros_(self.halt.weight)
        attend = act and cfg.attend_readout
        self.read_norm = nn.LayerNorm(cfg.d_model) if attend else None
        self.read = MultiHeadSelfAttention(cfg.d_model, cfg.heads) if attend else None

    def forward(self, inputs: torch.Tensor, pad_mask: torch.Tensor | None = None) -> SequenceOutput:
        x, pad, allowed, pos = self.prepare(inputs, pad_mask)
        batch, steps, _ = x.shape
        maps = []
        if not self.act:
            for n in range(self.depth):
                x, weights = self.block(
                    x + pos + sinusoid(torch.tensor(n, device=x.device), self.d_model), allowed
                )
                maps.append(weights)
            return self.readout(self.norm(x)), {"attention": torch.stack(maps, dim=1)}, x.new_zeros(())

        real = torch.ones(batch, steps, dtype=torch.bool, device=x.device) if pad is None else ~pad
        halted = ~real.reshape(-1)  # padding never ponders
        acc = x.new_zeros(batch * steps)
        ponder = x.new_zeros(batch * steps)
        mean_field = torch.zeros_like(x)
        halting = []
        for n in range(1, self.depth + 1):
            new, weights = self.block(
                x + pos + sinusoid(torch.tensor(n - 1, device=x.device), self.d_model), allowed
            )
            maps.append(weights)
            h = torch.sigmoid(self.halt(new)).reshape(-1)  # [B*T]
            was_halted = halted
            step = halting_step(h, acc, halted, n, self.depth, self.eps)
            mean_field = mean_field + step.weight.view(batch, steps, 1) * new
            halting.append(step.weight.view(batch, steps))
            ponder = ponder + step.ponder
            x = torch.where(was_halted.view(batch, steps, 1), x, new)  # halted positions keep their state
            if self.expose_mean_field:  # ... or show their mean field from the step they halt on
                x = torch.where((step.halted & real.reshape(-1)).view(batch, steps, 1), mean_field, x)
            acc, halted = step.accumulated, step.halted
            if bool(halted.all()):
                break
        rho = ponder.view(batch, steps)
        per_seq = (rho * real).sum(1) / real.sum(1).clamp(min=1)
        halting_t = nn.functional.pad(torch.stack(halting, dim=2), (0, self.depth - len(halting)))
        attention = {"attention": torch.stack(maps, dim=1), "halting": halting_t, "ponder": rho}
        out = mean_field
        if self.read is not None:  # y_t = m_t + Attn(q = LN(m_t); k, v = LN(m_j), every real j)
            read, attention["readout"] = self.read(self.read_norm(mean_field), allowed)  # [B, H, T, T]
            out = mean_field + read
        return self.readout(self.norm(out)), attention, self.tau * per_seq.mean()
