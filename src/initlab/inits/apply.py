"""Applying an init config to a model: every Linear/Conv weight by its family, biases apart
(``bias``), then LSUV's data-dependent rescaling.  Checks an init config before anything is
drawn."""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from initlab.errors import ConfigError
from initlab.inits.bias import check_bias, init_bias_
from initlab.inits.families import DATA_DEPENDENT, INIT_FAMILIES

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


def check_options(name: str, options: dict[str, Any], bias: dict[str, Any]) -> None:
    """Refuse what the families would not use: an option family ``name`` does not take, both
    ``scale`` and ``sigma_w2``, a bias option its family does not take (``ConfigError`` naming
    the key)."""
    known = family_options(name)
    for key, value in options.items():
        if key not in known:
            raise ConfigError(f"init.{key} = {value!r} is not allowed: init {name!r} has no such "
                              f"option; one of {', '.join(known)} is expected.",
                              key=f"init.{key}", value=value)
    if options.get("sigma_w2") is not None and options.get("scale", 1.0) != 1.0:
        raise ConfigError(
            f"init.sigma_w2 = {options['sigma_w2']!r} is not allowed with init.scale = "
            f"{options['scale']!r}: give one of them (init.scale 1 beside sigma_w2).",
            key="init.sigma_w2", value=options["sigma_w2"])
    for key, value in bias.items():
        if key not in ("name", "sigma_b2", "value"):
            raise ConfigError(f"init.bias.{key} = {value!r} is not allowed: the bias init takes "
                              "name, sigma_b2 and value.", key=f"init.bias.{key}", value=value)
    check_bias(**bias)


def initialize(
    model: nn.Module, cfg: dict[str, Any], probe: torch.Tensor | None = None
) -> nn.Module:
    """Apply init config ``cfg`` (``name``, ``scale`` or ``sigma_w2``, family options, ``bias``)
    to ``model``.

    Weights are drawn layer by layer from input to output (each layer's weight, then its bias),
    so the same seed gives the same network whatever the family's options.  Without ``bias``
    every bias is 0.  ``probe`` (a batch of inputs) is needed by the data-dependent families
    (``lsuv``)."""
    options = dict(cfg)
    name = options.pop("name")
    bias = dict(options.pop("bias", None) or {})
    check_options(name, options, bias)
    fn = INIT_FAMILIES[name]
    for layer in weight_layers(model):
        fn(layer.weight, **options)
        init_bias_(layer, **bias)
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
