"""GRU encoder-decoders over the seq2seq layout: RNNencdec and RNNsearch (Bahdanau et al. 2014).

Both read a batch in the layout of :mod:`heed.envs.translation` (``D = Vs + K + 2``: source words,
the teacher-forced previous target class, a source flag and a target flag; the decoder starts at the
first column where any row's target flag is set) and return ``(logits [B, T, K], attention, aux)``
with logits on the decoder steps (zeros on source steps, which the task's mask leaves out).

Encoder (both): a bidirectional GRU over the embedded source words, ``h_j = [fwd_j; bwd_j]``
(``[B, S, 2H]``); each row's backward pass starts at its own last word. The decoder starts from
``s_0 = tanh(W_0 [fwd_last; bwd_first])``.

- ``rnnencdec`` (Cho et al. 2014): the whole source is the fixed vector ``c = [fwd_last; bwd_first]``;
  ``s_i = GRU([E y_{i-1}; c], s_{i-1})``.
- ``rnnsearch``: a context per target word, ``c_i = sum_j alpha_ij v_j`` with
  ``alpha_ij = softmax_j e_ij`` over the row's source words and, by ``attention``:

  - ``additive`` (Bahdanau): ``e_ij = w^T tanh(W s_{i-1} + U h_j)``, ``v_j = h_j``;
  - ``dot``: ``e_ij = (W s_{i-1})^T h_j / sqrt(2H)``, ``v_j = h_j``;
  - ``key-value``: ``e_ij = (W s_{i-1})^T (U_k h_j) / sqrt(A)``, ``v_j = U_v h_j``: what is compared
    (the key) and what is read (the value) are separate projections.

  ``s_i = GRUCell([E y_{i-1}; c_i], s_{i-1})``; ``attention["alignment"]`` holds ``alpha`` ``[B, T, S]``
  (rows on decoder steps, zeros elsewhere), which the trainer logs as images.

Both: ``logits_i = L [s_i; c_i; E y_{i-1}]``. :meth:`EncoderDecoder.greedy` decodes without the
reference, feeding back the argmax; :meth:`EncoderDecoder.beam` keeps the ``k`` best prefixes
(:func:`beam_search`) and returns the one with the highest length-normalised log-probability.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from heed.agents.common.validate import Range
from heed.agents.cores.base import HiddenSize, PartName, part_name

SequenceOutput = tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]
NEG = -1e9  # scores of padding: exp underflows to 0, a row with no valid key stays finite


@dataclass(frozen=True)
class RNNEncDecConfig:
    """A GRU encoder-decoder without attention (RNNencdec)."""

    name: PartName = part_name("rnnencdec")
    hidden_size: Annotated[int, HiddenSize] = 128
    """GRU units per direction in the encoder (the decoder has as many)"""
    embed_size: Annotated[int, Range(1, 4096)] = 64
    """word embedding size"""


@dataclass(frozen=True)
class RNNSearchConfig:
    """A GRU encoder-decoder with attention over the source words (RNNsearch)."""

    name: PartName = part_name("rnnsearch")
    hidden_size: Annotated[int, HiddenSize] = 128
    """GRU units per direction in the encoder (the decoder has as many)"""
    embed_size: Annotated[int, Range(1, 4096)] = 64
    """word embedding size"""
    attention: Literal["additive", "dot", "key-value"] = "additive"
    """scores: additive (Bahdanau), dot (bilinear), key-value (separate key and value projections)"""
    attention_size: Annotated[int, Range(1, 4096)] = 128
    """A: size of the additive scorer's hidden layer / of the query and keys"""


# --- pure addressing functions -----------------------------------------------------------------------


def masked_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``alpha_j = exp(e_j) / sum_{k valid} exp(e_k)`` over the last dim, 0 where ``valid`` is False.

    Args: scores ``[..., S]``, valid bool ``[..., S]``. Returns ``[..., S]``; rows sum to 1.
    """
    return torch.softmax(scores.masked_fill(~valid, NEG), dim=-1) * valid


def additive_scores(query: torch.Tensor, keys: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``e_j = w^T tanh(q + k_j)``: query ``[B, A]`` (= W s), keys ``[B, S, A]`` (= U h_j), w ``[A]`` -> ``[B, S]``."""
    return torch.tanh(query[:, None, :] + keys) @ w


def dot_scores(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``e_j = q^T k_j / sqrt(A)``: query ``[B, A]``, keys ``[B, S, A]`` -> ``[B, S]``."""
    return (keys @ query[:, :, None]).squeeze(-1) / math.sqrt(keys.shape[-1])


def attend(
    scores: torch.Tensor, valid: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and readout ``r = sum_j alpha_j v_j``: scores ``[B, S]``, values ``[B, S, V]`` -> ``([B, S], [B, V])``."""
    alpha = masked_softmax(scores, valid)
    return alpha, (alpha[:, None, :] @ values).squeeze(1)


# --- beam search -------------------------------------------------------------------------------------

#: one decoder step: ``(previous classes [N] int64, state) -> (log p [N, K], state, record [N, ...] or None)``;
#: the state is a tuple of tensors with the N hypotheses in dim 0.
StepFn = Callable[[torch.Tensor, tuple], tuple[torch.Tensor, tuple, "torch.Tensor | None"]]


class BeamResult(NamedTuple):
    classes: torch.Tensor
    """``[B, L]`` int64: the best hypothesis of each row, its ``</s>`` (0) included, then 0"""
    records: torch.Tensor | None
    """``[B, L, ...]``: what the step function recorded along that hypothesis (e.g. the attention)"""
    score: torch.Tensor
    """``[B]``: its length-normalised log-probability ``(1/|y|) sum_i log p(y_i | y_<i, x)``"""


def beam_search(step: StepFn, state: tuple, batch: int, width: int, max_len: int) -> BeamResult:
    """Beam search over ``step`` for ``batch`` rows, ``width`` hypotheses each, class 0 = ``</s>``.

    Every hypothesis starts from the previous class 0. Each step extends every live hypothesis by every
    class; a finished one (its last class is 0) only by 0, at log-probability 0 and without growing.
    The ``width`` candidates of a row with the highest length-normalised score
    ``(1/|y|) sum_i log p(y_i | y_<i)`` (|y| counts the ``</s>``) are kept; the search stops when every
    kept hypothesis is finished or after ``max_len + 1`` steps, and returns the best one per row.
    With ``width == 1`` all candidates have the same length, so this is greedy decoding.

    Args:
        step: see :data:`StepFn`; called on ``N = batch * width`` hypotheses (row-major: row b's are
            ``b * width ... b * width + width - 1``), so ``state`` must already be repeated that way.
    """
    if width < 1:
        raise ValueError(f"beam width must be >= 1, got {width}")
    n = batch * width
    device = state[0].device
    score = torch.full((batch, width), -math.inf, device=device)
    score[:, 0] = 0.0  # one start hypothesis per row; the copies are never chosen
    length = torch.zeros(batch, width, device=device)
    finished = torch.zeros(batch, width, dtype=torch.bool, device=device)
    previous = torch.zeros(n, dtype=torch.long, device=device)
    history = torch.zeros(n, 0, dtype=torch.long, device=device)
    records: torch.Tensor | None = None
    offset = (torch.arange(batch, device=device) * width)[:, None]  # [B, 1]
    for _ in range(max_len + 1):
        logp, state, record = step(previous, state)  # [N, K]
        k = logp.shape[-1]
        logp = logp.view(batch, width, k)
        stay = torch.full_like(logp, -math.inf)
        stay[..., 0] = 0.0
        logp = torch.where(finished[..., None], stay, logp)
        total = score[..., None] + logp  # [B, W, K]
        grown = (length + (~finished).float())[..., None].expand_as(total)
        ranked = (total / grown).reshape(batch, width * k)
        _, best = ranked.topk(width, dim=-1)  # [B, W]
        parent, cls = best // k, best % k
        pick = (offset + parent).reshape(-1)  # [N] rows of the old hypotheses
        score = total.reshape(batch, -1).gather(1, best)
        length = grown.reshape(batch, -1).gather(1, best)
        previous = cls.reshape(-1)
        finished = previous.view(batch, width) == 0
        state = tuple(x.index_select(0, pick) for x in state)
        history = torch.cat([history.index_select(0, pick), previous[:, None]], 1)
        if record is not None:
            record = record.index_select(0, pick)[:, None]
            records = record if records is None else torch.cat([records.index_select(0, pick), record], 1)
        if bool(finished.all()):
            break
    norm = score / length.clamp_min(1.0)
    top = norm.argmax(-1)  # [B]
    chosen = (offset[:, 0] + top)  # [B]
    classes = history.index_select(0, chosen)  # [B, steps]
    ends = torch.where(classes == 0, torch.arange(classes.shape[1], device=device), classes.shape[1])
    keep = int(ends.min(1).values.clamp_max(classes.shape[1] - 1).max()) + 1
    return BeamResult(
        classes[:, :keep],
        None if records is None else records.index_select(0, chosen)[:, :keep],
        norm.gather(1, top[:, None])[:, 0],
    )


# --- the model ----------------------------------------------------------------------------------------


def split_layout(inputs: torch.Tensor, output_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The seq2seq layout's parts: ``(source [B, S, Vs], valid [B, S] bool, previous [B, M, K])``."""
    vs = inputs.shape[-1] - output_size - 2
    decoding = (inputs[..., -1] > 0).any(0)  # [T]
    start = int(decoding.float().argmax()) if bool(decoding.any()) else inputs.shape[1]
    return inputs[:, :start, :vs], inputs[:, :start, -2] > 0, inputs[:, start:, vs : vs + output_size]


class EncoderDecoder(nn.Module):
    """RNNencdec (:class:`RNNEncDecConfig`) or RNNsearch (:class:`RNNSearchConfig`); see the module docstring."""

    def __init__(self, input_size: int, output_size: int, cfg: RNNEncDecConfig | RNNSearchConfig) -> None:
        super().__init__()
        if input_size <= output_size + 2:
            raise ValueError(
                f"the seq2seq layout needs input_size > output_size + 2, got {input_size}, {output_size}"
            )
        self.cfg, self.output_size = cfg, output_size
        h, e = cfg.hidden_size, cfg.embed_size
        self.kind = getattr(cfg, "attention", "none")
        self.embed_source = nn.Linear(input_size - output_size - 2, e, bias=False)
        self.embed_target = nn.Linear(output_size, e, bias=False)
        self.forward_rnn = nn.GRU(e, h, batch_first=True)
        self.backward_rnn = nn.GRU(e, h, batch_first=True)
        self.init_state = nn.Linear(2 * h, h)
        if self.kind == "none":
            self.decoder = nn.GRU(e + 2 * h, h, batch_first=True)
        else:
            a = cfg.attention_size
            self.decoder_cell = nn.GRUCell(e + 2 * h, h)
            self.query = nn.Linear(h, 2 * h if self.kind == "dot" else a, bias=self.kind == "additive")
            if self.kind != "dot":
                self.keys = nn.Linear(2 * h, a, bias=False)
            if self.kind == "additive":
                self.score_vector = nn.Parameter(torch.randn(a) / math.sqrt(a))
            if self.kind == "key-value":
                self.values = nn.Linear(2 * h, 2 * h, bias=False)
        self.readout = nn.Linear(h + 2 * h + e, output_size)

    def encode(
        self, source: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(h [B, S, 2H], summary c [B, 2H], s_0 [B, H])`` of one-hot source words ``[B, S, Vs]``."""
        x = self.embed_source(source)  # [B, S, E]
        steps = x.shape[1]
        lengths = valid.sum(1, keepdim=True)  # [B, 1]
        j = torch.arange(steps, device=x.device).expand(x.shape[0], steps)
        flip = torch.where(j < lengths, lengths - 1 - j, j)  # reverse each row's words, keep padding last
        fwd, _ = self.forward_rnn(x)  # [B, S, H]
        bwd, _ = self.backward_rnn(x.gather(1, flip[..., None].expand_as(x)))
        bwd = bwd.gather(1, flip[..., None].expand_as(bwd))  # back to source order
        last = (lengths - 1).clamp_min(0)[..., None].expand(-1, 1, fwd.shape[-1])  # [B, 1, H]
        summary = torch.cat([fwd.gather(1, last).squeeze(1), bwd[:, 0]], dim=-1)  # [B, 2H]
        return torch.cat([fwd, bwd], dim=-1), summary, torch.tanh(self.init_state(summary))

    def _memory(self, annotations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``[B, S, .]`` of the annotations, computed once per sentence."""
        if self.kind == "additive":
            return self.keys(annotations), annotations
        if self.kind == "key-value":
            return self.keys(annotations), self.values(annotations)
        return annotations, annotations

    def _context(self, state: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor):
        query = self.query(state)  # [B, A]
        if self.kind == "additive":
            scores = additive_scores(query, keys, self.score_vector)
        else:
            scores = dot_scores(query, keys)
        return attend(scores, valid, values)  # ([B, S], [B, 2H])

    def decode(self, previous: torch.Tensor, encoded, valid: torch.Tensor, state: torch.Tensor | None = None):
        """Logits ``[B, M, K]``, alignment ``[B, M, S]`` (or None) and the last state, given the one-hot
        previous target classes ``[B, M, K]`` and :meth:`encode`'s output (``state`` continues a decode)."""
        annotations, summary, s0 = encoded
        state = s0 if state is None else state
        emb = self.embed_target(previous)  # [B, M, E]
        if self.kind == "none":
            context = summary[:, None, :].expand(-1, emb.shape[1], -1)
            hidden, last = self.decoder(torch.cat([emb, context], -1), state[None].contiguous())
            return self.readout(torch.cat([hidden, context, emb], -1)), None, last[0]
        keys, values = self._memory(annotations)
        outputs, weights = [], []
        for i in range(emb.shape[1]):
            alpha, context = self._context(state, keys, values, valid)
            state = self.decoder_cell(torch.cat([emb[:, i], context], -1), state)
            outputs.append(torch.cat([state, context, emb[:, i]], -1))
            weights.append(alpha)
        return self.readout(torch.stack(outputs, 1)), torch.stack(weights, 1), state

    def forward(self, inputs: torch.Tensor) -> SequenceOutput:
        source, valid, previous = split_layout(inputs, self.output_size)
        batch, start = inputs.shape[0], source.shape[1]
        logits, alignment, _ = self.decode(previous, self.encode(source, valid), valid)
        out = torch.cat([logits.new_zeros(batch, start, self.output_size), logits], 1)  # [B, T, K]
        attention = {}
        if alignment is not None:
            attention["alignment"] = torch.cat([alignment.new_zeros(batch, start, start), alignment], 1)
        return out, attention, out.new_zeros(())

    @torch.no_grad()
    def greedy(self, inputs: torch.Tensor, max_len: int = 100) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Greedy decoding from the source part of ``inputs`` (the decoder part is ignored).

        Returns:
            ``(classes [B, L] int64, alignment [B, L, S] or None)``: the argmax class at each step,
            0 (``</s>``) from a row's end onwards; L <= ``max_len`` + 1 (the end is written too).
        """
        source, valid, _ = split_layout(inputs, self.output_size)
        encoded = self.encode(source, valid)
        batch = inputs.shape[0]
        previous = torch.zeros(batch, dtype=torch.long, device=inputs.device)
        state, done = None, torch.zeros(batch, dtype=torch.bool, device=inputs.device)
        classes, weights = [], []
        for _ in range(max_len + 1):
            onehot = F.one_hot(previous, self.output_size).to(inputs.dtype)[:, None, :]
            logits, alpha, state = self.decode(onehot, encoded, valid, state)
            previous = logits[:, 0].argmax(-1).masked_fill(done, 0)
            classes.append(previous)
            if alpha is not None:
                weights.append(alpha[:, 0])
            done = done | (previous == 0)
            if bool(done.all()):
                break
        return torch.stack(classes, 1), (torch.stack(weights, 1) if weights else None)

    @torch.no_grad()
    def beam(
        self, inputs: torch.Tensor, width: int = 4, max_len: int = 100
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Beam-search decoding (:func:`beam_search`) from the source part of ``inputs``.

        Returns ``(classes [B, L], alignment [B, L, S] or None)`` as :meth:`greedy` does, for the
        hypothesis with the highest length-normalised log-probability; ``width=1`` is :meth:`greedy`.
        """
        source, valid, _ = split_layout(inputs, self.output_size)
        annotations, summary, s0 = self.encode(source, valid)
        rep = lambda x: x.repeat_interleave(width, 0)  # noqa: E731  [B, ...] -> [B * width, ...]
        encoded, valid = (rep(annotations), rep(summary), s0), rep(valid)

        def step(previous: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple, torch.Tensor | None]:
            onehot = F.one_hot(previous, self.output_size).to(inputs.dtype)[:, None, :]
            logits, alpha, new = self.decode(onehot, encoded, valid, state[0])
            return torch.log_softmax(logits[:, 0], -1), (new,), (None if alpha is None else alpha[:, 0])

        found = beam_search(step, (rep(s0),), inputs.shape[0], width, max_len)
        return found.classes, found.records
