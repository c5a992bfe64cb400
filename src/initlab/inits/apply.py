"""Applying an init config to a model: every Linear/Conv weight by its family, biases apart,
then LSUV's data-dependent rescaling.  Checks an init config before anything is drawn."""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from initlab.errors import ConfigError
from initlab.inits.families import BIAS_KINDS, DATA_DEPENDENT, INIT_FAMILIES, fans

# The layers an init draws: fully connected and convolutional.
WEIGHT_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weight_layers(model: nn.Module) -> Iterator[nn.Module]:
    """The layers an init applies to, input to output: every Linear and Conv."""
    for module in model.modules():
        if isinstance(module, WEIGHT_LAYER_TYPES):
            yield module


def family_options(name: str) -> dict[str, Any]:
    """A family's options and their defaults (everything after the tensor)."""
    if name not in INIT_FAMILIES:
        raise ConfigError(
            f"unknown init family {name!r}; available: {', '.join(sorted(INIT_FAMILIES))}"
        )
    params = list(inspect.signature(INIT_FAMILIES[name]).parameters.values())[1:]
    return {p.name: p.default for p in params}


def init_bias_(layer: nn.Module, name: str = "default", value: float = 0.0, std: float = 1.0) -> None:
    """Bias init, set apart from the weights: PyTorch's default U(+-1/sqrt(fan_in)), zeros, a
    constant, or N(0, std^2) (S0 uses std 1)."""
    if layer.bias is None:
        return
    with torch.no_grad():
        if name == "default":
            fan_in, _ = fans(layer.weight)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            layer.bias.uniform_(-bound, bound)
        elif name == "zeros":
            layer.bias.zero_()
        elif name == "constant":
            layer.bias.fill_(value)
        elif name == "normal":
            layer.bias.normal_(0.0, std)
        else:
            raise ConfigError(f"unknown bias init {name!r}; available: {', '.join(BIAS_KINDS)}")


def initialize(
    model: nn.Module, cfg: dict[str, Any], probe: torch.Tensor | None = None
) -> nn.Module:
    """Apply init config ``cfg`` (``name``, ``scale``, family options, ``bias``) to ``model``.

    Weights are drawn layer by layer from input to output, so the same seed gives the same
    network whatever the family's options.  ``probe`` (a batch of inputs) is needed by the
    data-dependent families (``lsuv``)."""
    options = dict(cfg)
    name = options.pop("name")
    bias = dict(options.pop("bias", None) or {})
    bias_kind = bias.pop("name", "default")
    fn = INIT_FAMILIES[name]
    for layer in weight_layers(model):
        fn(layer.weight, **options)
        init_bias_(layer, bias_kind, **bias)
    if name in DATA_DEPENDENT:
        if probe is None:
            raise ConfigError(f"init {name!r} needs a probe batch of data")
        _lsuv_rescale(model, probe, target_std=options.get("scale", 1.0))
    return model


def _lsuv_rescale(
    model: nn.Module, probe: torch.Tensor, target_std: float = 1.0, tol: float = 0.01,
    max_iter: int = 10,
) -> None:
    """LSUV's second step: for each layer in order, divide its weights by the std of its output
    on the probe batch until that std is within ``tol`` of ``target_std``."""
    for layer in weight_layers(model):
        captured: dict[str, torch.Tensor] = {}
        handle = layer.register_forward_hook(lambda m, i, out: captured.__setitem__("out", out))
        try:
            for _ in range(max_iter):
                with torch.no_grad():
                    model(probe)
                std = captured["out"].std().item()
                if not math.isfinite(std) or std == 0.0 or abs(std - target_std) < tol:
                    break
                with torch.no_grad():
                    layer.weight.mul_(target_std / std)
        finally:
            handle.remove()
