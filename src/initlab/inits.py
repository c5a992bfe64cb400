"""Weight-initialization families, one function each, registered by name.

Every family fills a layer's weight tensor in place and takes ``scale``: a multiplier on the
family's textbook std (or uniform bound), so that scale 1 is the formula in the docstring and a
sweep can search ``init`` x ``init.scale``.  Fans come from ``torch.nn.init``'s own helper, so a
conv layer's fan-in is in_channels x kernel area.  ``conf/init/<name>.yaml`` selects a family and
sets its options; ``initialize`` applies it (and the separate bias init) to every Linear/Conv
layer of a model, the output layer included.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any

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
    """(fan_in, fan_out); for conv weights each includes the kernel area."""
    return nn.init._calculate_fan_in_and_fan_out(weight)


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


def weight_layers(model: nn.Module) -> Iterator[nn.Module]:
    """The layers an init applies to, input to output: every Linear and Conv."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
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
