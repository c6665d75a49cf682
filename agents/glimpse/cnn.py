"""CNN baseline whose parameter count matches a glimpse model's.

``conv(5x5, 16) - relu - maxpool 2`` then ``conv(5x5, 32) - relu - maxpool 2`` (a third such stage
for images wider than 64 pixels), one ReLU hidden layer and a linear classifier. The hidden width is
chosen by :func:`hidden_for_budget` so the total parameter count is as close as possible to a target
(RAM's), as in the RAM paper's comparison.
"""

from __future__ import annotations

import torch
from torch import nn

from heed.agents.glimpse.ram import GlimpseOutput

CHANNELS = (16, 32, 32)


def _stages(image_size: int) -> int:
    return 3 if image_size > 64 else 2


def _conv_params(image_size: int) -> tuple[int, int]:
    """(parameters in the conv stack, flattened feature size)."""
    params, c_in, side = 0, 1, image_size
    for c in CHANNELS[: _stages(image_size)]:
        params += c_in * c * 25 + c
        c_in, side = c, side // 2
    return params, c_in * side * side


def hidden_for_budget(image_size: int, target_params: int, num_classes: int = 10) -> int:
    """The hidden width ``h`` minimising ``|params(h) - target_params|`` (at least 16); ``num_classes``
    counts every output (``objects * 10`` for pairs)."""
    conv, flat = _conv_params(image_size)
    per_unit = flat + 1 + num_classes  # fc weight column + bias + classifier row
    h = round((target_params - conv - num_classes) / per_unit)
    return max(16, h)


class CNN(nn.Module):
    """The baseline; ``forward`` returns a :class:`GlimpseOutput` with zero glimpses.

    ``objects > 1`` (MNIST pairs): one classifier head per object, ``logits [B, O, K]`` from the whole canvas.
    """

    def __init__(self, image_size: int, hidden: int = 256, num_classes: int = 10, objects: int = 1) -> None:
        super().__init__()
        self.image_size, self.hidden, self.objects = image_size, hidden, objects
        layers: list[nn.Module] = []
        c_in = 1
        for c in CHANNELS[: _stages(image_size)]:
            layers += [nn.Conv2d(c_in, c, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        _, flat = _conv_params(image_size)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, objects * num_classes)
        )

    def forward(self, images: torch.Tensor) -> GlimpseOutput:
        """``images [B, H, W]`` -> logits ``[B, K]`` (``[B, O, K]``) inside a :class:`GlimpseOutput` (T = 0)."""
        b = images.shape[0]
        logits = self.head(self.features(images[:, None]))
        if self.objects > 1:
            logits = logits.view(b, self.objects, -1)
        empty = torch.zeros(b, 0, device=images.device)
        return GlimpseOutput(logits, torch.zeros(b, 0, 2, device=images.device), empty, empty, empty)
