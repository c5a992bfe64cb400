"""Weight-initialization families (``families``: one function each, its formula in the
docstring, registered by name) and how a config applies one to a model (``apply``)."""

from initlab.inits.apply import family_options, init_bias_, initialize, weight_layers
from initlab.inits.families import BIAS_KINDS, DATA_DEPENDENT, INIT_FAMILIES, fans, register

__all__ = ["BIAS_KINDS", "DATA_DEPENDENT", "INIT_FAMILIES", "fans",
           "family_options", "init_bias_", "initialize", "register", "weight_layers"]
