"""An attentive reader (Hermann et al. 2015): one attention over the steps of a story to answer its question.

It reads the layout of the ``babi`` task (:mod:`heed.envs.babi`): each row is a story followed by its
question, right-padded with zero vectors, and the target sits at the row's last non-zero step (the
question sentence with ``encoding="facts"``, the ``<answer>`` token with ``encoding="words"``). So the
last valid step ``L - 1`` is the query and the steps ``0 .. L - 2`` are what is attended over (story
sentences, or story and question words).

- Encoder: a bidirectional GRU over the embedded valid steps, ``h_t = [fwd_t; bwd_t]`` (``[B, T, 2H]``);
  each row's backward pass starts at its own last valid step (padding is never read).
- Query: the final states at the question, ``u = [fwd_{L-1}; bwd_{L-1}]`` (``[B, 2H]``): the forward
  state that has read story then question, and the backward state that has read the question only.
- Attention over the story steps ``s < L - 1``, by ``attention``:

  - ``additive``: ``e_s = w^T tanh(W u + U h_s)``;
  - ``dot``: ``e_s = (W u)^T h_s / sqrt(2H)``;

  ``alpha_s = softmax_s e_s`` over the row's story steps (0 on the query step, on padding and after it),
  read out as ``r = sum_s alpha_s h_s``.
- Answer: ``g = tanh(W_g [r; u])``, ``logits = L g`` at step ``L - 1`` (zeros on every other step, which
  the task's mask leaves out).

``forward`` returns ``(logits [B, T, K], {"attention": [B, T, T]}, aux)``: row ``L - 1`` of the attention
holds ``alpha`` over the steps, every other row is 0 (the layout of RNNsearch's ``alignment``), so the
supervised trainer logs it as an image and figures read ``attention[b, L - 1]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import nn

from heed.agents.common.validate import Range
from heed.agents.cores.base import HiddenSize, PartName, part_name
from heed.agents.seq2seq import additive_scores, attend, dot_scores

SequenceOutput = tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ReaderConfig:
    """An attentive reader: a bidirectional GRU over the story, one attention from the question."""

    name: PartName = part_name("reader")
    hidden_size: Annotated[int, HiddenSize] = 64
    """GRU units per direction"""
    embed_size: Annotated[int, Range(1, 4096)] = 64
    """size of the linear embedding of each input step"""
    attention: Literal["additive", "dot"] = "additive"
    """scores: additive (Bahdanau) or dot (bilinear)"""
    attention_size: Annotated[int, Range(1, 4096)] = 64
    """A: hidden size of the additive scorer"""


def split_story(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(valid [B, T], story [B, T], last [B])`` of a right-padded batch ``[B, T, D]``.

    ``valid`` marks non-zero steps, ``last = L - 1`` is each row's final valid step (the query; 0 for an
    empty row) and ``story`` the valid steps before it.
    """
    valid = inputs.abs().sum(-1) > 0  # [B, T]
    lengths = valid.sum(1)  # [B]
    last = (lengths - 1).clamp_min(0)
    steps = torch.arange(inputs.shape[1], device=inputs.device)
    return valid, steps[None, :] < last[:, None], last


class AttentiveReader(nn.Module):
    """The attentive reader over the ``babi`` layout; see the module docstring for the equations."""

    def __init__(self, input_size: int, output_size: int, cfg: ReaderConfig = ReaderConfig()) -> None:
        super().__init__()
        self.cfg, self.output_size = cfg, output_size
        h, e, a = cfg.hidden_size, cfg.embed_size, cfg.attention_size
        self.embed = nn.Linear(input_size, e)
        self.forward_rnn = nn.GRU(e, h, batch_first=True)
        self.backward_rnn = nn.GRU(e, h, batch_first=True)
        if cfg.attention == "additive":
            self.query = nn.Linear(2 * h, a)
            self.keys = nn.Linear(2 * h, a, bias=False)
            self.score_vector = nn.Parameter(torch.randn(a) / math.sqrt(a))
        else:
            self.query = nn.Linear(2 * h, 2 * h, bias=False)
        self.combine = nn.Linear(4 * h, 2 * h)
        self.readout = nn.Linear(2 * h, output_size)

    def encode(self, inputs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Annotations ``h [B, T, 2H]`` of the valid steps (padding steps hold unused values)."""
        x = self.embed(inputs)  # [B, T, E]
        steps = x.shape[1]
        lengths = valid.sum(1, keepdim=True)  # [B, 1]
        j = torch.arange(steps, device=x.device).expand(x.shape[0], steps)
        flip = torch.where(j < lengths, lengths - 1 - j, j)  # reverse each row's valid steps, padding stays last
        fwd, _ = self.forward_rnn(x)  # [B, T, H]: causal, so exact on valid steps of a right-padded row
        bwd, _ = self.backward_rnn(x.gather(1, flip[..., None].expand_as(x)))
        bwd = bwd.gather(1, flip[..., None].expand_as(bwd))  # back to story order
        return torch.cat([fwd, bwd], dim=-1)

    def read(
        self, question: torch.Tensor, annotations: torch.Tensor, story: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention ``alpha [B, T]`` (sums to 1 over ``story``, 0 elsewhere) and readout ``r [B, 2H]``.

        Args: question ``u [B, 2H]``, annotations ``h [B, T, 2H]``, story bool ``[B, T]``.
        """
        if self.cfg.attention == "additive":
            scores = additive_scores(self.query(question), self.keys(annotations), self.score_vector)
        else:
            scores = dot_scores(self.query(question), annotations)
        return attend(scores, story, annotations)

    def forward(self, inputs: torch.Tensor) -> SequenceOutput:
        """``inputs [B, T, D]`` -> ``(logits [B, T, K], {"attention": [B, T, T]}, aux 0)``."""
        valid, story, last = split_story(inputs)
        annotations = self.encode(inputs, valid)  # [B, T, 2H]
        index = last[:, None, None].expand(-1, 1, annotations.shape[-1])
        question = annotations.gather(1, index).squeeze(1)  # u = [fwd_{L-1}; bwd_{L-1}]  [B, 2H]
        alpha, summary = self.read(question, annotations, story)  # [B, T], [B, 2H]
        answer = self.readout(torch.tanh(self.combine(torch.cat([summary, question], -1))))  # [B, K]
        batch, steps = inputs.shape[:2]
        at_last = (torch.arange(steps, device=inputs.device)[None, :] == last[:, None]) & valid.any(1, keepdim=True)
        logits = at_last[..., None] * answer[:, None, :]  # [B, T, K], non-zero only at step L - 1
        attention = at_last[..., None] * alpha[:, None, :]  # [B, T, T], row L - 1 holds alpha
        return logits, {"attention": attention}, logits.new_zeros(())
