"""Bias families, one function each, registered by name: ``init.bias.name`` and ``sigma_b2``.

sigma_b^2 = Var(b) is the other half of every mean-field phase diagram (q_l = sigma_w^2 E[phi^2]
+ sigma_b^2).  ``sigma_b2`` null means the family's own: 0 for ``zeros`` and ``constant``,
1 / (3 fan_in) for ``default``; ``normal`` has none and needs a number (there is no hidden
N(0, 1): S0's standard-normal biases say ``sigma_b2: 1.0``).  Unset, a layer's bias is 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from initlab.errors import ConfigError
from initlab.inits.variance import shape_fans

BiasFn = Callable[..., None]
BIAS_FAMILIES: dict[str, BiasFn] = {}


def _register(name: str) -> Callable[[BiasFn], BiasFn]:
    def add(fn: BiasFn) -> BiasFn:
        BIAS_FAMILIES[name] = fn
        return fn

    return add


@_register("zeros")
def zeros_(bias: torch.Tensor, fan_in: int, sigma_b2: float | None = None,
           value: float = 0.0) -> None:
    """b = 0 (sigma_b^2 = 0): the default."""
    bias.zero_()


@_register("constant")
def constant_(bias: torch.Tensor, fan_in: int, sigma_b2: float | None = None,
              value: float = 0.0) -> None:
    """b = value for every unit (Var(b) = 0)."""
    bias.fill_(value)


@_register("normal")
def normal_(bias: torch.Tensor, fan_in: int, sigma_b2: float | None = None,
            value: float = 0.0) -> None:
    """b ~ N(0, sigma_b2): the mean-field bias (Schoenholz et al. 2017); S0 uses sigma_b2 = 1."""
    bias.normal_(0.0, math.sqrt(sigma_b2))


@_register("default")
def default_(bias: torch.Tensor, fan_in: int, sigma_b2: float | None = None,
             value: float = 0.0) -> None:
    """PyTorch's own U(+-1/sqrt(fan_in)) (Var = 1 / (3 fan_in)); with sigma_b2, U(+-sqrt(3
    sigma_b2))."""
    bound = (math.sqrt(3.0 * sigma_b2) if sigma_b2 is not None
             else 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0)
    bias.uniform_(-bound, bound)


BIAS_KINDS = tuple(BIAS_FAMILIES)


def check_bias(name: str = "zeros", sigma_b2: float | None = None, value: float = 0.0) -> None:
    """Refuse a bias init whose options its family would not use (``ConfigError`` naming the
    key): an unknown family, a variance for a family that draws none, ``normal`` without one,
    a ``value`` for a family other than ``constant``."""
    if name not in BIAS_FAMILIES:
        raise ConfigError(f"unknown bias init {name!r}; available: {', '.join(BIAS_KINDS)}",
                          key="init.bias.name", value=name)
    if sigma_b2 is not None and not (isinstance(sigma_b2, (int, float))
                                     and math.isfinite(sigma_b2) and sigma_b2 >= 0):
        raise ConfigError(f"init.bias.sigma_b2 = {sigma_b2!r} is not allowed: a finite number "
                          ">= 0 or null is expected.", key="init.bias.sigma_b2", value=sigma_b2)
    if name in ("zeros", "constant") and sigma_b2 not in (None, 0):
        raise ConfigError(
            f"init.bias.sigma_b2 = {sigma_b2!r} is not allowed with init.bias.name = {name!r} "
            "(it draws no variance): null or 0, or init.bias.name=normal (N(0, sigma_b2)) or "
            "default (uniform with that variance) is expected.", key="init.bias.sigma_b2",
            value=sigma_b2, allowed="null or 0")
    if name == "normal" and sigma_b2 is None:
        raise ConfigError(
            "init.bias.sigma_b2 = null is not allowed with init.bias.name = 'normal' (it has no "
            "variance of its own): a finite number >= 0 is expected.",
            key="init.bias.sigma_b2", value=None, allowed="a finite number >= 0")
    if value != 0 and name != "constant":
        raise ConfigError(f"init.bias.value = {value!r} is not allowed with init.bias.name = "
                          f"{name!r}: 0 is expected (only 'constant' uses it).",
                          key="init.bias.value", value=value, allowed="0")


def init_bias_(layer: torch.nn.Module, name: str = "zeros", sigma_b2: float | None = None,
               value: float = 0.0) -> None:
    """Fill ``layer.bias`` (if any) by bias family ``name`` (checked first: ``check_bias``)."""
    check_bias(name, sigma_b2, value)
    if getattr(layer, "bias", None) is None:
        return
    with torch.no_grad():
        BIAS_FAMILIES[name](layer.bias, shape_fans(layer.weight.shape)[0], sigma_b2=sigma_b2,
                            value=value)
