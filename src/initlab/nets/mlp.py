"""Fully connected nets: logistic/softmax regression (no hidden layer) and the studies' MLPs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from initlab.errors import ConfigError
from initlab.nets.activations import make_activation


class MLP(nn.Sequential):
    """Flatten -> (Linear -> activation) x len(hidden) -> Linear.

    ``num_outputs`` = 1 makes a binary classifier (sigmoid output, binary cross-entropy: S4);
    ``hidden`` = [] is logistic / softmax regression (S2).  ``depth`` (with ``width``) builds
    ``depth`` hidden layers of ``width`` units instead of ``hidden``: one number to sweep (the
    phase-diagram preset sweeps depth).  ``dtype`` ``"float64"`` builds the layers in float64,
    so that the init is drawn in float64 (``trainer.precision=64-true`` alone casts weights
    drawn in float32: an orthogonal matrix then holds only to ~1e-7)."""

    def __init__(
        self,
        in_features: int,
        num_outputs: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        bias: bool = True,
        depth: int | None = None,
        width: int | None = None,
        dtype: str | None = None,
    ) -> None:
        if depth is not None:
            if width is None:
                raise ConfigError(f"MLP depth={depth} needs a width (model.width)")
            hidden = [int(width)] * int(depth)
        if in_features <= 0 or num_outputs <= 0 or any(int(w) <= 0 for w in hidden):
            raise ConfigError(
                f"MLP sizes must be positive: in_features={in_features}, hidden={list(hidden)}, "
                f"num_outputs={num_outputs}"
            )
        widths = [int(in_features), *map(int, hidden)]
        if dtype not in (None, "float32", "float64"):
            raise ConfigError(f"MLP dtype={dtype!r}: float32, float64 or null expected")
        kw = {"dtype": getattr(torch, dtype)} if dtype else {}
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out, bias=bias, **kw), make_activation(activation)]
        layers.append(nn.Linear(widths[-1], int(num_outputs), bias=bias, **kw))
        super().__init__(*layers)
        self.in_features = int(in_features)
        self.num_outputs = int(num_outputs)
        self.activation_name = activation

    def accepts(self, sample_shape: Sequence[int]) -> bool:
        return math.prod(sample_shape) == self.in_features

    def expected_input(self) -> str:
        return f"{self.in_features} features"
