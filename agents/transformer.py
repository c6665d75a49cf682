"""Self-attention sequence models: a Transformer encoder and the Universal Transformer (with ACT).

Their parts (scaled dot-product attention ``A = softmax(Q K^T / sqrt(d_k) + M)``, masks, sinusoid and
rotary positions, the pre-norm block) are in :mod:`heed.agents.transformer_attention`, and are
importable from here too.

The Universal Transformer (Dehghani et al. 2019) applies ONE pre-norm layer (attention + transition)
repeatedly over depth, adding position and timestep embeddings at every step::

    s^n = Layer(s^{n-1} + P_pos + P_n)

With ACT every position halts on its own (the rule of :func:`agents.cores.act.halting_step`); a
halted position keeps its state (so it stays readable as a key) and the output is the mean field
``sum_n p^n s^n``. ``aux_loss = tau * mean_b (mean over real positions of rho)``; with ``tau_warmup``
/ ``tau_ramp`` the weight is 0 for the first updates and then ramps to ``tau``
(:meth:`UniversalTransformer.ponder_weight`), and ``halting_norm`` has the halting unit read
``LayerNorm(s^n)``.

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
depends on inputs 0..t only (tests/test_text_transformer.py checks it with the sequential Jacobian),
and it decodes incrementally with a key/value cache (:mod:`heed.agents.kv_cache`: ``empty_cache``,
``extend``, ``slide``; absolute positions without segment restarts; no padding in what it reads).

Models in the table of parts (:mod:`heed.agents.parts`): ``transformer`` (:class:`TransformerConfig`),
``ut`` (fixed depth, :class:`UTConfig`) and ``ut-act`` (:class:`UTACTConfig`). Each maps
``inputs [B, T, D]`` to ``(logits [B, T, K], attention, aux_loss)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

import torch
from torch import nn

from heed.agents.common.errors import require
from heed.agents.common.validate import NonNegative, Range
from heed.agents.cores.act import halting_step
from heed.agents.cores.base import HeadCount, HiddenSize, PartName, part_name
from heed.agents.kv_cache import KeyValues
from heed.agents.transformer_attention import (  # noqa: F401  (re-exported: heed.agents.transformer.X)
    NEG,
    Block,
    MultiHeadSelfAttention,
    RotaryTables,
    attention_mask,
    rotary_range,
    rotary_tables,
    rotate,
    segment_positions,
    sinusoid,
)

SequenceOutput = tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]  # logits, attention, aux_loss


class TransformerCache(NamedTuple):
    """A causal :class:`TransformerModel` after ``steps`` steps read: one key/value cache per block
    (rotary: at most the rolling window's steps), and ``steps``, the next step's position."""

    layers: tuple[KeyValues, ...]
    steps: int

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
    tau_warmup: Annotated[int, NonNegative] = 0
    """ponder cost 0 for the first this many training updates (forward passes in training mode with
    gradient), so the task loss shapes the halting before the cost acts; 0 = off"""
    tau_ramp: Annotated[int, NonNegative] = 0
    """after the warm-up, raise the ponder cost linearly from 0 to tau over this many updates"""
    halting_norm: bool = False
    """the halting unit reads LayerNorm(s^n) instead of the unnormalised block output s^n"""


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
        return self.embed_inputs(inputs), pad_mask, allowed, pos

    def embed_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs [B, T, D]`` embedded and scaled, ``sqrt(d_model) W inputs`` ``[B, T, d]`` (Vaswani et al.)."""
        return self.embed(inputs) * math.sqrt(self.d_model)


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

    def encode_positions(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, RotaryTables | None]:
        """``x [B, T, d]`` plus the learned or sinusoid code of integer ``positions [T]`` or ``[B, T]``;
        rotary: ``x`` unchanged and the :func:`rotary_tables` of ``positions`` for every head."""
        if self.positions == "rotary":
            return x, rotary_tables(positions, self.head_width)
        if self.positions == "learned":
            require(int(positions.max()) < self.max_len,
                    f"learned positions go up to {self.max_len - 1}; this input needs {int(positions.max())}")
            return x + self.position_table[positions], None  # [T, d] or [B, T, d]
        return x + sinusoid(positions, self.d_model), None

    def forward(self, inputs: torch.Tensor, pad_mask: torch.Tensor | None = None) -> SequenceOutput:
        x, _, allowed, pos = self.prepare(inputs, pad_mask)
        if self.positions == "sinusoid":
            x, rope = x + pos, None
        else:  # the integer positions behind ``pos`` (offsets and segment restarts included)
            x, rope = self.encode_positions(x, self.integer_positions(inputs))
        # a training step (train mode, gradients on) does not need the weights: the fused kernel then
        # (evaluation, figures, TensorBoard images and Jacobians in eval mode still get every map)
        need_weights = not (self.training and torch.is_grad_enabled())
        maps = []
        for block in self.blocks:
            x, weights = block(x, allowed, rope, need_weights)
            maps.append(weights)
        attention = {} if maps and maps[0] is None else {"attention": torch.stack(maps, dim=1)}
        return self.readout(self.norm(x)), attention, x.new_zeros(())

    def empty_cache(self, batch_size: int) -> TransformerCache | None:
        """One empty :class:`~heed.agents.kv_cache.KeyValues` per block (``[B, H, 0, d_k]``); None when
        the model cannot decode step by step (not causal, or positions that restart at a marker)."""
        if not self.causal or self.reset_unit >= 0:
            return None
        empty = self.embed.weight.new_zeros(batch_size, self.blocks[0].attn.heads, 0, self.head_width)
        return TransformerCache(tuple(KeyValues(empty, empty) for _ in self.blocks), 0)

    def extend(self, inputs: torch.Tensor, cache: TransformerCache) -> tuple[torch.Tensor, TransformerCache]:
        """Logits ``[B, T, K]`` of the next T steps ``inputs [B, T, D]`` at positions ``cache.steps + 0..T-1``,
        and the cache after them. Equal to :meth:`forward` over the whole sequence at those steps
        (evaluation mode, no padding)."""
        require(inputs.dim() == 3, f"inputs must be [B, T, D], got {tuple(inputs.shape)}")
        steps = cache.steps + inputs.shape[1]
        x = self.embed_inputs(inputs)
        if self.positions == "rotary":
            rope = rotary_range(cache.steps, steps, self.head_width, inputs.device)
        else:
            x, rope = self.encode_positions(x, torch.arange(cache.steps, steps, device=inputs.device))
        layers = []
        for block, layer in zip(self.blocks, cache.layers):
            x, layer = block.extend(x, layer, rope)
            layers.append(layer)
        return self.readout(self.norm(x)), TransformerCache(tuple(layers), steps)

    def slide(self, cache: TransformerCache, keep: int) -> TransformerCache | None:
        """Rotary positions: the cache of the last ``keep`` steps only, so the next step (at the next
        position) attends over a rolling window; only the offsets ``t - j`` of rotary positions matter.
        Learned and sinusoid positions are absolute, trained up to the window: None (re-read instead)."""
        if self.positions != "rotary":
            return None
        return TransformerCache(tuple(layer.last(keep) for layer in cache.layers), cache.steps)


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
        self.halt_norm = nn.LayerNorm(cfg.d_model) if act and cfg.halting_norm else None
        self.tau_warmup, self.tau_ramp = (cfg.tau_warmup, cfg.tau_ramp) if act else (0, 0)
        if self.tau_warmup or self.tau_ramp:  # only then, so that other checkpoints keep their keys
            self.register_buffer("tau_updates", torch.zeros((), dtype=torch.long))
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
            halt_in = new if self.halt_norm is None else self.halt_norm(new)  # s^n, or LN(s^n)
            h = torch.sigmoid(self.halt(halt_in)).reshape(-1)  # [B*T]
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
        return self.readout(self.norm(out)), attention, self.ponder_weight() * per_seq.mean()

    def ponder_weight(self) -> float:
        """The ponder cost weight of this forward pass: ``tau`` without a warm-up; with one, after k
        earlier training updates, ``tau * clip((k - warmup + 1) / ramp, 0, 1)`` (ramp > 0) or
        ``tau * [k >= warmup]`` (ramp = 0). A training forward pass with gradient counts as an update
        (this call advances the counter ``tau_updates`` then).

        Examples (warmup 2, ramp 4): updates 0, 1 -> 0; 2 -> tau/4; 3 -> tau/2; 4 -> 3 tau/4; 5 on -> tau.
        """
        if not (self.tau_warmup or self.tau_ramp):
            return self.tau
        k = int(self.tau_updates)
        if self.training and torch.is_grad_enabled():
            self.tau_updates += 1
        if self.tau_ramp == 0:
            return self.tau if k >= self.tau_warmup else 0.0
        return self.tau * min(max((k - self.tau_warmup + 1) / self.tau_ramp, 0.0), 1.0)
