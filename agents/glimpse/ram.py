"""Recurrent Attention Model (Mnih et al. 2014): hard glimpses trained with REINFORCE.

One episode per image, ``T`` glimpses::

    l_0 ~ pi(. | h_0)                                  (h_0 = 0, so l_0's mean is a learned bias)
    for t = 0 .. T-1:
        x_t = rho(image, l_t)                          foveal retina, [B, k, g, g]
        g_t = relu(W_1 relu(W_g x_t) + W_2 relu(W_l l_t))     glimpse network (h_g = h_l = 128, g = 256)
        h_{t+1}, s_{t+1} = core(g_t, s_t)              any core of the table (LSTM 256, the ReLU RNN, an NTM...)
        l_{t+1} ~ N(tanh(W_mu sg(h_{t+1})), sigma^2 I) Gaussian policy with fixed sigma
        b_{t+1} = W_b sg(h_{t+1})                      learned baseline
    logits = W_c h_T

The core is built by :func:`heed.agents.parts.build_core` from its config and stepped through the
core contract (:mod:`heed.agents.cores.base`); ``h`` is its output (for memory cores ``[h, reads]``).

``sg`` is stop-gradient: the policy and the baseline read a detached state, and the sampled location is
detached, so the classifier's cross-entropy never flows through the location (REFERENCE.md "RAM":
reproductions need this). The reward is ``R = 1[argmax logits = y]`` and the loss is the hybrid

    L = CE(logits, y) - mean_b sum_t log pi(l_t) (R - b_t) + mean_b sum_t (R - b_t)^2

(the advantage ``R - b_t`` is a constant for the policy term). At test time :meth:`predict` averages
the class log-probabilities over ``samples`` stochastic glimpse paths (Monte-Carlo averaging).

With ``policy="random"`` the locations are uniform in ``[-1, 1]^2`` and only the cross-entropy trains
the network (the paper's "8 random glimpses" baseline).

Several objects (Ba, Mnih & Kavukcuoglu 2014, MNIST pairs). With ``objects = O > 1`` the classifier has
one head per object, ``logits [B, O, K]``, read out at the steps ``label_steps``:

- ``emit="sequential"`` (DRAM): the ``T`` glimpses form ``O`` blocks of ``T / O``; label ``o`` is read
  from the state after block ``o`` (``label_steps = (T/O - 1, 2 T/O - 1, ...)``), the state carries on;
- ``emit="end"`` (the single-object RAM applied to pairs): every label is read from ``h_T``.

Label ``o`` earns reward ``r_o = 1[correct]`` at its step, and the location of glimpse ``t`` is credited
with the return ``G_t = sum_{o: label_steps[o] >= t} r_o`` (the rewards it can still influence), so

    L = sum_o CE(logits_o, y_o) - mean_b sum_t log pi(l_t) (G_t - b_t) + mean_b sum_t (G_t - b_t)^2

which for ``O = 1`` is the single-object loss above. (Ba et al.'s context network and two-layer core are
left out: the retina's coarsest scale sees most of the canvas from the centre.)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from heed.agents.cores.lstm import LSTMConfig
from heed.agents.glimpse.sensors import foveal_glimpse
from heed.agents.parts import build_core


class GlimpseOutput(NamedTuple):
    """What a glimpse classifier returns for a batch of ``B`` images and ``T`` glimpses.

    ``logits [B, K]``; ``locations [B, T, 2]`` in ``[-1, 1]^2`` (where each glimpse looked);
    ``log_pi [B, T]`` log-density of each sampled location (zeros when not learned by REINFORCE);
    ``baseline [B, T]`` (zeros when unused); ``extent [B, T]`` width of the glimpse in pixels.
    Several objects: ``logits [B, O, K]`` and ``label_steps`` the glimpse index after which label ``o`` is
    read (``None``: one object, read after the last glimpse).
    """

    logits: torch.Tensor
    locations: torch.Tensor
    log_pi: torch.Tensor
    baseline: torch.Tensor
    extent: torch.Tensor
    label_steps: tuple[int, ...] | None = None


class GlimpseNetwork(nn.Module):
    """``g = relu(W_1 relu(W_g vec(x)) + W_2 relu(W_l l))``: ``x [B, k, g, g]``, ``l [B, 2]`` -> ``[B, out]``."""

    def __init__(self, in_pixels: int, what: int = 128, where: int = 128, out: int = 256) -> None:
        super().__init__()
        self.what = nn.Linear(in_pixels, what)
        self.where = nn.Linear(2, where)
        self.mix_what = nn.Linear(what, out)
        self.mix_where = nn.Linear(where, out)

    def forward(self, patches: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
        hg = F.relu(self.what(patches.flatten(1)))
        hl = F.relu(self.where(loc))
        return F.relu(self.mix_what(hg) + self.mix_where(hl))


class RAM(nn.Module):
    """The recurrent attention model (see the module docstring for the equations).

    Args:
        image_size: side of the square input images.
        patch, scales: retina of ``scales`` patches of ``patch x patch`` (widths ``patch * 2**s``).
        glimpses: ``T``.
        hidden: size of the glimpse vector ``g_t`` (the core's input).
        sigma: fixed standard deviation of the location policy (in ``[-1, 1]`` units).
        policy: ``learned`` (REINFORCE) or ``random`` (uniform locations).
        core: the core's config (default: an LSTM of ``hidden`` units, the paper's 256).
        objects: labels per image ``O`` (``> 1``: ``logits [B, O, K]``, see the module docstring).
        emit: ``end`` (every label from ``h_T``) or ``sequential`` (DRAM: label ``o`` after block ``o``).
    """

    def __init__(
        self,
        image_size: int,
        patch: int = 8,
        scales: int = 1,
        glimpses: int = 6,
        hidden: int = 256,
        sigma: float = 0.1,
        policy: str = "learned",
        core: Any = None,
        num_classes: int = 10,
        objects: int = 1,
        emit: str = "end",
    ) -> None:
        super().__init__()
        if policy not in ("learned", "random"):
            raise ValueError(f"unknown policy '{policy}': use learned or random")
        if emit not in ("end", "sequential"):
            raise ValueError(f"unknown emit '{emit}': use end or sequential")
        if emit == "sequential" and glimpses % objects:
            raise ValueError(f"{glimpses} glimpses do not split into {objects} equal blocks")
        self.objects, self.emit, self.num_classes = objects, emit, num_classes
        block = glimpses // objects if emit == "sequential" else glimpses
        self.label_steps = tuple(
            (o + 1) * block - 1 if emit == "sequential" else glimpses - 1 for o in range(objects)
        )
        self.image_size, self.patch, self.scales = image_size, patch, scales
        self.glimpses, self.hidden, self.sigma, self.policy = glimpses, hidden, sigma, policy
        self.glimpse_net = GlimpseNetwork(scales * patch * patch, out=hidden)
        self.core = build_core(core if core is not None else LSTMConfig(hidden_size=hidden), hidden)
        out = self.core.output_size
        self.locator = nn.Linear(out, 2)
        self.baseline = nn.Linear(out, 1)
        self.classifier = nn.Linear(out, objects * num_classes)  # one head per object

    def _next_location(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample ``l [B, 2]`` (detached, clamped to [-1, 1]); return ``(l, log_pi [B], baseline [B])``."""
        b = h.shape[0]
        if self.policy == "random":
            loc = torch.rand(b, 2, device=h.device) * 2 - 1
            zero = torch.zeros(b, device=h.device)
            return loc, zero, zero
        mean = torch.tanh(self.locator(h.detach()))  # [B, 2]
        sample = (mean + self.sigma * torch.randn_like(mean)).detach()
        log_pi = gaussian_log_prob(sample, mean, self.sigma)  # [B]
        base = self.baseline(h.detach())[:, 0]
        return sample.clamp(-1.0, 1.0), log_pi, base

    def forward(self, images: torch.Tensor) -> GlimpseOutput:
        """``images [B, H, W]`` -> :class:`GlimpseOutput` with ``T = self.glimpses``."""
        b = images.shape[0]
        state = self.core.initial_state(b)
        h = images.new_zeros(b, self.core.output_size)  # no output before the first glimpse
        locs, log_pis, bases, labels = [], [], [], []
        loc, log_pi, base = self._next_location(h)
        k = self.num_classes
        for t in range(self.glimpses):
            locs.append(loc)
            log_pis.append(log_pi)
            bases.append(base)
            patches = foveal_glimpse(images, loc, self.patch, self.scales)
            h, state, _ = self.core(self.glimpse_net(patches, loc), state)
            for o in (o for o, s in enumerate(self.label_steps) if s == t):  # label o is read after glimpse t
                head = slice(o * k, (o + 1) * k)
                labels.append(F.linear(h, self.classifier.weight[head], self.classifier.bias[head]))
            if t + 1 < self.glimpses:
                loc, log_pi, base = self._next_location(h)
        extent = torch.full(
            (b, self.glimpses), float(self.patch * 2 ** (self.scales - 1)), device=images.device
        )
        logits = labels[0] if self.objects == 1 else torch.stack(labels, 1)  # [B, K] or [B, O, K]
        steps = None if self.objects == 1 else self.label_steps
        return GlimpseOutput(
            logits, torch.stack(locs, 1), torch.stack(log_pis, 1), torch.stack(bases, 1), extent, steps
        )


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """Log-density of an isotropic Gaussian, summed over the last axis: ``[B, D] -> [B]``."""
    return (-((x - mean) ** 2) / (2 * sigma**2) - math.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)


def hybrid_loss(
    out: GlimpseOutput, labels: torch.Tensor, learned_policy: bool
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy plus, for a learned policy, REINFORCE with a learned baseline (module docstring).

    ``labels [B]`` (or ``[B, O]`` for ``logits [B, O, K]``). Returns ``(loss, stats)`` with ``stats``
    holding the scalar parts for logging (``reward``: the fraction of labels right).
    """
    logits, labels = (out.logits[:, None], labels[:, None]) if out.logits.dim() == 2 else (out.logits, labels)
    objects, steps = logits.shape[1], out.label_steps
    ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten()) * objects  # summed over objects
    correct = (logits.argmax(-1) == labels).float()  # [B, O]
    stats = {"cross_entropy": ce.item(), "reward": correct.mean().item()}
    if not learned_policy:
        return ce, stats
    glimpses = out.log_pi.shape[1]
    t = torch.arange(glimpses, device=correct.device)
    steps_t = torch.tensor(steps if steps is not None else (glimpses - 1,) * objects, device=correct.device)
    credit = (steps_t[:, None] >= t[None]).to(correct.dtype)  # [O, T]: label o follows glimpse t
    ret = correct @ credit  # [B, T]: G_t
    advantage = (ret - out.baseline).detach()  # [B, T]
    reinforce = -(out.log_pi * advantage).sum(1).mean()
    baseline_mse = ((ret - out.baseline) ** 2).sum(1).mean()
    stats.update(
        reinforce=reinforce.item(), baseline_mse=baseline_mse.item(), baseline=out.baseline.mean().item()
    )
    return ce + reinforce + baseline_mse, stats


@torch.no_grad()
def mc_predict(model: nn.Module, images: torch.Tensor, samples: int, chunk: int = 256) -> torch.Tensor:
    """Monte-Carlo averaged class log-probabilities ``[B, K]`` (``[B, O, K]`` for several objects): mean
    over ``samples`` glimpse paths, ``log mean_s softmax(logits_s)``; deterministic models may pass
    ``samples=1``.
    """
    outs = []
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk]
        rep = x.repeat(samples, 1, 1)  # [S * b, H, W]
        logits = model(rep).logits
        logp = F.log_softmax(logits, -1).view(samples, x.shape[0], *logits.shape[1:])
        outs.append(torch.logsumexp(logp, 0) - math.log(samples))
    return torch.cat(outs)
