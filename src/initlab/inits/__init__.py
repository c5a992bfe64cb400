"""Weight-initialization families (``families``: one function each, its formula in the
docstring, registered by name), bias families (``bias``), each family's place on the shared
sigma_w^2 = fan_in x Var(W) axis and the measured one (``variance``), and how a config applies
them to a model (``apply``)."""

from initlab.inits.apply import check_options, family_options, initialize, weight_layers
from initlab.inits.bias import BIAS_FAMILIES, BIAS_KINDS, init_bias_
from initlab.inits.families import DATA_DEPENDENT, INIT_FAMILIES, fans, register
from initlab.inits.variance import (
                                    constant_sigma_w2,
                                    effective_sigma_b2,
                                    effective_sigma_w2,
                                    init_metrics,
                                    nominal_sigma_w2,
                                    summary_sigma_w2,
)

__all__ = ["BIAS_FAMILIES", "BIAS_KINDS", "DATA_DEPENDENT", "INIT_FAMILIES", "check_options",
           "constant_sigma_w2", "effective_sigma_b2", "effective_sigma_w2", "family_options",
           "fans", "init_bias_", "init_metrics", "initialize", "nominal_sigma_w2", "register",
           "summary_sigma_w2", "weight_layers"]
