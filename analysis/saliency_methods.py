"""Every saliency method behind one signature, in one table, and the two maps of a dueling network.

The signature, shared by every entry of :data:`SALIENCY_METHODS`::

    method(fn, inputs, target=None, **options) -> attribution

- ``fn``: any callable or module ``[B, ...] -> [B, K]`` (or ``[B]``); rows must not interact.
- ``inputs``: ``[B, ...]`` (uint8 pixels are explained as float pixel values; never mutated).
- ``target``: ``None`` (the single output, else each row's argmax), an int or ``[B]`` indices ->
  the attribution is shaped like ``inputs``; ``[B, M]`` indices -> ``[B, M, *inputs.shape[1:]]``
  (M targets per row sharing the forward passes; the dueling maps use this).
- the attribution is signed where the method is (gradient, SmoothGrad, IG, gradient x input,
  guided backprop, occlusion) and non-negative for perturbation; take ``abs`` to display magnitude
  (:func:`heed.analysis.video.stack_to_maps` does, unless told ``absolute=False``).

Methods (heed's batched implementations; ``captum-*`` are Captum's own, the references):

==========================  ===============================================================  =========
name                         attribution for output ``y_t``                                   passes
==========================  ===============================================================  =========
``gradient``                 ``dy_t/dx`` (Simonyan et al. 2014; Wang et al. 2016's maps)      1 fwd+bwd
``smoothgrad``               ``mean_n dy_t/dx (x + eps_n)``, ``eps ~ N(0, (noise*range)^2)``   ``samples``
``integrated-gradients``     ``(x - x0) * mean_k dy_t/dx (x0 + a_k (x - x0))``, ``a_k`` midpoints ``steps``
``gradient-x-input``         ``x * dy_t/dx``                                                  1
``guided-backprop``          gradient with negative gradients stopped at every ``nn.ReLU``    1
``occlusion``                drop of ``y_t`` when a ``window`` box is set to ``baseline``        N boxes fwd
``perturbation``             ``1/2 (y_t(I) - y_t(I'))^2``, ``I'`` blurred under a Gaussian      N grid fwd
==========================  ===============================================================  =========
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import nn

from heed.analysis.perturbation import occlusion_saliency, perturbation_saliency
from heed.analysis.saliency import (
    AnalysisError,
    Fn,
    Target,
    call,
    captum_saliency,
    check_input_shape,
    finish,
    float_inputs,
    gradients,
    owner_module,
    resolve_targets,
)
from heed.envs.errors import suggest

SaliencyMethod = Callable[..., torch.Tensor]


def _prepare(fn: Fn, inputs: torch.Tensor, target: Target) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Checked float inputs ``x``, targets ``idx [B, M]`` resolved on the clean inputs, and ``single``."""
    check_input_shape(fn, inputs)
    x = float_inputs(inputs)
    with torch.no_grad():
        idx, single = resolve_targets(call(fn, x), target)
    return x, idx, single


def _repeat(x: torch.Tensor, idx: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n * B, ...]`` copies of ``x`` (copy-major) and their targets."""
    return x.repeat(n, *([1] * (x.dim() - 1))), idx.repeat(n, 1)


def gradient(fn: Fn, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
    """``d fn(x)[b, t] / d x[b]`` (signed): one forward, one backward vmapped over the targets."""
    x, idx, single = _prepare(fn, inputs, target)
    return finish(gradients(fn, x, idx), single)


def smoothgrad(
    fn: Fn, inputs: torch.Tensor, target: Target = None, samples: int = 8, noise: float = 0.1, seed: int = 0
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over ``samples`` noisy copies of ``x``.

    Noise ``N(0, sigma^2)`` with ``sigma = noise * (max x - min x)`` of each row (255 for a full
    pixel range); drawn from a generator seeded with ``seed``, so maps repeat. All copies go through
    ``fn`` as one batch of ``samples * B``.
    """
    if samples < 1 or noise < 0:
        raise AnalysisError(f"smoothgrad needs samples >= 1 and noise >= 0, got {samples} and {noise}")
    x, idx, single = _prepare(fn, inputs, target)
    flat = x.reshape(x.shape[0], -1)
    sigma = (flat.max(1).values - flat.min(1).values).clamp_min(1e-8) * noise  # [B]
    z, zi = _repeat(x, idx, samples)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    eps = torch.randn(z.shape, generator=gen, device=x.device, dtype=x.dtype)
    z = z + eps * sigma.repeat(samples).view(-1, *([1] * (x.dim() - 1)))
    g = gradients(fn, z, zi).reshape(samples, *x.shape[:1], idx.shape[1], *x.shape[1:]).mean(0)
    return finish(g, single)


def integrated_gradients(
    fn: Fn, inputs: torch.Tensor, target: Target = None, steps: int = 16, baseline: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) with a midpoint Riemann sum of ``steps`` terms.

    ``IG(x) = (x - x0) * (1/S) sum_k dy_t/dx (x0 + a_k (x - x0))`` with ``a_k = (k + 1/2) / S``;
    exact for a linear ``fn``. ``baseline`` ``x0`` is a number or a tensor broadcastable to ``x``.
    """
    if steps < 1:
        raise AnalysisError(f"integrated gradients needs steps >= 1, got {steps}")
    x, idx, single = _prepare(fn, inputs, target)
    x0 = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    path = x0[None] + alphas.view(-1, *([1] * x.dim())) * (x - x0)[None]  # [S, B, ...]
    g = gradients(fn, path.reshape(-1, *x.shape[1:]), idx.repeat(steps, 1))
    g = g.reshape(steps, x.shape[0], idx.shape[1], *x.shape[1:]).mean(0)
    return finish(g * (x - x0).unsqueeze(1), single)


def gradient_x_input(fn: Fn, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
    """``x * d fn(x)[b, t] / d x[b]`` (Shrikumar et al. 2016), signed."""
    x, idx, single = _prepare(fn, inputs, target)
    return finish(gradients(fn, x, idx) * x.unsqueeze(1), single)


@contextmanager
def guided_relus(module: nn.Module | None) -> Iterator[int]:
    """Inside the block, every ``nn.ReLU`` of ``module`` passes back only positive gradients.

    Guided backprop (Springenberg et al. 2015): at a ReLU the gradient is ``(y > 0) * max(g, 0)``.
    Yields the number of ReLU modules hooked (0: guided backprop would equal the gradient).
    """
    relus = [m for m in module.modules() if isinstance(m, nn.ReLU)] if module is not None else []
    handles = [m.register_full_backward_hook(lambda _m, gin, _gout: (gin[0].clamp_min(0),)) for m in relus]
    try:
        yield len(relus)
    finally:
        for h in handles:
            h.remove()


def guided_backprop(fn: Fn, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
    """Guided backprop: the gradient with negative gradients stopped at every ``nn.ReLU`` module.

    ``fn`` must be a module or a bound method of one whose ReLUs are ``nn.ReLU`` modules (not
    ``F.relu``); else :class:`AnalysisError`.
    """
    x, idx, single = _prepare(fn, inputs, target)
    with guided_relus(owner_module(fn)) as hooked:
        if hooked == 0:
            raise AnalysisError("guided backprop needs a module with nn.ReLU layers (fn has none)")
        g = gradients(fn, x, idx)
    return finish(g, single)


def _captum(name: str, **defaults) -> SaliencyMethod:
    def method(fn: Fn, inputs: torch.Tensor, target: Target = None, **options) -> torch.Tensor:
        return captum_saliency(fn, inputs, name, target, **{**defaults, **options})

    method.__name__ = f"captum_{name}"
    method.__doc__ = f"Captum's ``{name}`` (defaults {defaults or 'Captum'}), one attribute call per target column."
    return method


SALIENCY_METHODS: dict[str, SaliencyMethod] = {
    "gradient": gradient,
    "smoothgrad": smoothgrad,
    "integrated-gradients": integrated_gradients,
    "gradient-x-input": gradient_x_input,
    "guided-backprop": guided_backprop,
    "occlusion": occlusion_saliency,
    "perturbation": perturbation_saliency,
    "captum-gradient": _captum("Saliency", abs=False),
    "captum-smoothgrad": _captum("NoiseTunnel", nt_samples=8, abs=False),
    "captum-integrated-gradients": _captum("IntegratedGradients", n_steps=16),
    "captum-gradient-x-input": _captum("InputXGradient"),
    "captum-guided-backprop": _captum("GuidedBackprop"),
    "captum-occlusion": _captum("Occlusion"),
}
"""Every saliency method by name, all called as ``method(fn, inputs, target=None, **options)``."""

CAPTUM_EQUIVALENT = {
    "gradient": "captum-gradient",
    "smoothgrad": "captum-smoothgrad",
    "integrated-gradients": "captum-integrated-gradients",
    "gradient-x-input": "captum-gradient-x-input",
    "guided-backprop": "captum-guided-backprop",
    "occlusion": "captum-occlusion",
    "perturbation": "captum-occlusion",  # Captum has no Greydanus blur; its Occlusion makes as many passes
}
"""The Captum method each heed method is compared with (benchmarks)."""


def get_saliency_method(name: str) -> SaliencyMethod:
    """The method called ``name``; an unknown name raises :class:`AnalysisError` with close matches."""
    if name not in SALIENCY_METHODS:
        raise AnalysisError(
            f"unknown saliency method '{name}'.{suggest(name, SALIENCY_METHODS)} "
            f"Choose from: {', '.join(SALIENCY_METHODS)}"
        )
    return SALIENCY_METHODS[name]


class DuelingSaliency(NamedTuple):
    """Value-stream and advantage-stream saliency, each shaped like the observations."""

    value: torch.Tensor
    advantage: torch.Tensor


def dueling_saliency(
    value_fn: Fn,
    advantage_fn: Fn,
    obs: torch.Tensor,
    streams_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    method: str = "gradient",
    absolute: bool = True,
    **options,
) -> DuelingSaliency:
    """The two maps of Wang et al. (2016) by any method: of ``V(s)`` and of ``A(s, a*)``.

    ``a* = argmax_a A(s, a)`` is fixed per row from the clean observation (so SmoothGrad's noisy
    copies and IG's path explain the same action). Both maps come from one call of ``method`` on
    ``s -> [V(s), A(s, 0), ..., A(s, n-1)]`` with targets ``[0, 1 + a*]`` per row, so they share the
    forward passes.

    Args:
        value_fn: ``obs [B, ...] -> V [B, 1]`` (e.g. ``net.value``).
        advantage_fn: ``obs -> A [B, n_actions]`` (e.g. ``net.advantage``).
        obs: ``[B, ...]`` observations (uint8 or float pixels; not mutated).
        streams_fn: optional ``obs -> (V, A)`` sharing one trunk pass (e.g. ``net.streams``).
        method: a name of :data:`SALIENCY_METHODS`; ``options`` go to it.
        absolute: ``|attribution|`` (default) or signed.
    """
    saliency = get_saliency_method(method)
    check_input_shape(value_fn, obs)
    owner = owner_module(value_fn)

    class Both(nn.Module):  # a module, so guided backprop and Captum find the network's layers
        def __init__(self) -> None:
            super().__init__()
            self.net = owner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            v, a = streams_fn(x) if streams_fn is not None else (value_fn(x), advantage_fn(x))
            return torch.cat([v.reshape(v.shape[0], -1)[:, :1], a], dim=1)  # [B, 1 + n_actions]

    both_fn = Both()
    with torch.no_grad():
        best = call(both_fn, float_inputs(obs))[:, 1:].argmax(dim=1)  # [B]
    targets = torch.stack([torch.zeros_like(best), best + 1], dim=1)  # [B, 2]
    both = saliency(both_fn, obs, targets, **options)  # [B, 2, ...]
    both = both.abs() if absolute else both
    return DuelingSaliency(both[:, 0], both[:, 1])


__all__ = [
    "CAPTUM_EQUIVALENT",
    "SALIENCY_METHODS",
    "DuelingSaliency",
    "dueling_saliency",
    "get_saliency_method",
    "gradient",
    "gradient_x_input",
    "guided_backprop",
    "guided_relus",
    "integrated_gradients",
    "smoothgrad",
]
