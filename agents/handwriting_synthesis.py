"""Handwriting synthesis (Graves 2013, "Generating Sequences With Recurrent Neural Networks", §5).

The network reads pen offsets ``x_t = (dx, dy, eos)`` and a text ``c_0 .. c_{U-1}`` (one-hot over the
alphabet, ``A`` symbols) and predicts the next offset. A soft window over the text (K Gaussians)
decides, before each point, which letters the network is writing::

    (a^, b^, k^) = W_w h^1_t                                     [B, 3K]    from the first layer
    alpha = exp(a^), beta = exp(b^), kappa_t = kappa_{t-1} + exp(k^)          (kappa_0 = 0: monotone)
    phi(t, u) = sum_k alpha_k exp(-beta_k (kappa_k - u)^2)       u = 0 .. U (U: one past the last letter)
    w_t = sum_{u < U} phi(t, u) c_u                              [B, A]

Letters are counted from 0 here (the paper from 1), so ``kappa_0 = 0`` sits on the first letter and
``phi(t, U)`` is the position just past the last one (the stop rule's). The layers (as in the paper,
every layer sees the input and the window: "skip connections")::

    h^1_t = LSTM_1([x_t, w_{t-1}], h^1_{t-1})
    h^n_t = LSTM_n([x_t, h^{n-1}_t, w_t], h^n_{t-1})             n = 2 .. L
    y_t   = W_y [h^1_t, ..., h^L_t] + b_y                        [B, 1 + 6M]

Only the first layer and the window are stepped in Python; once ``w`` is known for every step, the
upper layers run as fused ``nn.LSTM`` over the whole sequence (same numbers as stepping them).

``y_t`` parametrises the mixture density of :mod:`heed.agents.handwriting_mdn` (M bivariate Gaussians
for ``(dx, dy)`` and a Bernoulli end-of-stroke). **No-window ablation** (``window=False``): the text is
fed whole instead: a GRU reads the one-hot text and its final state (``A`` units, the window's width)
is given as ``w_t`` at every step, so both models get the same input width and the same text; only
the alignment differs. Graves' "prediction alone" network gets no text at all: ours gets more.

Why this model is not in :data:`heed.agents.parts.MODELS`: the table's build signature is
``Model(D, K, cfg)`` with ``forward(x [B, T, D]) -> logits [B, T, K]``; synthesis needs the text as a
second input of another length and a mixture-density output, so it is built here from its config
(:class:`SynthesisConfig`, the only place its defaults live) by the synthesis trainer and
``heed synthesize``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import torch
import tyro
from torch import nn

from heed.agents.common.checkpoint import checkpoint_meta, load_checkpoint, load_module_state, save_checkpoint
from heed.agents.common.errors import HeedError
from heed.agents.common.validate import Range, config_from_dict
from heed.agents.cores.base import PartName, part_name
from heed.agents.handwriting_mdn import MixtureParams, sample_point, split_params
from heed.envs.handwriting import ALPHABET

#: the start-of-sequence input: no offset, pen lifted (the first point is predicted from it)
START_POINT = (0.0, 0.0, 1.0)


@dataclass(frozen=True)
class SynthesisConfig:
    """The synthesis network's size (the paper: 3 x 400 LSTM, M = 20, K = 10; ours is CPU-sized)."""

    name: PartName = part_name("synthesis")
    alphabet: Annotated[str, tyro.conf.Suppress] = ALPHABET
    """The characters a text may hold (stored with the weights, so a checkpoint keeps its own)."""
    hidden_size: Annotated[int, Range(1, 4096)] = 128
    """Units per LSTM layer (the paper: 400)."""
    layers: Annotated[int, Range(1, 8)] = 2
    """LSTM layers (the paper: 3)."""
    mixtures: Annotated[int, Range(1, 100)] = 20
    """M, bivariate Gaussians in the output mixture."""
    window_mixtures: Annotated[int, Range(1, 100)] = 10
    """K, Gaussians in the soft window over the text."""
    window: bool = True
    """The Gaussian window over the text; --no-window feeds the text whole (a GRU encoding) at every step."""
    kappa_init: Annotated[float, Range(-10.0, 5.0)] = -2.5
    """Initial bias of k^: the window first moves exp(-2.5) = 0.08 letters per point (about 12 points a letter)."""


class SynthesisState(NamedTuple):
    """h, c: ``[L, B, H]``; kappa: ``[B, K]`` (window positions); w: ``[B, A]`` (the last window)."""

    h: torch.Tensor
    c: torch.Tensor
    kappa: torch.Tensor
    w: torch.Tensor


class SynthesisOutput(NamedTuple):
    """What a forward pass gives: the mixture for every step, and the window (zeros without one).

    params: :class:`MixtureParams` with leading dims ``[B, T]``; phi: ``[B, T, U + 1]``;
    kappa: ``[B, T, K]``; w: ``[B, T, A]``.
    """

    params: MixtureParams
    phi: torch.Tensor
    kappa: torch.Tensor
    w: torch.Tensor


def encode_text(texts: list[str], alphabet: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Letter indices ``[B, U_max]`` int64 (padded with 0) and lengths ``[B]``; one line for bad text."""
    index = {ch: i for i, ch in enumerate(alphabet)}
    bad = sorted({ch for text in texts for ch in text if ch not in index})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad[:10])
        raise HeedError(f"text holds characters outside the alphabet: {shown} (the alphabet is {alphabet!r})")
    if any(len(text) == 0 for text in texts):
        raise HeedError("text must hold at least one character")
    lengths = torch.tensor([len(t) for t in texts], dtype=torch.long)
    out = torch.zeros(len(texts), int(lengths.max()), dtype=torch.long)
    for b, text in enumerate(texts):
        out[b, : len(text)] = torch.tensor([index[ch] for ch in text], dtype=torch.long)
    return out, lengths


def one_hot_text(letters: torch.Tensor, lengths: torch.Tensor, alphabet_size: int) -> torch.Tensor:
    """``[B, U]`` indices -> ``[B, U, A]`` float one-hot, zero past each text's length."""
    onehot = nn.functional.one_hot(letters, alphabet_size).float()
    mask = torch.arange(letters.shape[1], device=letters.device)[None, :] < lengths[:, None]
    return onehot * mask[..., None]


def window_weights(alpha: torch.Tensor, beta: torch.Tensor, kappa: torch.Tensor, positions: int) -> torch.Tensor:
    """phi(u) = sum_k alpha_k exp(-beta_k (kappa_k - u)^2) for u = 0 .. positions - 1.

    alpha, beta, kappa: ``[B, K]`` (already exponentiated / accumulated) -> phi ``[B, positions]``.
    """
    u = torch.arange(positions, device=kappa.device, dtype=kappa.dtype)  # [P]
    return (alpha[..., None] * torch.exp(-beta[..., None] * (kappa[..., None] - u) ** 2)).sum(-2)


def shift_inputs(points: torch.Tensor) -> torch.Tensor:
    """The network's inputs for targets ``points [B, T, 3]``: the start point, then ``points[:, :-1]``."""
    start = points.new_tensor(START_POINT).expand(points.shape[0], 1, 3)
    return torch.cat([start, points[:, :-1]], dim=1)


class HandwritingSynthesis(nn.Module):
    """Graves' synthesis network (:class:`SynthesisConfig`; equations in the module docstring)."""

    def __init__(self, cfg: SynthesisConfig = SynthesisConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        a, h, k = len(cfg.alphabet), cfg.hidden_size, cfg.window_mixtures
        if a < 1:
            raise HeedError("the synthesis alphabet is empty")
        self.alphabet_size = a
        self.first = nn.LSTMCell(3 + a, h)
        self.upper = nn.ModuleList(nn.LSTM(3 + h + a, h, batch_first=True) for _ in range(cfg.layers - 1))
        self.output = nn.Linear(cfg.layers * h, 1 + 6 * cfg.mixtures)
        if cfg.window:
            self.window_params = nn.Linear(h, 3 * k)
            with torch.no_grad():
                self.window_params.bias[2 * k :].fill_(cfg.kappa_init)
        else:
            self.text_encoder = nn.GRU(a, a, batch_first=True)

    # -- the text ------------------------------------------------------------------------------------
    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(one-hot [B, U, A], lengths [B])`` of ``texts`` on the model's device (bad text: HeedError)."""
        letters, lengths = encode_text(texts, self.cfg.alphabet)
        device = self.output.weight.device
        return one_hot_text(letters.to(device), lengths.to(device), self.alphabet_size), lengths.to(device)

    def _text_summary(self, onehot: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """No-window input: the GRU's state after each text's last letter, ``[B, A]``."""
        out, _ = self.text_encoder(onehot)  # [B, U, A]
        return out[torch.arange(out.shape[0], device=out.device), lengths - 1]

    # -- one step ------------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> SynthesisState:
        """Zeros on the model's device: ``kappa_0 = 0`` (the first letter), ``w_0 = 0``."""
        p = self.output.weight
        h = p.new_zeros(self.cfg.layers, batch_size, self.cfg.hidden_size)
        return SynthesisState(h, h.clone(), p.new_zeros(batch_size, self.cfg.window_mixtures),
                              p.new_zeros(batch_size, self.alphabet_size))

    def _window(self, h1: torch.Tensor, kappa: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """From ``h1 [B, H]``: the new ``kappa [B, K]``, ``phi [B, U + 1]`` and ``w [B, A]``."""
        a_hat, b_hat, k_hat = self.window_params(h1).chunk(3, dim=-1)
        kappa = kappa + torch.exp(k_hat)
        phi = window_weights(torch.exp(a_hat), torch.exp(b_hat), kappa, onehot.shape[1] + 1)
        w = torch.bmm(phi[:, None, :-1], onehot)[:, 0]  # [B, A]
        return kappa, phi, w

    def step(self, x: torch.Tensor, state: SynthesisState, onehot: torch.Tensor,
             lengths: torch.Tensor) -> tuple[MixtureParams, SynthesisState, torch.Tensor]:
        """One point: ``x [B, 3]`` -> (mixture for the next point, new state, phi ``[B, U + 1]``).

        Without a window, phi is zeros and ``w`` is the text's GRU summary at every step.
        """
        h1, c1 = self.first(torch.cat([x, state.w], -1), (state.h[0], state.c[0]))
        if self.cfg.window:
            kappa, phi, w = self._window(h1, state.kappa, onehot)
        else:
            kappa, phi, w = state.kappa, onehot.new_zeros(x.shape[0], onehot.shape[1] + 1), state.w
        hs, cs, below = [h1], [c1], h1
        for n, lstm in enumerate(self.upper, start=1):
            out, (hn, cn) = lstm(torch.cat([x, below, w], -1)[:, None],
                                 (state.h[n][None].contiguous(), state.c[n][None].contiguous()))
            below = out[:, 0]
            hs.append(hn[0])
            cs.append(cn[0])
        params = split_params(self.output(torch.cat(hs, -1)), self.cfg.mixtures)
        return params, SynthesisState(torch.stack(hs), torch.stack(cs), kappa, w), phi

    def start_state(self, onehot: torch.Tensor, lengths: torch.Tensor) -> SynthesisState:
        """The initial state for these texts (without a window, ``w`` is already the text summary)."""
        state = self.initial_state(onehot.shape[0])
        if not self.cfg.window:
            state = state._replace(w=self._text_summary(onehot, lengths))
        return state

    # -- a whole sequence ------------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, onehot: torch.Tensor, lengths: torch.Tensor) -> SynthesisOutput:
        """inputs ``[B, T, 3]`` (see :func:`shift_inputs`), text ``[B, U, A]`` and ``[B]`` -> every step's output."""
        b, t, _ = inputs.shape
        state = self.start_state(onehot, lengths)
        if self.cfg.window:
            h, c, kappa, w = state.h[0], state.c[0], state.kappa, state.w
            h1s, phis, kappas, ws = [], [], [], []
            for i in range(t):
                h, c = self.first(torch.cat([inputs[:, i], w], -1), (h, c))
                kappa, phi, w = self._window(h, kappa, onehot)
                h1s.append(h)
                phis.append(phi)
                kappas.append(kappa)
                ws.append(w)
            h1, phi, kappa, w = (torch.stack(v, 1) for v in (h1s, phis, kappas, ws))
        else:
            w = state.w[:, None].expand(b, t, -1)
            h1 = self._unroll_first(torch.cat([inputs, w], -1))
            phi = inputs.new_zeros(b, t, onehot.shape[1] + 1)
            kappa = inputs.new_zeros(b, t, self.cfg.window_mixtures)
        hs, below = [h1], h1
        for lstm in self.upper:
            below, _ = lstm(torch.cat([inputs, below, w], -1))
            hs.append(below)
        params = split_params(self.output(torch.cat(hs, -1)), self.cfg.mixtures)
        return SynthesisOutput(params, phi, kappa, w)

    def _unroll_first(self, xs: torch.Tensor) -> torch.Tensor:
        """The first layer over ``xs [B, T, D]`` from zeros, fused (the LSTMCell's weights, ``[B, T, H]``)."""
        cell = self.first
        out = torch.lstm(xs, (xs.new_zeros(1, xs.shape[0], cell.hidden_size),) * 2,
                            (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh),
                         True, 1, 0.0, self.training, False, True)[0]
        return out


# -- writing new text ----------------------------------------------------------------------------------
def stop_reached(phi: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Graves' stop rule: ``phi(t, U) > phi(t, u)`` for every letter ``u < U``; phi ``[B, P]`` -> ``[B]`` bool.

    ``U`` is each text's length (``lengths [B]``), so ``phi(t, U)`` is the position just past its last
    letter; positions beyond ``U`` (padding) are ignored.
    """
    u = torch.arange(phi.shape[-1], device=phi.device)
    letters = torch.where(u[None, :] < lengths[:, None], phi, torch.full_like(phi, -torch.inf))
    end = phi.gather(-1, lengths[:, None])[:, 0]
    return end > letters.max(-1).values


class WrittenSample(NamedTuple):
    """A generated line: points ``[T, 3]`` (dx, dy, eos), phi ``[T, U + 1]`` over ``text`` (zeros without
    a window), whether the stop rule ended it (else ``max_steps``), and ``text``: the new text only
    (phi's columns ``text_offset ..`` are its letters when primed)."""

    points: torch.Tensor
    phi: torch.Tensor
    stopped: bool
    text: str
    text_offset: int


@torch.no_grad()
def write_text(model: HandwritingSynthesis, text: str, bias: float = 0.0, max_steps: int = 0,
               prime: tuple[torch.Tensor, str] | None = None,
               generator: torch.Generator | None = None) -> WrittenSample:
    """Write ``text`` point by point, sampling with ``bias`` until the stop rule fires or ``max_steps``.

    ``prime = (points [T', 3], prime_text)``: a real sequence in the wanted style; the network reads
    it with the text ``prime_text + " " + text`` (Graves' priming), then writes on. ``max_steps``
    defaults to 40 points per letter. Without a window the stop rule cannot fire: the line ends
    at ``max_steps`` (pass the data's mean length for a fair comparison).
    """
    full = f"{prime[1]} {text}" if prime is not None else text
    offset = len(full) - len(text)
    onehot, lengths = model.encode([full])
    state = model.start_state(onehot, lengths)
    x = onehot.new_tensor(START_POINT)[None]
    was_training = model.training
    model.eval()
    if prime is not None:
        for point in prime[0].to(x):
            _, state, _ = model.step(x, state, onehot, lengths)
            x = point[None]
    points, phis, stopped = [], [], False
    for _ in range(max_steps or 40 * len(text)):
        params, state, phi = model.step(x, state, onehot, lengths)
        if model.cfg.window and bool(stop_reached(phi, lengths)[0]):
            stopped = True
            break
        x = sample_point(params, bias, generator)
        points.append(x[0])
        phis.append(phi[0])
    model.train(was_training)
    width = onehot.shape[1] + 1
    return WrittenSample(torch.stack(points) if points else onehot.new_zeros(0, 3),
                         torch.stack(phis) if phis else onehot.new_zeros(0, width), stopped, text, offset)


# -- loading and shipping ------------------------------------------------------------------------------
#: the checkpoint kind of synthesis runs and shipped synthesis models
KIND = "synthesis"


def load_synthesis(path: str | os.PathLike, device: torch.device | str = "cpu") -> HandwritingSynthesis:
    """The network of a synthesis run dir, checkpoint dir or shipped folder (``meta["model"]``), in eval mode."""
    ckpt = load_checkpoint(path, expect_kind=KIND)
    values = ckpt.meta.get("model", ckpt.config.get("model"))
    if not isinstance(values, dict):
        raise HeedError(f"checkpoint '{ckpt.path}' holds no synthesis model config ('model' in meta.json)")
    cfg = config_from_dict(SynthesisConfig, {k: v for k, v in values.items() if k != "name"},
                           f"checkpoint '{ckpt.path}' model")
    model = HandwritingSynthesis(cfg)
    load_module_state(model, {k: v.float() for k, v in ckpt.tensors.items()}, where=str(ckpt.path))
    return model.to(device).eval()


def export_synthesis(model: HandwritingSynthesis, out: str | os.PathLike, **meta: Any) -> Path:
    """Ship ``model`` as fp16 safetensors + ``meta.json`` (its config under ``model``, plus ``meta``)."""
    tensors = {k: v.detach().half() for k, v in model.state_dict().items()}
    body = checkpoint_meta(KIND, {}, model=dataclasses.asdict(model.cfg), **meta)
    return save_checkpoint(out, tensors, body)
