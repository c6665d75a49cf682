"""The dueling Q-network of Wang et al. (2016) as a Stable-Baselines3 ``QNetwork``.

    features  phi(s)            Nature-CNN convolutions (Mnih et al. 2015) or a flatten for vectors
    value     V(s)      [B, 1]  MLP stream on phi(s)
    advantage A(s, a)   [B, A]  MLP stream on phi(s)
    Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')            (Wang et al. 2016, eq. 9)

Each stream can be called on its own (:meth:`DuelingQNetwork.value`,
:meth:`DuelingQNetwork.advantage`) so that saliency analysis can take dV/ds and dA/ds. Every
non-linearity is an ``nn.ReLU`` module (Captum's GuidedBackprop and DeepLift need modules).
Observations may be uint8 or float in pixel units [0, 255]; they are scaled by 1/255 inside, so a
gradient with respect to a float input is a gradient per pixel intensity unit. The scale is folded
into the first convolution, conv(x, W / 255) = conv(x / 255, W) (:meth:`NatureConv.from_pixels`), so
no pass over the pixels divides them: the same network up to float rounding (|dQ| ~ 1e-7), with the
same parameters and names.
"""

from __future__ import annotations

import gymnasium as gym
import torch
import torch.nn.functional as F
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.dqn.policies import QNetwork
from torch import nn


class NatureConv(BaseFeaturesExtractor):
    """The Nature-DQN convolutions without the dense layer: ``[B, C, 84, 84] -> [B, 3136]``.

    Conv(32, 8x8, stride 4) - ReLU - Conv(64, 4x4, stride 2) - ReLU - Conv(64, 3x3, stride 1) - ReLU - flatten.
    The dense 512 layer lives in each dueling stream, as in Wang et al. (2016).
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 0) -> None:
        channels = observation_space.shape[0]
        cnn = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = cnn(torch.zeros(1, *observation_space.shape)).shape[1]
        super().__init__(observation_space, n_flat)
        self.cnn = cnn

    #: pixel units [0, 255] -> the [0, 1] inputs the weights are trained on (SB3's image normalisation)
    PIXEL_SCALE = 1.0 / 255.0

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """phi ``[B, 3136]`` of observations already scaled to [0, 1] (SB3's features-extractor contract)."""
        return self.cnn(self.prepare(observations))

    def prepare(self, observations: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` as float32 in the first convolution's memory layout (idempotent).

        The trainer may move the weights to channels-last (~20 % faster convolutions on a CPU); then the
        input is reordered too, and a uint8 input is reordered *before* it is converted to float (a
        quarter of the bytes to move: 2.9 against 3.8 ms for a batch of 32 Atari stacks here).
        """
        if self.cnn[0].weight.is_contiguous(memory_format=torch.channels_last):
            observations = observations.contiguous(memory_format=torch.channels_last)
        return observations.float()

    def from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """phi ``[B, 3136]`` of pixels in [0, 255] (uint8 or float, ``[B, C, H, W]``), 1/255 folded into conv 1.

        conv1(x / 255) = conv(x, W1 / 255) + b1: the scale multiplies the 32 x C x 8 x 8 weights instead
        of the B x C x 84 x 84 pixels (one elementwise pass fewer per forward). The first convolution is
        applied functionally, so a forward hook on ``cnn[0]`` does not fire here (the ReLU modules do).
        """
        conv = self.cnn[0]
        h = F.conv2d(self.prepare(pixels), conv.weight * self.PIXEL_SCALE, conv.bias, conv.stride, conv.padding,
                     conv.dilation, conv.groups)
        for layer in self.cnn[1:]:
            h = layer(h)
        return h


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DuelingQNetwork(QNetwork):
    """SB3 ``QNetwork`` with value and advantage streams (``net_arch`` = hidden sizes of each stream)."""

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
    ) -> None:
        net_arch = [512] if net_arch is None else list(net_arch)
        super().__init__(
            observation_space, action_space, features_extractor, features_dim, [], activation_fn, normalize_images
        )
        del self.q_net  # replaced by the two streams
        n_actions = int(action_space.n)
        self.value_net = _mlp([features_dim, *net_arch, 1])
        self.advantage_net = _mlp([features_dim, *net_arch, n_actions])
        self._takes_pixels = (isinstance(self.features_extractor, NatureConv) and self.normalize_images
                              and is_image_space(self.observation_space))

    @property
    def takes_pixels(self) -> bool:
        """True when observations are images in pixel units that the Nature CNN scales itself."""
        return self._takes_pixels

    def prepare_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs`` converted once for any number of passes: float pixels in the trunk's memory layout for
        images (the conversion :meth:`features` would otherwise repeat per pass), unchanged otherwise."""
        return self.features_extractor.prepare(obs) if self.takes_pixels else obs

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """phi(s) ``[B, F]`` (uint8 or float pixels; images are scaled by 1/255, folded into conv 1)."""
        if self.takes_pixels:
            return self.features_extractor.from_pixels(obs)
        return self.extract_features(obs, self.features_extractor)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s) ``[B, 1]``."""
        return self.value_net(self.features(obs))

    def advantage(self, obs: torch.Tensor) -> torch.Tensor:
        """A(s, a) ``[B, A]`` (raw stream output; Q subtracts its mean over actions)."""
        return self.advantage_net(self.features(obs))

    def streams(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V [B, 1], A [B, A])`` from one pass through the shared trunk."""
        phi = self.features(obs)
        return self.value_net(phi), self.advantage_net(phi)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q(s, .) ``[B, A]`` = V + A - mean_a A."""
        value, adv = self.streams(obs)
        return value + adv - adv.mean(dim=1, keepdim=True)

    def _get_constructor_parameters(self) -> dict:
        data = super()._get_constructor_parameters()
        data["net_arch"] = [m.out_features for m in self.value_net if isinstance(m, nn.Linear)][:-1]
        return data


def build_q_network(
    obs_shape: tuple[int, ...], n_actions: int, net_arch: list[int] | None = None
) -> DuelingQNetwork:
    """A stand-alone dueling network for uint8 image stacks ``[C, H, W]`` (CNN) or float vectors ``[D]`` (MLP)."""
    if len(obs_shape) == 3:
        space = gym.spaces.Box(0, 255, shape=tuple(obs_shape), dtype="uint8")
        extractor: BaseFeaturesExtractor = NatureConv(space)
        arch = [512] if net_arch is None else net_arch
    else:
        space = gym.spaces.Box(-float("inf"), float("inf"), shape=tuple(obs_shape), dtype="float32")
        extractor = FlattenExtractor(space)
        arch = [64, 64] if net_arch is None else net_arch
    return DuelingQNetwork(space, gym.spaces.Discrete(n_actions), extractor, extractor.features_dim, arch)
