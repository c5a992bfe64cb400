"""The init group: one model per family, its options and their ranges, and the bias."""

from __future__ import annotations

from initlab.config.schema.base import Section
from initlab.config.schema.names import BIAS_KINDS, GAIN_NONLINEARITIES, INIT_FAMILIES
from initlab.config.schema.values import non_negative, number, one_of, positive


class Bias(Section):
    name: one_of(*BIAS_KINDS) = "default"
    value: number() = 0.0
    std: non_negative() = 1.0


class InitBase(Section):
    name: one_of(*INIT_FAMILIES)
    scale: non_negative() = 1.0
    bias: Bias | None = None


DISTRIBUTION = one_of("normal", "uniform")


class ConstantInit(InitBase):
    value: number() = 0.1


class NormalInit(InitBase):
    std: non_negative() = 0.01


class TruncatedNormalInit(InitBase):
    std: non_negative() = 0.1
    cutoff: positive() = 2.0


class UniformInit(InitBase):
    bound: non_negative() = 0.05


class XavierInit(InitBase):
    distribution: DISTRIBUTION = "uniform"
    gain: non_negative() = 1.0


class HeInit(InitBase):
    distribution: DISTRIBUTION = "normal"
    mode: one_of("fan_in", "fan_out") = "fan_in"
    nonlinearity: one_of(*GAIN_NONLINEARITIES) = "relu"
    negative_slope: number() = 0.0


class LecunInit(InitBase):
    distribution: DISTRIBUTION = "normal"


class OrthogonalInit(InitBase):
    gain: non_negative() = 1.0


class RandomInit(InitBase):
    factor: non_negative() = 10.0


class LsuvInit(InitBase):
    scale: positive() = 1.0  # the target std of every layer's output


INIT_SCHEMAS: dict[str, type[InitBase]] = {
    "zeros": InitBase, "constant": ConstantInit, "normal": NormalInit,
    "truncated_normal": TruncatedNormalInit, "uniform": UniformInit, "xavier": XavierInit,
    "he": HeInit, "lecun": LecunInit, "orthogonal": OrthogonalInit, "default": InitBase,
    "random": RandomInit, "lsuv": LsuvInit,
}


# model ---------------------------------------------------------------------------------------
