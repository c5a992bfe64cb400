"""The init group: one model per family, its options and their ranges, and the bias.

``sigma_w2`` (fan_in x Var(W)) is a key of every family with random weights (``AxisInit``); it
and a ``scale`` other than 1 are refused together.  The bias (``Bias``): ``sigma_b2`` null is
the bias family's own variance (zeros, constant: 0; default: 1 / (3 fan_in)); ``normal`` needs
a number; a variance for zeros / constant, or a ``value`` for any family but constant, is
refused (``initlab.inits.bias.check_bias`` says the same to direct callers)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, ValidationInfo, field_validator

from initlab.config.schema.base import Section
from initlab.config.schema.names import BIAS_KINDS, GAIN_NONLINEARITIES, INIT_FAMILIES
from initlab.config.schema.values import (
    _refuse,
    non_negative,
    number,
    one_of,
    positive,
    show,
)


class Bias(Section):
    model_config = ConfigDict(**Section.model_config, validate_default=True)

    name: one_of(*BIAS_KINDS) = "zeros"
    sigma_b2: non_negative(nullable=True) = None
    value: number() = 0.0

    @field_validator("sigma_b2")
    @classmethod
    def _variance_fits_family(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.data.get("name")
        if name in ("zeros", "constant") and value not in (None, 0):
            raise _refuse(f"null or 0 (bias family {name!r} draws no variance; "
                          "init.bias.name=normal draws N(0, sigma_b2))")
        if name == "normal" and value is None:
            raise _refuse("a finite number >= 0 (bias family 'normal' has no variance of its own)")
        return value

    @field_validator("value")
    @classmethod
    def _value_is_constants(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.data.get("name")
        if value != 0 and name != "constant":
            raise _refuse(f"0 (only bias family 'constant' uses init.bias.value, not {name!r})")
        return value


class InitBase(Section):
    name: one_of(*INIT_FAMILIES)
    scale: non_negative() = 1.0
    bias: Bias | None = None


class AxisInit(InitBase):
    """A family with random weights: it can be driven by sigma_w2 instead of scale."""

    sigma_w2: positive(nullable=True) = None

    @field_validator("sigma_w2")
    @classmethod
    def _not_with_scale(cls, value: Any, info: ValidationInfo) -> Any:
        scale = info.data.get("scale", 1.0)
        if value is not None and scale != 1:
            raise _refuse(f"null while init.scale = {show(scale)} (init.scale multiplies the "
                          "family's own std, sigma_w2 replaces it: give one of them)")
        return value


DISTRIBUTION = one_of("normal", "uniform")


class ConstantInit(InitBase):
    value: number() = 0.1


class NormalInit(AxisInit):
    std: non_negative() = 0.01


class TruncatedNormalInit(AxisInit):
    std: non_negative() = 0.1
    cutoff: positive() = 2.0


class UniformInit(AxisInit):
    bound: non_negative() = 0.05


class XavierInit(AxisInit):
    distribution: DISTRIBUTION = "uniform"
    gain: non_negative() = 1.0


class HeInit(AxisInit):
    distribution: DISTRIBUTION = "normal"
    mode: one_of("fan_in", "fan_out") = "fan_in"
    nonlinearity: one_of(*GAIN_NONLINEARITIES) = "relu"
    negative_slope: number() = 0.0


class LecunInit(AxisInit):
    distribution: DISTRIBUTION = "normal"


class OrthogonalInit(AxisInit):
    gain: non_negative() = 1.0


class DefaultInit(AxisInit):
    pass


class RandomInit(AxisInit):
    factor: non_negative() = 10.0


class LsuvInit(InitBase):
    scale: positive() = 1.0  # the target std of every layer's output


INIT_SCHEMAS: dict[str, type[InitBase]] = {
    "zeros": InitBase, "constant": ConstantInit, "normal": NormalInit,
    "truncated_normal": TruncatedNormalInit, "uniform": UniformInit, "xavier": XavierInit,
    "he": HeInit, "lecun": LecunInit, "orthogonal": OrthogonalInit, "default": DefaultInit,
    "random": RandomInit, "lsuv": LsuvInit,
}


# model ---------------------------------------------------------------------------------------
