"""Activations by name, as the configs and the mean-field theory name them."""

from __future__ import annotations

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
