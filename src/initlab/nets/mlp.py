"""Fully connected nets: logistic/softmax regression (no hidden layer) and the studies' MLPs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from initlab.errors import ConfigError
from initlab.nets.activations import make_activation


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
