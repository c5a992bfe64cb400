"""Weight-initialization families, one function each, registered by name.

Every family fills a layer's weight tensor in place and takes ``scale``: a multiplier on the
family's textbook std (or uniform bound), so that scale 1 is the formula in the docstring and a
sweep can search ``init`` x ``init.scale``.  The families with random weights also take
``sigma_w2``, the one axis they share: fan_in x Var(W) (``variance`` gives each family's own
value, e.g. He 2, LeCun 1).  With ``sigma_w2`` set a family keeps the *shape* of its draw
(normal, uniform, truncated at +-cutoff, orthogonal) and draws Var(W) = sigma_w2 / fan_in; the
options that set its magnitude (std, bound, gain, factor, He's mode and nonlinearity:
``variance.SUPERSEDED_BY_SIGMA_W2``) are then unused, and ``scale`` must stay 1.  Fans come from
``torch.nn.init``'s own helper, so a conv layer's fan-in is in_channels x kernel area.
``conf/init/<name>.yaml`` selects a family and sets its options; ``initialize`` applies it (and
the separate bias init, ``bias``) to every Linear/Conv layer of a model, the output layer
included.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from initlab.errors import ConfigError
from initlab.inits.bias import BIAS_KINDS  # noqa: F401  (re-exported)
from initlab.inits.variance import truncation_factor

InitFn = Callable[..., None]
INIT_FAMILIES: dict[str, InitFn] = {}
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


def _axis_std(weight: torch.Tensor, scale: float, sigma_w2: float) -> float:
    """The std that gives fan_in x Var(W) = sigma_w2 (``scale`` must be 1: one or the other)."""
    if scale != 1.0:
        raise ConfigError(f"init.sigma_w2 = {sigma_w2:g} and init.scale = {scale:g} are both "
                          "set: give one of them (init.scale 1 with sigma_w2, or sigma_w2 null)",
                          key="init.sigma_w2", value=sigma_w2)
    if not (math.isfinite(sigma_w2) and sigma_w2 > 0):
        raise ConfigError(f"init.sigma_w2 must be a finite number > 0, got {sigma_w2!r}",
                          key="init.sigma_w2", value=sigma_w2)
    return math.sqrt(sigma_w2 / fans(weight)[0])


@register("zeros")
def zeros_(weight: torch.Tensor, scale: float = 1.0) -> None:
    """All weights 0: every unit of a layer computes the same thing forever (S1, S2, S4)."""
    nn.init.zeros_(weight)


@register("constant")
def constant_(weight: torch.Tensor, scale: float = 1.0, value: float = 0.1) -> None:
    """All weights ``value x scale``: symmetric like zeros, but the signal is not zero (S1)."""
    nn.init.constant_(weight, value * scale)


@register("normal")
def normal_(weight: torch.Tensor, scale: float = 1.0, sigma_w2: float | None = None,
            std: float = 0.01) -> None:
    """N(0, (std x scale)^2), the fixed-std Gaussian of S1 (std 1 and 0.01); with sigma_w2,
    N(0, sigma_w2 / fan_in)."""
    _fill(weight, std * scale if sigma_w2 is None else _axis_std(weight, scale, sigma_w2),
          "normal")


@register("truncated_normal")
def truncated_normal_(
    weight: torch.Tensor, scale: float = 1.0, sigma_w2: float | None = None, std: float = 0.1,
    cutoff: float = 2.0
) -> None:
    """N(0, s^2) with s = std x scale, redrawn beyond +-cutoff x s (TensorFlow's
    ``truncated_normal``, S0).  ``torch.nn.init.trunc_normal_`` takes absolute cut-offs, so they
    are scaled here; the realised variance is s^2 t(cutoff) (``variance.truncation_factor``:
    t(2) = 0.7737, a realised std of 0.88 s).  With sigma_w2, s^2 = sigma_w2 / (fan_in t(cutoff))
    so that the *realised* fan_in x Var(W) is sigma_w2."""
    if sigma_w2 is None:
        s = std * scale
    else:
        s = _axis_std(weight, scale, sigma_w2) / math.sqrt(truncation_factor(cutoff))
    nn.init.trunc_normal_(weight, mean=0.0, std=s, a=-cutoff * s, b=cutoff * s)


@register("uniform")
def uniform_(weight: torch.Tensor, scale: float = 1.0, sigma_w2: float | None = None,
             bound: float = 0.05) -> None:
    """U(-b, b) with b = bound x scale (Var = b^2 / 3); with sigma_w2, b = sqrt(3 sigma_w2 /
    fan_in)."""
    b = bound * scale if sigma_w2 is None else math.sqrt(3.0) * _axis_std(weight, scale, sigma_w2)
    nn.init.uniform_(weight, -b, b)


@register("xavier")
def xavier_(
    weight: torch.Tensor, scale: float = 1.0, sigma_w2: float | None = None,
    distribution: str = "uniform", gain: float = 1.0
) -> None:
    """Glorot & Bengio (2010): std = gain sqrt(2 / (fan_in + fan_out)); the uniform bound is
    gain sqrt(6 / (fan_in + fan_out)) (S3).  With sigma_w2: std sqrt(sigma_w2 / fan_in)."""
    if sigma_w2 is not None:
        _fill(weight, _axis_std(weight, scale, sigma_w2), distribution)
        return
    fan_in, fan_out = fans(weight)
    _fill(weight, scale * gain * math.sqrt(2.0 / (fan_in + fan_out)), distribution)


@register("he")
def he_(
    weight: torch.Tensor,
    scale: float = 1.0,
    sigma_w2: float | None = None,
    distribution: str = "normal",
    mode: str = "fan_in",
    nonlinearity: str = "relu",
    negative_slope: float = 0.0,
) -> None:
    """He et al. (2015), Kaiming: std = gain / sqrt(fan), gain = sqrt(2) for ReLU, so
    std = sqrt(2 / fan_in) by default; the uniform bound is sqrt(6 / fan_in) (S1-S4).  With
    sigma_w2: std sqrt(sigma_w2 / fan_in) (mode and nonlinearity unused)."""
    if sigma_w2 is not None:
        _fill(weight, _axis_std(weight, scale, sigma_w2), distribution)
        return
    if mode not in ("fan_in", "fan_out"):
        raise ConfigError(f"he: mode must be 'fan_in' or 'fan_out', not {mode!r}")
    fan = dict(zip(("fan_in", "fan_out"), fans(weight)))[mode]
    gain = nn.init.calculate_gain(nonlinearity, negative_slope)
    _fill(weight, scale * gain / math.sqrt(fan), distribution)


@register("lecun")
def lecun_(weight: torch.Tensor, scale: float = 1.0, sigma_w2: float | None = None,
           distribution: str = "normal") -> None:
    """LeCun et al. (1998): std = sqrt(1 / fan_in).  This is the textbook "Xavier" of S1
    (N(0, 1/n_in)), not Glorot's 2 / (n_in + n_out).  With sigma_w2: sqrt(sigma_w2 / fan_in)."""
    if sigma_w2 is not None:
        _fill(weight, _axis_std(weight, scale, sigma_w2), distribution)
        return
    fan_in, _ = fans(weight)
    _fill(weight, scale / math.sqrt(fan_in), distribution)


@register("orthogonal")
def orthogonal_(weight: torch.Tensor, scale: float = 1.0, sigma_w2: float | None = None,
                gain: float = 1.0) -> None:
    """Saxe et al. (2014): a (semi-)orthogonal matrix times gain x scale.  With sigma_w2 the
    gain is sqrt(sigma_w2 / min(1, cols / rows)) (rows = out_channels, cols = fan_in), so that
    fan_in x Var(W) = sigma_w2 (square or wide-to-narrow layers: gain^2 = sigma_w2)."""
    if sigma_w2 is not None:
        rows, cols = weight.shape[0], weight[0].numel()
        _axis_std(weight, scale, sigma_w2)  # refuses scale and sigma_w2 together
        gain, scale = math.sqrt(sigma_w2 / min(1.0, cols / rows)), 1.0
    nn.init.orthogonal_(weight, gain=gain * scale)


@register("default")
def default_(weight: torch.Tensor, scale: float = 1.0, sigma_w2: float | None = None) -> None:
    """PyTorch's own Linear/Conv init, U(+-1/sqrt(fan_in)) (kaiming_uniform_ with a = sqrt(5),
    the same random draws as ``reset_parameters``), times scale.  Glorot & Bengio's "standard".
    Its sigma_w2 is 1/3; with sigma_w2 given the same draws are multiplied by sqrt(3 sigma_w2)."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if sigma_w2 is not None:
        scale = math.sqrt(fans(weight)[0] * 3.0) * _axis_std(weight, scale, sigma_w2)
    if scale != 1.0:
        with torch.no_grad():
            weight.mul_(scale)


@register("random")
def random_(weight: torch.Tensor, scale: float = 1.0, sigma_w2: float | None = None,
            factor: float = 10.0) -> None:
    """S4's "large random" init: N(0, 1) x factor (x scale); with sigma_w2, N(0, sigma_w2 /
    fan_in)."""
    _fill(weight, factor * scale if sigma_w2 is None else _axis_std(weight, scale, sigma_w2),
          "normal")


@register("lsuv")
def lsuv_(weight: torch.Tensor, scale: float = 1.0) -> None:
    """Layer-sequential unit variance, Mishkin & Matas (2016), first step: an orthogonal draw.
    ``initialize`` then rescales layer after layer on a probe batch until each layer's output
    std is ``scale`` (see ``_lsuv_rescale``)."""
    nn.init.orthogonal_(weight)
