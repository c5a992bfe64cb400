"""Each family's place on one axis: sigma_w^2 = fan_in x Var(W), one function per family.

sigma_w^2 is the mean-field weight variance: a layer multiplies the pre-activation variance by
it (times E[phi(h)^2] / q), so He's 2 keeps a ReLU net's signal constant and LeCun's 1 a linear
one's.  Every function below takes a weight's shape and the family's options (as
``conf/init/<name>.yaml`` spells them) and returns the sigma_w^2 the family draws for a layer of
that shape.  When ``sigma_w2`` is given the family draws exactly that (``families``), so the
function returns it; ``scale`` multiplies the std, hence sigma_w^2 by scale^2.

``lsuv`` has none (``None``): its weights are rescaled until each layer's *output* std on a probe
batch is ``init.scale``, so its sigma_w^2 is whatever the data makes it; a run records the
measured value (``effective_sigma_w2`` after the rescaling) beside that target.

``effective_sigma_w2(model)`` measures fan_in x Var(W) layer by layer (``layer1``, ``layer2``, ...
as the diagnostics name them); ``summary_sigma_w2`` is their geometric mean, the one per-layer
value that multiplies a linear signal's variance by the same amount over the whole depth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

VarianceFn = Callable[..., "float | None"]
VARIANCES: dict[str, VarianceFn] = {}
# The options each family's sigma_w2 replaces (its magnitude); the others (distribution,
# cutoff, orthogonality) still shape the draw.
SUPERSEDED_BY_SIGMA_W2: dict[str, tuple[str, ...]] = {
    "normal": ("std",), "truncated_normal": ("std",), "uniform": ("bound",),
    "xavier": ("gain",), "he": ("mode", "nonlinearity", "negative_slope"), "lecun": (),
    "orthogonal": ("gain",), "default": (), "random": ("factor",),
}


def _register(name: str) -> Callable[[VarianceFn], VarianceFn]:
    def add(fn: VarianceFn) -> VarianceFn:
        VARIANCES[name] = fn
        return fn

    return add


def shape_fans(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of this shape, as ``torch.nn.init`` counts them."""
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def truncation_factor(cutoff: float) -> float:
    """Var of N(0, 1) redrawn beyond +-c: 1 - 2c phi(c) / (2 Phi(c) - 1); 0.7737 (= 0.8796^2)
    at c = 2, TensorFlow's cut."""
    pdf = math.exp(-cutoff * cutoff / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(cutoff / math.sqrt(2))  # 2 Phi(c) - 1
    return 1.0 - 2.0 * cutoff * pdf / mass


def _given(sigma_w2: float | None, own: float) -> float:
    return float(sigma_w2) if sigma_w2 is not None else own


@_register("zeros")
def zeros(shape: Sequence[int], scale: float = 1.0) -> float:
    """0: every weight is 0."""
    return 0.0


@_register("constant")
def constant(shape: Sequence[int], scale: float = 1.0, value: float = 0.1) -> float:
    """0: every weight equals value x scale (no variance; the signal is value^2 fan_in q)."""
    return 0.0


@_register("normal")
def normal(shape: Sequence[int], scale: float = 1.0, sigma_w2: float | None = None,
           std: float = 0.01) -> float:
    """fan_in (std x scale)^2: a fixed std, so sigma_w^2 grows with the layer's fan-in."""
    return _given(sigma_w2, shape_fans(shape)[0] * (std * scale) ** 2)


@_register("truncated_normal")
def truncated_normal(shape: Sequence[int], scale: float = 1.0, sigma_w2: float | None = None,
                     std: float = 0.1, cutoff: float = 2.0) -> float:
    """fan_in (std x scale)^2 x t(cutoff), t(c) = 1 - 2c phi(c) / (2 Phi(c) - 1): the redraws
    beyond +-c std shrink the variance (t(2) = 0.7737, the realised std 0.88 std of S0)."""
    return _given(sigma_w2, shape_fans(shape)[0] * (std * scale) ** 2 * truncation_factor(cutoff))


@_register("uniform")
def uniform(shape: Sequence[int], scale: float = 1.0, sigma_w2: float | None = None,
            bound: float = 0.05) -> float:
    """fan_in b^2 / 3, b = bound x scale (Var of U(-b, b) is b^2 / 3)."""
    return _given(sigma_w2, shape_fans(shape)[0] * (bound * scale) ** 2 / 3.0)


@_register("xavier")
def xavier(shape: Sequence[int], scale: float = 1.0, sigma_w2: float | None = None,
           distribution: str = "uniform", gain: float = 1.0) -> float:
    """2 fan_in / (fan_in + fan_out) x (gain x scale)^2 (Glorot & Bengio 2010): 1 for a square
    layer, near 2 for a wide-to-narrow output layer (784-256-256-10: 1.51, 1, 1.92)."""
    fan_in, fan_out = shape_fans(shape)
    return _given(sigma_w2, 2.0 * fan_in / (fan_in + fan_out) * (gain * scale) ** 2)


@_register("he")
def he(shape: Sequence[int], scale: float = 1.0, sigma_w2: float | None = None,
       distribution: str = "normal", mode: str = "fan_in", nonlinearity: str = "relu",
       negative_slope: float = 0.0) -> float:
    """gain^2 fan_in / fan x scale^2 (He et al. 2015): 2 for ReLU with mode fan_in;
    2 / (1 + a^2) for leaky ReLU; mode fan_out gives 2 fan_in / fan_out."""
    fan_in, fan_out = shape_fans(shape)
    fan = fan_in if mode == "fan_in" else fan_out
    gain = nn.init.calculate_gain(nonlinearity, negative_slope)
    return _given(sigma_w2, gain ** 2 * fan_in / fan * scale ** 2)


@_register("lecun")
def lecun(shape: Sequence[int], scale: float = 1.0, sigma_w2: float | None = None,
          distribution: str = "normal") -> float:
    """scale^2 (LeCun et al. 1998: Var = 1 / fan_in; S1's textbook "Xavier")."""
    return _given(sigma_w2, scale ** 2)


@_register("orthogonal")
def orthogonal(shape: Sequence[int], scale: float = 1.0, sigma_w2: float | None = None,
               gain: float = 1.0) -> float:
    """(gain x scale)^2 x min(1, cols / rows) for the weight flattened to rows = out_channels
    by cols = fan_in (Saxe et al. 2014): orthonormal rows (rows <= cols) have squared norm 1
    each, so fan_in Var = gain^2; orthonormal columns spread cols unit norms over rows x cols."""
    rows = shape[0]
    cols = math.prod(shape[1:])
    return _given(sigma_w2, (gain * scale) ** 2 * min(1.0, cols / rows))


@_register("default")
def default(shape: Sequence[int], scale: float = 1.0, sigma_w2: float | None = None) -> float:
    """scale^2 / 3: PyTorch's U(+-1/sqrt(fan_in)) has Var 1 / (3 fan_in)."""
    return _given(sigma_w2, scale ** 2 / 3.0)


@_register("random")
def random(shape: Sequence[int], scale: float = 1.0, sigma_w2: float | None = None,
           factor: float = 10.0) -> float:
    """fan_in (factor x scale)^2: S4's N(0, 1) x 10 has sigma_w^2 = 100 fan_in."""
    return _given(sigma_w2, shape_fans(shape)[0] * (factor * scale) ** 2)


@_register("lsuv")
def lsuv(shape: Sequence[int], scale: float = 1.0) -> None:
    """None: LSUV targets each layer's output std (``scale``) on a probe batch, so its sigma_w^2
    depends on the data; the run records the measured ``effective_sigma_w2`` instead."""


def nominal_sigma_w2(init: Mapping[str, Any], shape: Sequence[int]) -> float | None:
    """The sigma_w^2 init config ``init`` (name, options; ``bias`` ignored) draws for a layer of
    weight shape ``shape``; None for data-dependent families (``lsuv``)."""
    options = {k: v for k, v in init.items() if k not in ("name", "bias")}
    return VARIANCES[init["name"]](tuple(shape), **options)


def constant_sigma_w2(init: Mapping[str, Any]) -> float | None:
    """The config's sigma_w^2 when it is one number for every layer whatever its shape
    (``sigma_w2`` set; He with mode fan_in, LeCun, PyTorch's default, zeros), else None
    (fixed-std families, Xavier, orthogonal: per layer, see ``nominal_sigma_w2``; LSUV)."""
    if init.get("sigma_w2") is not None:
        return float(init["sigma_w2"])
    values = {nominal_sigma_w2(init, shape) for shape in ((7, 3), (3, 7), (5, 11, 2, 2))}
    return values.pop() if len(values) == 1 and None not in values else None


# ---- measured ------------------------------------------------------------------------------
def _weight_layers(model: nn.Module) -> list[nn.Module]:
    from initlab.inits.apply import weight_layers

    return list(weight_layers(model))


def effective_sigma_w2(model: nn.Module) -> dict[str, float]:
    """``{"layer1": fan_in x Var(W), ...}`` measured on the model's weights as they are now
    (population variance about the weights' own mean), input to output."""
    out = {}
    for i, layer in enumerate(_weight_layers(model), start=1):
        w = layer.weight.detach()
        out[f"layer{i}"] = float(w.double().var(correction=0)) * shape_fans(w.shape)[0]
    return out


def effective_sigma_b2(model: nn.Module) -> dict[str, float]:
    """``{"layer1": Var(b), ...}`` for the layers that have a bias (population variance)."""
    out = {}
    for i, layer in enumerate(_weight_layers(model), start=1):
        if getattr(layer, "bias", None) is not None:
            out[f"layer{i}"] = float(layer.bias.detach().double().var(correction=0))
    return out


def summary_sigma_w2(per_layer: Mapping[str, float]) -> float:
    """The geometric mean of the layers' sigma_w^2 (0 when a layer has none): a linear net
    multiplies its input's variance by the product over layers, i.e. by this to the depth."""
    values = list(per_layer.values())
    if not values:
        return float("nan")
    if any(v <= 0.0 for v in values):
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def init_metrics(model: nn.Module) -> dict[str, float]:
    """The numbers a run records at step 0, ready to log: ``init/sigma_w2`` (the summary),
    ``init/sigma_w2/layerN`` and ``init/sigma_b2/layerN`` (layers with a bias)."""
    sw2 = effective_sigma_w2(model)
    metrics = {"init/sigma_w2": summary_sigma_w2(sw2)}
    metrics.update({f"init/sigma_w2/{k}": v for k, v in sw2.items()})
    metrics.update({f"init/sigma_b2/{k}": v for k, v in effective_sigma_b2(model).items()})
    return metrics


__all__ = ["SUPERSEDED_BY_SIGMA_W2", "VARIANCES", "constant_sigma_w2", "effective_sigma_b2",
           "effective_sigma_w2", "init_metrics", "nominal_sigma_w2", "shape_fans",
           "summary_sigma_w2", "truncation_factor"]
