"""A (bi)directional LSTM over pen points with CTC: the online handwriting recogniser of Graves et al. (2009).

For pen points ``x [B, T, 3]`` (dx, dy, eos) and ``K = len(ALPHABET) + 1`` classes (0 = blank)::

    h_t = [LSTM_fwd(x_1..x_t) ; LSTM_bwd(x_T..x_t)]     L stacked layers, H units per direction
    y_t = softmax(W h_t + b)                            [B, T, K]

trained with the CTC loss ``-log sum_{paths pi that collapse to z} prod_t y_t(pi_t)``
(``torch.nn.CTCLoss``). ``bidirectional=False`` gives the unidirectional LSTM of the comparison (the
same code, so equal CPU budgets compare like with like). Padded batches pass ``lengths`` so that the
backward direction starts at each sequence's own last point.

Decoding (``log_probs [T, K]`` of one sequence):

- :func:`greedy_decode`: the most probable class at every step, collapsed (merge repeats, drop blanks);
- :func:`prefix_beam_decode`: CTC prefix beam search (no language model): keep the ``beam`` most
  probable labellings, each with the probability of its paths ending in a blank and in its last label.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from torch import nn

from heed.agents.common.validate import Range
from heed.agents.cores.base import HiddenSize, PartName, part_name
from heed.agents.sequence import SequenceOutput
from heed.envs.handwriting import PenSample, encode_labels
from heed.envs.pen_env import BLANK, ctc_collapse


@dataclass(frozen=True)
class BLSTMConfig:
    """A stack of (bi)directional LSTM layers with a linear readout at every step."""

    name: PartName = part_name("blstm")
    hidden_size: Annotated[int, HiddenSize] = 64
    """H: LSTM units per direction and layer"""
    layers: Annotated[int, Range(1, 8)] = 2
    """L: stacked LSTM layers"""
    bidirectional: bool = True
    """read the sequence both ways (BLSTM); --model.no-bidirectional gives the causal LSTM"""


def reverse_within(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``x [B, T, ...]`` with each row's first ``lengths[b]`` steps reversed (padding stays at the end)."""
    steps = x.shape[1]
    if lengths is None:
        return x.flip(1)
    t = torch.arange(steps, device=x.device)[None]  # [1, T]
    last = lengths.to(x.device)[:, None] - 1  # [B, 1]
    index = torch.where(t <= last, last - t, t)  # [B, T]
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


class BLSTM(nn.Module):
    """``[B, T, D] -> (logits [B, T, K], {}, 0)``; ``forward(x, lengths)`` for padded batches.

    Each layer is a forward ``nn.LSTM`` over ``x`` and, when bidirectional, a second one over every
    row reversed within its length (:func:`reverse_within`), reversed back and concatenated: the
    same function as a packed bidirectional ``nn.LSTM``, several times faster on a CPU.
    """

    def __init__(self, input_size: int, output_size: int, cfg: BLSTMConfig = BLSTMConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        directions = 2 if cfg.bidirectional else 1
        sizes = [input_size] + [cfg.hidden_size * directions] * (cfg.layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(d, cfg.hidden_size, batch_first=True) for d in sizes)
        self.backward_layers = nn.ModuleList(
            nn.LSTM(d, cfg.hidden_size, batch_first=True) for d in (sizes if cfg.bidirectional else []))
        self.readout = nn.Linear(cfg.hidden_size * directions, output_size)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> SequenceOutput:
        hidden = inputs  # [B, T, D]
        for i, layer in enumerate(self.forward_layers):
            parts = [layer(hidden)[0]]  # [B, T, H]
            if self.cfg.bidirectional:
                parts.append(reverse_within(self.backward_layers[i](reverse_within(hidden, lengths))[0], lengths))
            hidden = torch.cat(parts, -1)  # [B, T, H or 2H]
        return self.readout(hidden), {}, inputs.new_zeros(())


@dataclass
class PenBatch:
    """Padded pen samples as tensors: what :func:`ctc_loss` and the decoders take."""

    inputs: torch.Tensor  # [B, T, 3] float32, zero after each sequence's end
    lengths: torch.Tensor  # [B] int64 points per sequence
    labels: torch.Tensor  # [sum L_b] int64 concatenated CTC labels (1..K-1)
    label_lengths: torch.Tensor  # [B] int64
    texts: list[str]


def collate(samples: list[PenSample], device: torch.device | str = "cpu") -> PenBatch:
    """Pad ``samples`` into one :class:`PenBatch` on ``device``."""
    lengths = [len(s.points) for s in samples]
    inputs = np.zeros((len(samples), max(lengths), 3), np.float32)
    for i, s in enumerate(samples):
        inputs[i, : len(s.points)] = s.points
    labels = [encode_labels(s.text) for s in samples]
    return PenBatch(
        inputs=torch.from_numpy(inputs).to(device),
        lengths=torch.tensor(lengths, dtype=torch.int64, device=device),
        labels=torch.from_numpy(np.concatenate(labels)).to(device),
        label_lengths=torch.tensor([len(z) for z in labels], dtype=torch.int64, device=device),
        texts=[s.text for s in samples],
    )


def ctc_loss(logits: torch.Tensor, batch: PenBatch) -> torch.Tensor:
    """Mean over the batch of the CTC loss per sequence (nats), for ``logits [B, T, K]`` (blank = 0)."""
    log_probs = torch.log_softmax(logits, -1).transpose(0, 1)  # [T, B, K], as CTCLoss wants
    loss = nn.functional.ctc_loss(log_probs, batch.labels, batch.lengths, batch.label_lengths,
                                  blank=BLANK, reduction="none", zero_infinity=True)
    return loss.mean()


def greedy_decode(log_probs: np.ndarray | torch.Tensor) -> list[int]:
    """Best path decoding of one sequence ``[T, K]``: argmax per step, then :func:`ctc_collapse`."""
    return ctc_collapse(np.asarray(log_probs).argmax(-1))


def _logsumexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    top = max(a, b)
    return top + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_decode(log_probs: np.ndarray | torch.Tensor, beam: int = 8, prune: float = -12.0) -> list[int]:
    """CTC prefix beam search on one sequence ``[T, K]`` of log probabilities (blank = 0).

    Each prefix ``l`` carries ``p_b(l)`` and ``p_nb(l)``: the log probability of all paths so far that
    collapse to ``l`` and end in a blank / in ``l``'s last label. At step t, for class k with log
    probability ``y``: blank: ``p_b(l) += (p_b + p_nb)(l) y``; the last label again:
    ``p_nb(l) += p_nb(l) y`` and ``p_nb(l + k) += p_b(l) y``; any other label:
    ``p_nb(l + k) += (p_b + p_nb)(l) y``. The ``beam`` best prefixes by ``p_b + p_nb`` survive.
    Classes with ``y < prune`` at a step are skipped (their paths are negligible; ``-inf`` keeps all).
    """
    lp = np.asarray(log_probs, np.float64)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}
    for row in lp:
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (p_b, p_nb) in beams.items():
            total = _logsumexp(p_b, p_nb)
            for k in np.flatnonzero(row >= prune).tolist():
                y = float(row[k])
                if k == BLANK:
                    entry = nxt[prefix]
                    entry[0] = _logsumexp(entry[0], total + y)
                elif prefix and k == prefix[-1]:
                    same = nxt[prefix]
                    same[1] = _logsumexp(same[1], p_nb + y)
                    longer = nxt[prefix + (k,)]
                    longer[1] = _logsumexp(longer[1], p_b + y)
                else:
                    longer = nxt[prefix + (k,)]
                    longer[1] = _logsumexp(longer[1], total + y)
        ranked = sorted(nxt.items(), key=lambda kv: _logsumexp(*kv[1]), reverse=True)[:beam]
        beams = {prefix: (p[0], p[1]) for prefix, p in ranked}
    return list(max(beams.items(), key=lambda kv: _logsumexp(*kv[1]))[0])
