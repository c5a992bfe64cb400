"""A LeNet-5-style CNN for image data sets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from initlab.errors import ConfigError
from initlab.nets.activations import make_activation


class LeNet(nn.Module):
    """LeNet-5-style CNN: two conv(5x5) + pool blocks, then 120 -> 84 -> outputs."""

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_outputs: int,
        activation: str = "relu",
        channels: Sequence[int] = (6, 16),
    ) -> None:
        super().__init__()
        c1, c2 = map(int, channels)
        act = make_activation
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), act(activation), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), act(activation), nn.MaxPool2d(2),
        )
        side = (image_size // 2 - 4) // 2
        if side <= 0:
            raise ConfigError(f"LeNet needs images of at least 12x12 pixels, got {image_size}")
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * side * side, 120), act(activation),
            nn.Linear(120, 84), act(activation), nn.Linear(84, num_outputs),
        )
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        self.num_outputs = int(num_outputs)
        self.activation_name = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def accepts(self, sample_shape: Sequence[int]) -> bool:
        return tuple(sample_shape) == (self.in_channels, self.image_size, self.image_size)

    def expected_input(self) -> str:
        return f"images of shape {(self.in_channels, self.image_size, self.image_size)}"
