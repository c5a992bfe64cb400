"""Small MLPs with a chosen sigma_w2 / sigma_b2 (or orthogonal weights), drawn in a chosen
dtype: the nets the diagnostics tests measure against mean-field and random-matrix theory."""

from __future__ import annotations

import math

import torch
from torch import nn

from initlab.nets import MLP


def mlp(activation: str, sigma_w2: float, depth: int, width: int, *, orthogonal: bool = False,
        sigma_b2: float = 0.0, seed: int = 0, dtype=torch.float32) -> MLP:
    """width -> [width] x depth -> 10, weights of variance sigma_w2 / fan_in (or orthogonal
    with gain sqrt(sigma_w2)), biases N(0, sigma_b2)."""
    torch.manual_seed(seed)
    net = MLP(width, 10, [width] * depth, activation).to(dtype)  # drawn in dtype
    for layer in net:
        if isinstance(layer, nn.Linear):
            if orthogonal:
                nn.init.orthogonal_(layer.weight, gain=math.sqrt(sigma_w2))
            else:
                nn.init.normal_(layer.weight, std=math.sqrt(sigma_w2 / layer.in_features))
            nn.init.normal_(layer.bias, std=math.sqrt(sigma_b2))
    return net
