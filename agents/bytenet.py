"""ByteNet (Kalchbrenner et al. 2016): a deep dilated-convolution translator with no attention.

Reads the seq2seq layout of :mod:`heed.envs.translation` (``D = Vs + K + 2``; see
:func:`heed.agents.seq2seq.split_layout`) and returns ``(logits [B, T, K], {}, 0)`` like
:class:`heed.agents.seq2seq.EncoderDecoder`, logits on the decoder steps, zeros on source steps.
heed's tasks are word level, so the units here are words (the paper's are characters).

- **Encoder**: source words embedded, ``e_j = E_s x_j`` (``[B, S, C]``), then
  ``encoder_repeats x levels`` residual blocks whose dilated convolution is *centred* (sees both
  sides), dilations ``1, 2, 4, ..., 2^(levels-1)`` repeated. Positions past a row's last word are
  zeroed before every convolution, so a row's encoding does not depend on the batch's padding.
- **Dynamic unfolding**: decoder step ``i`` (which predicts ``y_i``) reads the encoder output at the
  same position, ``u_i = enc_i`` for ``i < S``, 0 beyond: the target is *stacked* on the source
  representation (the paper's ``|t| = a|s| + b`` with ``a = 1``), and nothing attends.
- **Decoder**: ``d_i = W [E_t y_{i-1}; u_i]`` then ``decoder_repeats x levels`` residual blocks with
  *causal* (masked) dilated convolutions, then ``logits_i = L d_i``.

Residual block (the paper's Fig. 3, ReLU variant), on ``x [B, T, C]``::

    h = W_1 relu(LN(x))                      # 1x1: C -> C/2
    h = conv_{k, dilation r}(relu(LN(h)))     # C/2 -> C/2, centred or causal padding
    x + W_2 relu(LN(h))                      # 1x1: C/2 -> C

Receptive fields (``k`` = ``kernel_size``, ``n`` = ``levels``, ``R`` = repeats), in steps:

- decoder, causal: output ``i`` depends on decoder inputs ``i - r_dec .. i`` with
  ``r_dec = R_dec (k - 1) (2^n - 1)``;
- encoder, centred (odd ``k``): ``enc_j`` depends on source words ``j - r_enc .. j + r_enc`` with
  ``r_enc = R_enc ((k - 1) / 2) (2^n - 1)``;
- so output ``i`` depends on source words ``i - r_dec - r_enc .. min(i, S - 1) + r_enc`` (the
  unfolding stops at the source's last position ``S - 1``). The defaults give
  ``r_dec = 124`` and ``r_enc = 62``: every word of a 60-word sentence.

Decoding (:meth:`ByteNet.greedy`, :meth:`ByteNet.beam`) goes through
:func:`heed.agents.seq2seq.beam_search` (width 1 is greedy); the decoder is re-run on the whole
prefix at each step (``O(L^2)``, no cached activations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from heed.agents.common.validate import Range
from heed.agents.cores.base import PartName, part_name
from heed.agents.seq2seq import SequenceOutput, beam_search, split_layout


@dataclass(frozen=True)
class ByteNetConfig:
    """A ByteNet-style translator: dilated residual convolutions, decoder stacked on the encoder, no attention.

    The defaults (C = 128, 2 x 5 blocks on each side: 20 blocks, ~0.6 M parameters on the
    ``translation`` task) train at a few hundred sentences per CPU-second on one thread.
    """

    name: PartName = part_name("bytenet")
    channels: Annotated[int, Range(2, 4096)] = 128
    """C: width of the residual stream (the blocks' inner width is C/2)"""
    kernel_size: Annotated[int, Range(2, 15)] = 3
    """k: taps of each dilated convolution (odd: the encoder's is centred)"""
    levels: Annotated[int, Range(1, 12)] = 5
    """n: blocks per repeat, dilations 1, 2, 4, ..., 2^(n-1)"""
    encoder_repeats: Annotated[int, Range(1, 16)] = 2
    """R_enc: how many times the encoder repeats the dilation series"""
    decoder_repeats: Annotated[int, Range(1, 16)] = 2
    """R_dec: how many times the decoder repeats the dilation series"""


def receptive_fields(cfg: ByteNetConfig) -> tuple[int, int]:
    """``(r_dec, r_enc)``: steps back a decoder output sees, and steps to each side an encoder output sees."""
    span = (2**cfg.levels - 1) * (cfg.kernel_size - 1)
    return cfg.decoder_repeats * span, cfg.encoder_repeats * span // 2


class ResidualBlock(nn.Module):
    """One ByteNet block (module docstring) on ``[B, T, C]``; ``causal`` pads the convolution on the left only."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, causal: bool) -> None:
        super().__init__()
        inner = channels // 2
        width = (kernel_size - 1) * dilation
        self.pad = (width, 0) if causal else (width // 2, width - width // 2)
        self.norm_in, self.reduce = nn.LayerNorm(channels), nn.Linear(channels, inner)
        self.norm_conv = nn.LayerNorm(inner)
        self.conv = nn.Conv1d(inner, inner, kernel_size, dilation=dilation)
        self.norm_out, self.expand = nn.LayerNorm(inner), nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, T, C]`` -> ``[B, T, C]``; ``keep [B, T, 1]`` zeroes padding before the convolution."""
        h = F.relu(self.norm_conv(self.reduce(F.relu(self.norm_in(x)))))  # [B, T, C/2]
        if keep is not None:
            h = h * keep
        h = self.conv(F.pad(h.transpose(1, 2), self.pad)).transpose(1, 2)  # [B, T, C/2]
        return x + self.expand(F.relu(self.norm_out(h)))


class ByteNet(nn.Module):
    """ByteNet over the seq2seq layout (:class:`ByteNetConfig`; see the module docstring)."""

    kind = "none"  # no attention: translation_figures draws its gradient map, never an alignment

    def __init__(self, input_size: int, output_size: int, cfg: ByteNetConfig) -> None:
        super().__init__()
        if input_size <= output_size + 2:
            raise ValueError(
                f"the seq2seq layout needs input_size > output_size + 2, got {input_size}, {output_size}"
            )
        if cfg.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the encoder's convolution is centred), got {cfg.kernel_size}")
        self.cfg, self.output_size = cfg, output_size
        c, k = cfg.channels, cfg.kernel_size
        dilations = [2**i for i in range(cfg.levels)]
        self.embed_source = nn.Linear(input_size - output_size - 2, c, bias=False)
        self.embed_target = nn.Linear(output_size, c, bias=False)
        self.stack = nn.Linear(2 * c, c)  # [E_t y_{i-1}; u_i] -> d_i
        self.encoder = nn.ModuleList(
            ResidualBlock(c, k, d, causal=False) for _ in range(cfg.encoder_repeats) for d in dilations
        )
        self.decoder = nn.ModuleList(
            ResidualBlock(c, k, d, causal=True) for _ in range(cfg.decoder_repeats) for d in dilations
        )
        self.readout = nn.Sequential(nn.LayerNorm(c), nn.ReLU(), nn.Linear(c, output_size))

    def encode(self, source: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``enc [B, S, C]`` of one-hot source words ``[B, S, Vs]`` (0 at padding, ``valid [B, S]`` False)."""
        keep = valid[..., None].to(source.dtype)  # [B, S, 1]
        x = self.embed_source(source) * keep
        for block in self.encoder:
            x = block(x, keep) * keep
        return x

    def decode(self, previous: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, M, K]`` from the one-hot previous classes ``[B, M, K]`` and :meth:`encode`'s output."""
        m, s = previous.shape[1], encoded.shape[1]
        unfolded = F.pad(encoded[:, :m], (0, 0, 0, max(m - s, 0)))  # [B, M, C]: u_i = enc_i, 0 past S
        x = self.stack(torch.cat([self.embed_target(previous), unfolded], -1))  # [B, M, C]
        for block in self.decoder:
            x = block(x)
        return self.readout(x)

    def forward(self, inputs: torch.Tensor) -> SequenceOutput:
        source, valid, previous = split_layout(inputs, self.output_size)
        logits = self.decode(previous, self.encode(source, valid))
        out = torch.cat([logits.new_zeros(inputs.shape[0], source.shape[1], self.output_size), logits], 1)
        return out, {}, out.new_zeros(())

    @torch.no_grad()
    def beam(self, inputs: torch.Tensor, width: int = 4, max_len: int = 100) -> tuple[torch.Tensor, None]:
        """Beam-search decoding (:func:`~heed.agents.seq2seq.beam_search`) from the source part of ``inputs``.

        Returns ``(classes [B, L] int64, None)``: the hypothesis with the highest length-normalised
        log-probability, its ``</s>`` (0) included, then 0; no alignment (ByteNet has no attention).
        """
        source, valid, _ = split_layout(inputs, self.output_size)
        encoded = self.encode(source, valid).repeat_interleave(width, 0)  # [B * width, S, C]
        prefix = torch.zeros(encoded.shape[0], 0, dtype=torch.long, device=inputs.device)

        def step(previous: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple, None]:
            grown = torch.cat([state[0], previous[:, None]], 1)  # [N, i + 1]
            onehot = F.one_hot(grown, self.output_size).to(encoded.dtype)
            logits = self.decode(onehot, state[1])[:, -1]  # [N, K]
            return torch.log_softmax(logits, -1), (grown, state[1]), None

        found = beam_search(step, (prefix, encoded), inputs.shape[0], width, max_len)
        return found.classes, None

    def greedy(self, inputs: torch.Tensor, max_len: int = 100) -> tuple[torch.Tensor, None]:
        """Greedy decoding: :meth:`beam` with width 1 (the argmax fed back at every step)."""
        return self.beam(inputs, width=1, max_len=max_len)
