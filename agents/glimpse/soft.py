"""Soft attention: a recurrent classifier reading the image through DRAW's Gaussian filterbank.

Each step the network emits DRAW's five attention parameters from its state and reads an
``N x N`` glimpse; everything is differentiable, so cross-entropy trains the whole model end to end
(the lecture's "expectation over all possible glimpses" instead of a sample)::

    (g~X, g~Y, log sigma^2, log delta~, log gamma) = W_a h_t          (h_0 = 0: a learned first read)
    r_t = gamma * FY x FX^T                                           (sensors.draw_read, [B, N, N])
    h_{t+1} = LSTM(relu(W_r vec(r_t)), h_t)
    logits = W_c h_T
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from heed.agents.glimpse.ram import GlimpseOutput
from heed.agents.glimpse.sensors import draw_params, draw_read


class SoftAttention(nn.Module):
    """DRAW-style soft-attention classifier (see the module docstring).

    Args:
        image_size: side of the square input images.
        read_size: ``N``, filters per axis (``N >= 2``).
        glimpses: ``T`` reads.
    """

    def __init__(
        self,
        image_size: int,
        read_size: int = 12,
        glimpses: int = 8,
        hidden: int = 256,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.image_size, self.read_size, self.glimpses, self.hidden = image_size, read_size, glimpses, hidden
        self.attend = nn.Linear(hidden, 5)
        # start by reading the whole image: centre, stride (A-1)/(N-1), sigma = half the stride, gamma = 1
        stride = (image_size - 1) / (read_size - 1)
        with torch.no_grad():
            self.attend.weight.mul_(0.1)
            self.attend.bias.copy_(
                torch.tensor([0.0, 0.0, 2 * float(torch.log(torch.tensor(stride / 2))), 0.0, 0.0])
            )
        self.encode = nn.Linear(read_size * read_size, hidden)
        self.core = nn.LSTMCell(hidden, hidden)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, images: torch.Tensor) -> GlimpseOutput:
        """``images [B, H, W]`` -> :class:`GlimpseOutput` (``locations`` are the read centres in [-1, 1])."""
        b, h_img, w_img = images.shape
        h = torch.zeros(b, self.hidden, device=images.device)
        state = (h, h.clone())
        locs, extents = [], []
        for _ in range(self.glimpses):
            params = draw_params(self.attend(state[0]), h_img, w_img, self.read_size)
            read, _, _ = draw_read(images, params, self.read_size)
            state = self.core(F.relu(self.encode(read.flatten(1))), state)
            # pixel centre (1-indexed) back to [-1, 1]: g~ = 2 g / (A + 1) - 1
            locs.append(torch.stack([2 * params.gx / (w_img + 1) - 1, 2 * params.gy / (h_img + 1) - 1], -1))
            extents.append(params.delta * self.read_size)
        zeros = torch.zeros(b, self.glimpses, device=images.device)
        return GlimpseOutput(
            self.classifier(state[0]), torch.stack(locs, 1), zeros, zeros, torch.stack(extents, 1)
        )

    @torch.no_grad()
    def attention(self, images: torch.Tensor) -> list:
        """The :class:`~agents.glimpse.sensors.DrawParams` of every step (for recordings)."""
        b, h_img, w_img = images.shape
        h = torch.zeros(b, self.hidden, device=images.device)
        state = (h, h.clone())
        out = []
        for _ in range(self.glimpses):
            params = draw_params(self.attend(state[0]), h_img, w_img, self.read_size)
            read, _, _ = draw_read(images, params, self.read_size)
            state = self.core(F.relu(self.encode(read.flatten(1))), state)
            out.append((params, read))
        return out
