"""The dueling Q-network of Wang et al. (2016) as a Stable-Baselines3 ``QNetwork``.

    features  phi(s)            Nature-CNN convolutions (Mnih et al. 2015) or a flatten for vectors
    value     V(s)      [B, 1]  MLP stream on phi(s)
    advantage A(s, a)   [B, A]  MLP stream on phi(s)
    Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')            (Wang et al. 2016, eq. 9)

Each stream can be called on its own (:meth:`DuelingQNetwork.value`,
:meth:`DuelingQNetwork.advantage`) so that saliency analysis can take dV/ds and dA/ds. Every
non-linearity is an ``nn.ReLU`` module (Captum's GuidedBackprop and DeepLift need modules).
Observations may be uint8 or float in pixel units [0, 255]; they are scaled by 1/255 inside, so a
gradient with respect to a float input is a gradient per pixel intensity unit.
"""

from __future__ import annotations

import gymnasium as gym
import torch
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

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if self.cnn[0].weight.is_contiguous(memory_format=torch.channels_last):
            # the trainer may move the weights to channels-last (~20% faster convolutions on CPU)
            observations = observations.contiguous(memory_format=torch.channels_last)
        return self.cnn(observations)


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

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """phi(s) ``[B, F]`` (uint8 or float pixels; images are scaled by 1/255)."""
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
