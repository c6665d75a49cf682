"""Glimpse agents: RAM (hard attention, REINFORCE), DRAM (RAM emitting one label per object, for MNIST
pairs), DRAW-style soft attention, random glimpses, a CNN, the 3x3 tile policy (REINFORCE over tiles)
and its random-tile baseline.

:func:`build_model` makes any of them from a name and the dataset's image size.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from heed.agents.common.errors import HeedError, suggest
from heed.agents.glimpse.cnn import CNN, hidden_for_budget
from heed.agents.glimpse.ram import RAM, GlimpseOutput, hybrid_loss, mc_predict
from heed.agents.glimpse.soft import SoftAttention
from heed.agents.glimpse.tiles import TilePolicy

MODELS = ("ram", "random", "soft", "cnn", "tiles", "random-tiles", "dram")
#: models that see the 28x28 digit through the 3x3 grid of tiles (the mnist dataset only)
TILE_MODELS = ("tiles", "random-tiles")
#: models that classify several digits per canvas (mnist-pairs); dram needs two or more
MULTI_OBJECT_MODELS = ("ram", "random", "cnn", "dram")

__all__ = [
    "CNN",
    "MODELS",
    "MULTI_OBJECT_MODELS",
    "RAM",
    "GlimpseOutput",
    "SoftAttention",
    "TILE_MODELS",
    "TilePolicy",
    "build_model",
    "count_params",
    "hybrid_loss",
    "mc_predict",
]


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(
    name: str,
    image_size: int,
    glimpses: int,
    patch: int,
    scales: int,
    sigma: float = 0.1,
    hidden: int = 256,
    read_size: int = 12,
    core: Any = None,
    objects: int = 1,
) -> nn.Module:
    """``ram`` | ``random`` (RAM with uniform random locations) | ``soft`` | ``cnn`` (matched to RAM's size)
    | ``tiles`` (REINFORCE over the 3x3 tiles) | ``random-tiles`` (uniform tiles) | ``dram`` (RAM reading
    label ``o`` after glimpse block ``o``; ``objects >= 2``).

    ``core`` is RAM's core config (any core of :mod:`heed.agents.parts`; default an LSTM of ``hidden``).
    ``objects`` labels per image: ram, random and cnn then read every label at the end (one head each).
    """
    if objects > 1 and name not in MULTI_OBJECT_MODELS:
        raise HeedError(f"glimpse model '{name}' classifies one digit: for several use {', '.join(MULTI_OBJECT_MODELS)}")
    if name == "dram":
        if objects < 2:
            raise HeedError("dram emits one label per object: use it on a dataset of several digits (mnist-pairs)")
        return RAM(image_size, patch, scales, glimpses, hidden, sigma, "learned", core, objects=objects, emit="sequential")
    if name == "ram":
        return RAM(image_size, patch, scales, glimpses, hidden, sigma, "learned", core, objects=objects)
    if name == "random":
        return RAM(image_size, patch, scales, glimpses, hidden, sigma, "random", core, objects=objects)
    if name == "soft":
        return SoftAttention(image_size, read_size, glimpses, hidden)
    if name in TILE_MODELS:
        return TilePolicy(glimpses, hidden, "learned" if name == "tiles" else "random")
    if name == "cnn":
        target = count_params(RAM(image_size, patch, scales, glimpses, hidden, sigma, "learned", core, objects=objects))
        return CNN(image_size, hidden_for_budget(image_size, target, 10 * objects), objects=objects)
    raise HeedError(f"unknown glimpse model '{name}'.{suggest(name, MODELS)} Choices: {', '.join(MODELS)}")
