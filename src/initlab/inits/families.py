"""Weight-initialization families, one function each, registered by name.

Every family fills a layer's weight tensor in place and takes ``scale``: a multiplier on the
family's textbook std (or uniform bound), so that scale 1 is the formula in the docstring and a
sweep can search ``init`` x ``init.scale``.  Fans come from ``torch.nn.init``'s own helper, so a
conv layer's fan-in is in_channels x kernel area.  ``conf/init/<name>.yaml`` selects a family and
sets its options; ``initialize`` applies it (and the separate bias init) to every Linear/Conv
layer of a model, the output layer included.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from initlab.errors import ConfigError

InitFn = Callable[..., None]
INIT_FAMILIES: dict[str, InitFn] = {}
BIAS_KINDS = ("default", "zeros", "constant", "normal")
# Families whose draw depends on data (a probe batch goes through the model).
DATA_DEPENDENT = {"lsuv"}


def register(name: str) -> Callable[[InitFn], InitFn]:
    def add(fn: InitFn) -> InitFn:
        INIT_FAMILIES[name] = fn
        return fn

    return add


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear ``(out, in)`` or Conv ``(out, in, *kernel)`` weight; for conv
    weights each includes the kernel area (the same rule as ``torch.nn.init``)."""
    if weight.dim() < 2:
        raise ValueError(f"fans need a weight of at least 2 dimensions, got shape {tuple(weight.shape)}")
    receptive_field = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive_field, weight.shape[0] * receptive_field


def _fill(weight: torch.Tensor, std: float, distribution: str) -> None:
    """Zero-mean normal with ``std``, or the uniform with the same std (bound = sqrt(3) std)."""
    with torch.no_grad():
        if distribution == "normal":
            weight.normal_(0.0, std)
        elif distribution == "uniform":
            bound = math.sqrt(3.0) * std
            weight.uniform_(-bound, bound)
        else:
            raise ConfigError(f"distribution must be 'normal' or 'uniform', not {distribution!r}")


@register("zeros")
def zeros_(weight: torch.Tensor, scale: float = 1.0) -> None:
    """All weights 0: every unit of a layer computes the same thing forever (S1, S2, S4)."""
    nn.init.zeros_(weight)


@register("constant")
def constant_(weight: torch.Tensor, scale: float = 1.0, value: float = 0.1) -> None:
    """All weights ``value x scale``: symmetric like zeros, but the signal is not zero (S1)."""
    nn.init.constant_(weight, value * scale)


@register("normal")
def normal_(weight: torch.Tensor, scale: float = 1.0, std: float = 0.01) -> None:
    """N(0, (std x scale)^2), the fixed-std Gaussian of S1 (std 1 and 0.01)."""
    _fill(weight, std * scale, "normal")


@register("truncated_normal")
def truncated_normal_(
    weight: torch.Tensor, scale: float = 1.0, std: float = 0.1, cutoff: float = 2.0
) -> None:
    """N(0, s^2) with s = std x scale, redrawn beyond +-cutoff x s (TensorFlow's
    ``truncated_normal``, S0).  ``torch.nn.init.trunc_normal_`` takes absolute cut-offs, so they
    are scaled here; with cutoff 2 the realised std is 0.88 s."""
    s = std * scale
    nn.init.trunc_normal_(weight, mean=0.0, std=s, a=-cutoff * s, b=cutoff * s)


@register("uniform")
def uniform_(weight: torch.Tensor, scale: float = 1.0, bound: float = 0.05) -> None:
    """U(-b, b) with b = bound x scale."""
    b = bound * scale
    nn.init.uniform_(weight, -b, b)


@register("xavier")
def xavier_(
    weight: torch.Tensor, scale: float = 1.0, distribution: str = "uniform", gain: float = 1.0
) -> None:
    """Glorot & Bengio (2010): std = gain sqrt(2 / (fan_in + fan_out)); the uniform bound is
    gain sqrt(6 / (fan_in + fan_out)) (S3)."""
    fan_in, fan_out = fans(weight)
    _fill(weight, scale * gain * math.sqrt(2.0 / (fan_in + fan_out)), distribution)


@register("he")
def he_(
    weight: torch.Tensor,
    scale: float = 1.0,
    distribution: str = "normal",
    mode: str = "fan_in",
    nonlinearity: str = "relu",
    negative_slope: float = 0.0,
) -> None:
    """He et al. (2015), Kaiming: std = gain / sqrt(fan), gain = sqrt(2) for ReLU, so
    std = sqrt(2 / fan_in) by default; the uniform bound is sqrt(6 / fan_in) (S1-S4)."""
    if mode not in ("fan_in", "fan_out"):
        raise ConfigError(f"he: mode must be 'fan_in' or 'fan_out', not {mode!r}")
    fan = dict(zip(("fan_in", "fan_out"), fans(weight)))[mode]
    gain = nn.init.calculate_gain(nonlinearity, negative_slope)
    _fill(weight, scale * gain / math.sqrt(fan), distribution)


@register("lecun")
def lecun_(weight: torch.Tensor, scale: float = 1.0, distribution: str = "normal") -> None:
    """LeCun et al. (1998): std = sqrt(1 / fan_in).  This is the textbook "Xavier" of S1
    (N(0, 1/n_in)), not Glorot's 2 / (n_in + n_out)."""
    fan_in, _ = fans(weight)
    _fill(weight, scale / math.sqrt(fan_in), distribution)


@register("orthogonal")
def orthogonal_(weight: torch.Tensor, scale: float = 1.0, gain: float = 1.0) -> None:
    """Saxe et al. (2014): a (semi-)orthogonal matrix times gain x scale."""
    nn.init.orthogonal_(weight, gain=gain * scale)


@register("default")
def default_(weight: torch.Tensor, scale: float = 1.0) -> None:
    """PyTorch's own Linear/Conv init, U(+-1/sqrt(fan_in)) (kaiming_uniform_ with a = sqrt(5),
    the same random draws as ``reset_parameters``), times scale.  Glorot & Bengio's "standard"."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if scale != 1.0:
        with torch.no_grad():
            weight.mul_(scale)


@register("random")
def random_(weight: torch.Tensor, scale: float = 1.0, factor: float = 10.0) -> None:
    """S4's "large random" init: N(0, 1) x factor (x scale)."""
    _fill(weight, factor * scale, "normal")


@register("lsuv")
def lsuv_(weight: torch.Tensor, scale: float = 1.0) -> None:
    """Layer-sequential unit variance, Mishkin & Matas (2016), first step: an orthogonal draw.
    ``initialize`` then rescales layer after layer on a probe batch until each layer's output
    std is ``scale`` (see ``_lsuv_rescale``)."""
    nn.init.orthogonal_(weight)
