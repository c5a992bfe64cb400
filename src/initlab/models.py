"""The networks of the studies: logistic regression, fully connected MLPs and a LeNet-style CNN.

Each model declares the input it expects (``input_shape``) so that a mismatch with the data set
is caught before training, and exposes its weight layers in order for inits and diagnostics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from initlab.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(
            f"unknown activation {name!r}; available: {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """Flatten -> (Linear -> activation) x len(hidden) -> Linear.

    ``num_outputs`` = 1 makes a binary classifier (sigmoid output, binary cross-entropy: S4);
    ``hidden`` = [] is logistic / softmax regression (S2)."""

    def __init__(
        self,
        in_features: int,
        num_outputs: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        bias: bool = True,
    ) -> None:
        if in_features <= 0 or num_outputs <= 0 or any(int(w) <= 0 for w in hidden):
            raise ConfigError(
                f"MLP sizes must be positive: in_features={in_features}, hidden={list(hidden)}, "
                f"num_outputs={num_outputs}"
            )
        widths = [int(in_features), *map(int, hidden)]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out, bias=bias), make_activation(activation)]
        layers.append(nn.Linear(widths[-1], int(num_outputs), bias=bias))
        super().__init__(*layers)
        self.in_features = int(in_features)
        self.num_outputs = int(num_outputs)
        self.activation_name = activation

    def accepts(self, sample_shape: Sequence[int]) -> bool:
        return math.prod(sample_shape) == self.in_features

    def expected_input(self) -> str:
        return f"{self.in_features} features"


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


def check_fits_data(model: nn.Module, sample_shape: Sequence[int], num_classes: int,
                    dataset: str) -> None:
    """Fail before training when the model's input or output does not match the data set."""
    shape = tuple(int(s) for s in sample_shape)
    if hasattr(model, "accepts") and not model.accepts(shape):
        raise ConfigError(
            f"model/data mismatch: the model expects {model.expected_input()}, but data set "
            f"{dataset!r} gives samples of shape {shape} ({math.prod(shape)} features). "
            f"Leave model.in_features at its default (${{dataset.in_features}}) or pick a "
            f"data set of that shape."
        )
    wanted = 1 if num_classes == 2 else num_classes
    outputs = getattr(model, "num_outputs", wanted)
    if outputs != wanted and not (num_classes == 2 and outputs == 2):
        raise ConfigError(
            f"model/data mismatch: the model has {outputs} outputs, but data set {dataset!r} has "
            f"{num_classes} classes (use {wanted} output{'s' if wanted > 1 else ''})."
        )
