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


# Options whose value is a spread or a multiplier of one: they must not be negative.
_NON_NEGATIVE = ("scale", "std", "bound", "factor", "gain", "cutoff")


def check_init_config(cfg: dict[str, Any]) -> None:
    """Reject an init config that would fail or silently do the wrong thing, before training."""
    options = dict(cfg)
    name = options.pop("name", None)
    bias = options.pop("bias", None) or {}
    known = family_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"init {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(known)}"
        )
    for key in _NON_NEGATIVE:
        value = options.get(key)
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise ConfigError(f"init.{key} must be a non-negative number, got {value!r}")
    if options.get("distribution", "normal") not in ("normal", "uniform"):
        raise ConfigError(
            f"init.distribution must be 'normal' or 'uniform', got {options['distribution']!r}"
        )
    kind = bias.get("name", "default")
    if kind not in BIAS_KINDS:
        raise ConfigError(f"init.bias.name must be one of {', '.join(BIAS_KINDS)}, got {kind!r}")
    if bias.get("std", 0.0) < 0:
        raise ConfigError(f"init.bias.std must be non-negative, got {bias['std']}")


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
    check_init_config(cfg)
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
